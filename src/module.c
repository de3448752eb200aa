/* module.c: agentdb._core module init (multi-phase) and its module state. */
#include "agentdb.h"
#include "codecs.h"
#include "codecs/copy_binary.h"
#include "codecs/copy_text.h"
#include "connection.h"
#include "sqlclass.h"

static struct PyModuleDef agentdb_module;

/* libpq's compiled-in SYSCONFDIR (setup.py asks pg_config): the directory of the system
   pg_service.conf when PGSYSCONFDIR is unset; "" when the build could not tell. */
#ifndef AGENTDB_LIBPQ_SYSCONFDIR
#define AGENTDB_LIBPQ_SYSCONFDIR ""
#endif

/* Works for Python subclasses of our types too: walks the MRO to the heap
   type defined by this module (PyType_GetModuleByDef, before 3.11). */
agentdb_state *agentdb_state_from_type(PyTypeObject *tp)
{
    PyObject *mro = tp->tp_mro;
    Py_ssize_t n = mro ? PyTuple_GET_SIZE(mro) : 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyTypeObject *base = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if (!(base->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
            continue;
        }
        PyObject *module = ((PyHeapTypeObject *)base)->ht_module;
        if (module != NULL && PyModule_GetDef(module) == &agentdb_module) {
            return agentdb_get_state(module);
        }
    }
    Py_FatalError("agentdb: an object of a type not defined by agentdb._core");
    return NULL;
}

/* _setup(future_class): called once by agentdb/__init__.py with the Future
   subclass whose cancel() tells its owner (connection or pool) it was cancelled. */
static PyObject *module_setup(PyObject *module, PyObject *future_class)
{
    agentdb_state *st = agentdb_get_state(module);
    if (!PyType_Check(future_class)) {
        PyErr_SetString(PyExc_TypeError, "_setup() expects a class");
        return NULL;
    }
    Py_INCREF(future_class);
    Py_XSETREF(st->future_class, future_class);
    Py_RETURN_NONE;
}

static PyObject *module_libpq_version(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(PQlibVersion());
}

/* What of libpq 17+ the core uses, by name: each is on when it was compiled in (the
   LIBPQ_HAS_* macros of the libpq-fe.h built against) and the libpq loaded has it
   (PQlibVersion() >= 170000).  The code paths themselves are chosen at compile time:
   a core built against 17+ headers does not import over an older libpq at all (Python
   loads extensions with RTLD_NOW, and the new functions are missing), so the run-time
   test only makes the report honest, never changes a path. */
static PyObject *module_libpq_capabilities(PyObject *Py_UNUSED(module),
                                           PyObject *Py_UNUSED(ignored))
{
    int v17 = PQlibVersion() >= 170000;
    int pipeline_sync = 0, chunked_rows = 0, async_cancel = 0, close_prepared = 0;
#ifdef LIBPQ_HAS_SEND_PIPELINE_SYNC
    pipeline_sync = v17;
#endif
#ifdef LIBPQ_HAS_CHUNK_MODE
    chunked_rows = v17;
#endif
#ifdef LIBPQ_HAS_ASYNC_CANCEL
    async_cancel = v17;
#endif
#ifdef LIBPQ_HAS_CLOSE_PREPARED
    close_prepared = v17;
#endif
    (void)v17;
    return Py_BuildValue("{s:N,s:N,s:N,s:N}", "pipeline_sync", PyBool_FromLong(pipeline_sync),
                         "chunked_rows", PyBool_FromLong(chunked_rows), "async_cancel",
                         PyBool_FromLong(async_cancel), "close_prepared",
                         PyBool_FromLong(close_prepared));
}

#ifdef AGENTDB_TESTING
/* _cancel_counts(): cancel requests started on a thread and on the loop, and the
   PGcancelConn alive (tests: which path ran, and that none leaks). */
static PyObject *module_cancel_counts(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    agentdb_state *st = agentdb_get_state(module);
    return Py_BuildValue("{s:n,s:n,s:n}", "threads", st->cancel_threads, "loop",
                         st->cancels_async, "alive", st->live_cancelconns);
}

/* _handle_counts() -> (PGconn alive, PGresult alive): for leak tests. */
static PyObject *module_handle_counts(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    agentdb_state *st = agentdb_get_state(module);
    return Py_BuildValue("(nn)", st->live_pgconns, st->live_pgresults);
}
#endif

static PyMethodDef module_methods[] = {
#ifdef AGENTDB_TESTING
    {"_handle_counts", module_handle_counts, METH_NOARGS,
     "(PGconn alive, PGresult alive): every libpq handle is freed once (tests)."},
    {"_cancel_counts", module_cancel_counts, METH_NOARGS,
     "{'threads', 'loop', 'alive'}: cancel requests started on a thread, on the loop, and "
     "the PGcancelConn alive (tests)."},
    {"_decode", (PyCFunction)(void (*)(void))agentdb_codecs_decode_py, METH_FASTCALL,
     "_decode(oid, data, binary): decode one value (tests and fuzzing)."},
    {"_encode", (PyCFunction)(void (*)(void))agentdb_codecs_encode_py, METH_FASTCALL,
     "_encode(oid, value): encode one parameter -> (data, format) (tests)."},
    {"_classify_sql", agentdb_sql_classify_py, METH_O,
     "_classify_sql(sql): what a statement does to its session, as the pool reads it "
     "(flags: 1 session, 2 begins a transaction, 4 ends it, 8 prepared statements, "
     "16 client encoding; tests)."},
#endif
    {"_setup", module_setup, METH_O, "Register the asyncio Future subclass (internal)."},
    {"libpq_version", module_libpq_version, METH_NOARGS,
     "The version of the libpq in use, as PQlibVersion() reports it (150005 for 15.5)."},
    {"libpq_capabilities", module_libpq_capabilities, METH_NOARGS,
     "What of libpq 17+ is in use: {'pipeline_sync', 'chunked_rows', 'async_cancel', "
     "'close_prepared'} -> bool."},
    {"parse_dsn", (PyCFunction)agentdb_parse_dsn_py, METH_O,
     "Parse a libpq connection string or URI into a dict of keyword -> value."},
    {"parse_array", agentdb_parse_array_py, METH_O,
     "parse_array(text): an array's text form ('{a,\"b c\",NULL}') as nested lists of "
     "str and None."},
    {"_copy_text", agentdb_copy_text_py, METH_O,
     "_copy_text(records): the COPY FROM STDIN payload, text format, for rows of values."},
    {"_copy_binary", (PyCFunction)(void (*)(void))agentdb_copy_binary_py, METH_FASTCALL,
     "_copy_binary(records, oids): the COPY FROM STDIN payload, binary format, for rows of "
     "values of those type OIDs; None when a type has no binary encoder."},
    {NULL, NULL, 0, NULL},
};

static PyObject *intern(const char *s)
{
    return PyUnicode_InternFromString(s);
}

static int module_exec(PyObject *module)
{
    agentdb_state *st = agentdb_get_state(module);
    PyObject *asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL) {
        return -1;
    }
    st->get_running_loop = PyObject_GetAttrString(asyncio, "get_running_loop");
    Py_DECREF(asyncio);
    if (st->get_running_loop == NULL) {
        return -1;
    }
    PyObject *os = PyImport_ImportModule("os");
    if (os == NULL) {
        return -1;
    }
    st->os_close = PyObject_GetAttrString(os, "close");
    Py_DECREF(os);
    if (st->os_close == NULL) {
        return -1;
    }
#define INTERN(field, text)                 \
    if ((st->field = intern(text)) == NULL) \
        return -1;
    INTERN(str_owner, "_owner");
    INTERN(str_add_reader, "add_reader");
    INTERN(str_remove_reader, "remove_reader");
    INTERN(str_add_writer, "add_writer");
    INTERN(str_remove_writer, "remove_writer");
    INTERN(str_call_at, "call_at");
    INTERN(str_call_soon, "call_soon");
    INTERN(str_time, "time");
    INTERN(str_cancel, "cancel");
    INTERN(str_set_result, "set_result");
    INTERN(str_set_exception, "set_exception");
    INTERN(str_done, "done");
    INTERN(str_create_task, "create_task");
    INTERN(str_add_done_callback, "add_done_callback");
    INTERN(str_run_in_executor, "run_in_executor");
    INTERN(str_result, "result");
    INTERN(str_exception, "exception");
    INTERN(str_cancelled, "cancelled");
#undef INTERN
    st->cancel_timer_id = PyLong_FromUnsignedLongLong((unsigned long long)-1);
    if (st->cancel_timer_id == NULL) {
        return -1;
    }
    st->kwnames_loop = Py_BuildValue("(s)", "loop");
    if (st->kwnames_loop == NULL) {
        return -1;
    }
    if (PyModule_AddStringConstant(module, "LIBPQ_SYSCONFDIR", AGENTDB_LIBPQ_SYSCONFDIR) < 0) {
        return -1;
    }
    if (agentdb_errors_setup(module, st) < 0 || agentdb_record_setup(module, st) < 0 ||
        agentdb_codecs_setup(module, st) < 0 || agentdb_loop_setup(module, st) < 0 ||
        agentdb_connection_setup(module, st) < 0 || agentdb_pool_setup(module, st) < 0 ||
        agentdb_cancel_setup(module, st) < 0) {
        return -1;
    }
    return 0;
}

static int module_traverse(PyObject *module, visitproc visit, void *arg)
{
    agentdb_state *st = agentdb_get_state(module);
    Py_VISIT(st->ConnectionType);
    Py_VISIT(st->PoolType);
    Py_VISIT(st->AcquireContextType);
    Py_VISIT(st->RecordType);
    Py_VISIT(st->RecordDescType);
    Py_VISIT(st->RecordIterType);
    Py_VISIT(st->IOHandleType);
    Py_VISIT(st->StmtProfileType);
    Py_VISIT(st->CancelRequestType);
    Py_VISIT(st->Error);
    Py_VISIT(st->Warning);
    Py_VISIT(st->InterfaceError);
    Py_VISIT(st->DatabaseError);
    Py_VISIT(st->DataError);
    Py_VISIT(st->OperationalError);
    Py_VISIT(st->IntegrityError);
    Py_VISIT(st->InternalError);
    Py_VISIT(st->ProgrammingError);
    Py_VISIT(st->NotSupportedError);
    Py_VISIT(st->ConnectionLostError);
    Py_VISIT(st->PoolTimeout);
    Py_VISIT(st->sqlstate_map);
    Py_VISIT(st->Decimal);
    Py_VISIT(st->UUID);
    Py_VISIT(st->json_loads);
    Py_VISIT(st->json_dumps);
    Py_VISIT(st->json_loads_fast);
    Py_VISIT(st->timezone_utc);
    Py_VISIT(st->codec_cache);
    Py_VISIT(st->get_running_loop);
    Py_VISIT(st->os_close);
    Py_VISIT(st->future_class);
    return agentdb_codecs_traverse(st, visit, arg);
}

static int module_clear(PyObject *module)
{
    agentdb_state *st = agentdb_get_state(module);
    Py_CLEAR(st->ConnectionType);
    Py_CLEAR(st->PoolType);
    Py_CLEAR(st->AcquireContextType);
    Py_CLEAR(st->RecordType);
    Py_CLEAR(st->RecordDescType);
    Py_CLEAR(st->RecordIterType);
    Py_CLEAR(st->IOHandleType);
    Py_CLEAR(st->StmtProfileType);
    Py_CLEAR(st->CancelRequestType);
    Py_CLEAR(st->Error);
    Py_CLEAR(st->Warning);
    Py_CLEAR(st->InterfaceError);
    Py_CLEAR(st->DatabaseError);
    Py_CLEAR(st->DataError);
    Py_CLEAR(st->OperationalError);
    Py_CLEAR(st->IntegrityError);
    Py_CLEAR(st->InternalError);
    Py_CLEAR(st->ProgrammingError);
    Py_CLEAR(st->NotSupportedError);
    Py_CLEAR(st->ConnectionLostError);
    Py_CLEAR(st->PoolTimeout);
    Py_CLEAR(st->sqlstate_map);
    Py_CLEAR(st->Decimal);
    Py_CLEAR(st->UUID);
    Py_CLEAR(st->json_loads);
    Py_CLEAR(st->json_dumps);
    Py_CLEAR(st->json_loads_fast);
    Py_CLEAR(st->timezone_utc);
    Py_CLEAR(st->codec_cache);
    Py_CLEAR(st->get_running_loop);
    Py_CLEAR(st->os_close);
    Py_CLEAR(st->future_class);
    Py_CLEAR(st->kwnames_loop);
    Py_CLEAR(st->cancel_timer_id);
    Py_CLEAR(st->str_owner);
    Py_CLEAR(st->str_add_reader);
    Py_CLEAR(st->str_remove_reader);
    Py_CLEAR(st->str_add_writer);
    Py_CLEAR(st->str_remove_writer);
    Py_CLEAR(st->str_call_at);
    Py_CLEAR(st->str_call_soon);
    Py_CLEAR(st->str_time);
    Py_CLEAR(st->str_cancel);
    Py_CLEAR(st->str_set_result);
    Py_CLEAR(st->str_set_exception);
    Py_CLEAR(st->str_done);
    Py_CLEAR(st->str_create_task);
    Py_CLEAR(st->str_add_done_callback);
    Py_CLEAR(st->str_run_in_executor);
    Py_CLEAR(st->str_result);
    Py_CLEAR(st->str_exception);
    Py_CLEAR(st->str_cancelled);
    agentdb_codecs_clear(st);
    return 0;
}

static void module_free(void *module)
{
    module_clear((PyObject *)module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef agentdb_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "agentdb._core",
    .m_doc = "The C core of agentdb: libpq connections, the pool, records and codecs.",
    .m_size = sizeof(agentdb_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__core(void)
{
    return PyModuleDef_Init(&agentdb_module);
}
