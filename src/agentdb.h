/* agentdb.h: the module state shared by every C file of agentdb._core. */
#ifndef AGENTDB_H
#define AGENTDB_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <libpq-fe.h>
#include <stddef.h> /* offsetof, for the PyMemberDef tables */

#if PY_VERSION_HEX < 0x030C0000
/* Python 3.12 moved PyMemberDef's type codes into Python.h under Py_ names;
   before, they are structmember.h's. */
#include <structmember.h>
#define Py_T_OBJECT_EX T_OBJECT_EX
#define Py_T_PYSSIZET T_PYSSIZET
#define Py_T_UINT T_UINT
#define Py_T_ULONG T_ULONG
#define Py_T_ULONGLONG T_ULONGLONG
#define Py_T_DOUBLE T_DOUBLE
#define Py_READONLY READONLY

/* Python 3.12's single-object error API, for 3.10 and 3.11. */
static inline PyObject *PyErr_GetRaisedException(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL) {
        return NULL;
    }
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
}

static inline void PyErr_SetRaisedException(PyObject *exc)
{
    if (exc == NULL) {
        return;
    }
    PyObject *tb = PyException_GetTraceback(exc);
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, tb);
}
#endif

/* Everything the C core caches lives here, one instance per module object
   (multi-phase init); no mutable static globals. */
typedef struct {
    /* Types. */
    PyTypeObject *ConnectionType;
    PyTypeObject *PoolType;
    PyTypeObject *AcquireContextType;
    PyTypeObject *RecordType;
    PyTypeObject *RecordDescType;
    PyTypeObject *RecordIterType;
    PyTypeObject *IOHandleType;
    PyTypeObject *StmtProfileType;
    PyTypeObject *CancelRequestType; /* cancel.c, libpq 17+ only (NULL before) */

    /* PEP 249 exception hierarchy (errors.c). */
    PyObject *Error;
    PyObject *Warning;
    PyObject *InterfaceError;
    PyObject *DatabaseError;
    PyObject *DataError;
    PyObject *OperationalError;
    PyObject *IntegrityError;
    PyObject *InternalError;
    PyObject *ProgrammingError;
    PyObject *NotSupportedError;
    PyObject *ConnectionLostError; /* OperationalError: the connection is gone */
    PyObject *PoolTimeout;         /* TimeoutError: no connection within pool_timeout */
    PyObject *sqlstate_map;        /* dict: SQLSTATE str -> exception class */

    /* Codecs (src/codecs/). */
    PyObject *Decimal;       /* decimal.Decimal */
    PyObject *UUID;          /* uuid.UUID */
    PyObject *json_loads;    /* json.loads */
    PyObject *json_dumps;    /* json.dumps */
    PyObject *json_loads_fast; /* orjson.loads when installed, else NULL */
    PyObject *timezone_utc;  /* datetime.timezone.utc */
    void *datetime_capi;     /* PyDateTime_CAPI*, from the datetime capsule */
    PyObject *codec_cache;   /* free for src/codecs/ to use (NULL if unused) */
    /* The agentdb_typeopts (codecs.h) of the connection whose rows, arguments or COPY
       records are being decoded or encoded, borrowed for that time (rows.c, pipeline.c,
       copystream.c); NULL otherwise */
    const struct agentdb_typeopts *cur_types;

    /* libpq handles alive (every PGconn and PGresult has one owner and is
       freed once: the leak tests compare these before and after); counted only
       in testing builds (AGENTDB_COUNT). */
    Py_ssize_t live_pgconns;
    Py_ssize_t live_pgresults;
    Py_ssize_t live_cancelconns; /* PGcancelConn (libpq 17+) */
    /* Cancel requests started: on a thread (libpq < 17), on the loop (17+). */
    Py_ssize_t cancel_threads;
    Py_ssize_t cancels_async;

    /* asyncio glue (loop.c). */
    PyObject *get_running_loop; /* asyncio.get_running_loop */
    PyObject *os_close;         /* os.close */
    PyObject *future_class;     /* agentdb._aio.AgentFuture, set by _core._setup() */
    PyObject *kwnames_loop;     /* ("loop",) for vectorcalls of future_class */
    PyObject *cancel_timer_id;  /* the timer id of a connection's cancel deadline */
    PyObject *str_owner;        /* "_owner" */
    PyObject *str_add_reader, *str_remove_reader, *str_add_writer, *str_remove_writer;
    PyObject *str_call_at, *str_call_soon, *str_time, *str_cancel, *str_set_result,
        *str_set_exception, *str_done, *str_create_task, *str_add_done_callback,
        *str_run_in_executor, *str_result, *str_exception, *str_cancelled;
} agentdb_state;

/* AGENTDB_TESTING (setup.py: the environment variable AGENTDB_TESTING=1, which the test
   set-up exports): the test hooks (_decode, _encode, _classify_sql, _debug_state,
   _pending, _connections...) and the libpq handle counters are compiled in.  A release
   build has neither: nothing on a hot path counts for tests. */
#ifdef AGENTDB_TESTING
#define AGENTDB_COUNT(counter, delta) ((counter) += (delta))
#else
#define AGENTDB_COUNT(counter, delta) ((void)sizeof((counter) + (delta))) /* not evaluated */
#endif

/* The module state from the module object (never NULL after init). */
static inline agentdb_state *agentdb_get_state(PyObject *module)
{
    return (agentdb_state *)PyModule_GetState(module);
}

/* The module state from an instance of one of our heap types. */
agentdb_state *agentdb_state_from_type(PyTypeObject *tp);

/* Each file's setup: creates its types/objects, stores them in the state and
   adds the public ones to the module.  0 => ok, -1 => error set. */
int agentdb_errors_setup(PyObject *module, agentdb_state *st);
int agentdb_record_setup(PyObject *module, agentdb_state *st);
int agentdb_codecs_setup(PyObject *module, agentdb_state *st);
int agentdb_loop_setup(PyObject *module, agentdb_state *st);
int agentdb_connection_setup(PyObject *module, agentdb_state *st);
int agentdb_pool_setup(PyObject *module, agentdb_state *st);
int agentdb_cancel_setup(PyObject *module, agentdb_state *st);

/* Each file's part of traverse/clear of the module state. */
int agentdb_codecs_traverse(agentdb_state *st, visitproc visit, void *arg);
void agentdb_codecs_clear(agentdb_state *st);

#endif /* AGENTDB_H */
