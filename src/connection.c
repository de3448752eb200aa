/* connection.c: the Connection type: its life (new, close, finalize, dealloc), the
   statement methods (execute, fetch..., executemany) and the small ones that belong to no
   other file of the connection (conn_int.h lists them all). */
#include "conn_int.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

int agentdb_connection_check(agentdb_state *st, PyObject *obj)
{
    return PyObject_TypeCheck(obj, st->ConnectionType);
}

int agentdb_connection_alive(agentdb_Connection *c)
{
    return c->state == CONN_READY && c->pg != NULL && PQstatus(c->pg) == CONNECTION_OK;
}

agentdb_PoolLink *agentdb_connection_link(agentdb_Connection *c)
{
    return &c->link;
}

Py_ssize_t agentdb_connection_pending(agentdb_Connection *c)
{
    return c->nops;
}

int agentdb_connection_session_dirty(agentdb_Connection *c)
{
    return (c->session_flags & (AGENTDB_SQL_SESSION | AGENTDB_SQL_PREPARE)) != 0;
}

int agentdb_connection_accepts(agentdb_Connection *c)
{
    /* (the head is checked first: the walk of agentdb_connection_draining is rare) */
    return c->state == CONN_READY &&
           !(c->head != NULL && c->head->abandoned && agentdb_connection_draining(c));
}

static void conn_fail_ops(agentdb_Connection *c, PyObject *exc)
{
    agentdb_state *st = agentdb_conn_st(c);
    while (c->head != NULL) {
        agentdb_Op *op = c->head;
        c->head = op->next;
        c->nops--;
        if (op->error == NULL) {
            Py_INCREF(exc);
            op->error = exc;
        }
        agentdb_op_deliver(c, op);
        if (op->encoding) {
            op->orphaned = 1; /* op_send_exec frees it once its encoder returns */
        }
        else {
            agentdb_op_free(st, op);
        }
    }
    c->tail = NULL;
    c->nops = 0;
    c->est_sum = 0;
    c->n_unknown = 0;
}

static void conn_release_pg(agentdb_Connection *c)
{
    if (c->cancel != NULL) {
        PQfreeCancel(c->cancel);
        c->cancel = NULL;
    }
    if (c->pg != NULL) {
        /* A forked child must not send Terminate on its parent's session. */
        if (c->pid == (long)getpid()) {
            PQfinish(c->pg);
        }
        c->pg = NULL;
        AGENTDB_COUNT(agentdb_conn_st(c)->live_pgconns, -1);
    }
}

void agentdb_connection_close_now(agentdb_Connection *c, PyObject *exc)
{
    agentdb_state *st = agentdb_conn_st(c);
    if (c->state == CONN_CLOSED) {
        return;
    }
    PyObject *saved = PyErr_GetRaisedException();
    c->state_before_close = c->state;
    c->state = CONN_CLOSED;
    Py_XINCREF(exc);
    if (exc == NULL) {
        exc = agentdb_error_new(st->InterfaceError, "the connection is closed", "08003");
        if (exc == NULL) {
            PyErr_Clear();
            exc = Py_NewRef(Py_None);
        }
    }
    if (c->state_before_close == CONN_READY && c->head != NULL && agentdb_op_in_flight(c->head) &&
        c->pg != NULL && c->pid == (long)getpid()) {
        /* A statement still runs on the server: cancel it there, or it keeps
           its locks and CPU until it ends (the server notices a closed socket
           only when it next writes). Fire and forget, off the loop thread. */
        agentdb_conn_request_cancel(c);
    }
    agentdb_conn_unwatch(c);
    agentdb_timer_cancel(st, &c->connect_timer);
    agentdb_timer_cancel(st, &c->cancel_timer);
    agentdb_timer_cancel(st, &c->watchdog);
    c->cancel_pending = 0;
    conn_release_pg(c);
    c->simple_mode = 0;
    c->copy_in = 0;
    c->copy_out_discard = 0;
    if (c->connect_fut != NULL) {
        PyObject *fut = c->connect_fut;
        c->connect_fut = NULL;
        if (agentdb_future_set_exception(st, fut, exc) < 0) {
            PyErr_WriteUnraisable(fut);
        }
        Py_DECREF(fut);
    }
    Py_CLEAR(c->connect_fut_done);
    conn_fail_ops(c, exc);
    Py_DECREF(exc);
    agentdb_conn_fire_termination(c);
    agentdb_iohandle_detach(c->io);
    if (c->link.pool != NULL) {
        agentdb_pool_conn_closed(c->link.pool, c);
    }
    PyErr_SetRaisedException(saved);
}

/* The server or the network failed us: everything pending gets a
   ConnectionLostError carrying libpq's message. */
/* Close with a ConnectionLostError of our own message (no libpq text). */
void agentdb_conn_close_lost(agentdb_Connection *c, const char *msg)
{
    PyObject *exc = agentdb_error_new(agentdb_conn_st(c)->ConnectionLostError, msg, "08006");
    if (exc == NULL) {
        PyErr_Clear();
    }
    agentdb_connection_close_now(c, exc);
    Py_XDECREF(exc);
}

void agentdb_conn_lost(agentdb_Connection *c, const char *context)
{
    agentdb_state *st = agentdb_conn_st(c);
    PyObject *saved = PyErr_GetRaisedException();
    PyObject *exc = NULL;
    if (c->pg != NULL) {
        exc = agentdb_error_from_conn(st, c->pg, st->ConnectionLostError, context, c->secret);
    }
    if (exc == NULL) {
        PyErr_Clear();
        exc = agentdb_error_new(st->ConnectionLostError, context, "08006");
        if (exc == NULL) {
            PyErr_Clear();
        }
    }
    agentdb_connection_close_now(c, exc);
    Py_XDECREF(exc);
    PyErr_SetRaisedException(saved);
}


int agentdb_conn_check_loop(agentdb_Connection *c, agentdb_state *st)
{
    PyObject *loop = agentdb_running_loop(st);
    if (loop == NULL) {
        return -1;
    }
    int same = loop == c->loop;
    Py_DECREF(loop);
    if (!same) {
        PyErr_SetString(st->InterfaceError,
                        "this connection belongs to another event loop (was it created "
                        "in a different test or thread? create it on the loop that uses it)");
        return -1;
    }
    return 0;
}

/* execute/fetch/fetchrow/fetchval(query, *values, timeout=None[, column=0]). */
static PyObject *conn_query(agentdb_Connection *c, const char *method, int kind, int mode,
                            PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                            unsigned keywords)
{
    agentdb_state *st = agentdb_conn_st(c);
    PyObject *sql = NULL, *rest = NULL, *fut = NULL;
    agentdb_kwargs kw;
    if (agentdb_parse_kwargs(method, args, nargs, kwnames, keywords, &kw) < 0 ||
        agentdb_conn_check_ready(c) < 0 || agentdb_conn_check_loop(c, st) < 0 ||
        agentdb_parse_query(method, args, nargs, &sql, &rest) < 0) {
        return NULL;
    }
    fut = agentdb_future_new(st, c->loop, NULL);
    if (fut == NULL) {
        goto error;
    }
    if (agentdb_connection_submit(c, fut, kind, mode, sql, rest, kw.column, kw.timeout, NULL,
                                  0) < 0) {
        goto error;
    }
    Py_DECREF(rest);
    return fut;
error:
    Py_XDECREF(rest);
    Py_XDECREF(fut);
    return NULL;
}

static PyObject *Connection_execute(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                    PyObject *kwnames)
{
    return conn_query((agentdb_Connection *)self, "execute", OPK_SIMPLE, AGENTDB_MODE_STATUS,
                      args, nargs, kwnames, AGENTDB_KW_TIMEOUT);
}

static PyObject *Connection_fetch(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames)
{
    return conn_query((agentdb_Connection *)self, "fetch", OPK_QUERY, AGENTDB_MODE_ALL, args,
                      nargs, kwnames, AGENTDB_KW_TIMEOUT);
}

static PyObject *Connection_fetchrow(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames)
{
    return conn_query((agentdb_Connection *)self, "fetchrow", OPK_QUERY, AGENTDB_MODE_ROW, args,
                      nargs, kwnames, AGENTDB_KW_TIMEOUT);
}

/* _fetchrow_unprepared(query, timeout=None): fetchrow of a query without parameters in
   one message and one sync (no named statement, no Describe first): connect()'s own
   lookups, which must work behind a transaction-mode pooler whatever the cache size. */
static PyObject *Connection__fetchrow_unprepared(PyObject *self, PyObject *const *args,
                                                 Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "_fetchrow_unprepared(query, timeout=None)");
        return NULL;
    }
    return conn_query((agentdb_Connection *)self, "_fetchrow_unprepared", OPK_PLAIN,
                      AGENTDB_MODE_ROW, args, nargs, kwnames, AGENTDB_KW_TIMEOUT);
}

static PyObject *Connection_fetchval(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames)
{
    return conn_query((agentdb_Connection *)self, "fetchval", OPK_QUERY, AGENTDB_MODE_VAL, args,
                      nargs, kwnames, AGENTDB_KW_TIMEOUT | AGENTDB_KW_COLUMN);
}


/* A future for one OPK_QUERY statement (`prefix`: see agentdb_conn_submit_prefixed). */
static PyObject *conn_submit_query(agentdb_Connection *c, int mode, PyObject *sql, PyObject *args,
                                   double timeout, PyObject *prefix)
{
    agentdb_state *st = agentdb_conn_st(c);
    if (agentdb_conn_check_ready(c) < 0 || agentdb_conn_check_loop(c, st) < 0) {
        return NULL;
    }
    PyObject *fut = agentdb_future_new(st, c->loop, NULL);
    if (fut == NULL) {
        return NULL;
    }
    if (agentdb_conn_submit_prefixed(c, fut, mode, sql, args, timeout, prefix) < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    return fut;
}

/* _query(sql, args: tuple, timeout=None) -> (rows, names, types, status):
   one await per statement for the SQLAlchemy adapter. */
static PyObject *Connection__query(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    agentdb_kwargs kw;
    if (nargs != 2 || !PyUnicode_Check(args[0]) || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "_query(sql: str, args: tuple, timeout=None)");
        return NULL;
    }
    if (agentdb_parse_kwargs("_query", args, nargs, kwnames, AGENTDB_KW_TIMEOUT, &kw) < 0) {
        return NULL;
    }
    return conn_submit_query((agentdb_Connection *)self, AGENTDB_MODE_RAW, args[0], args[1],
                             kw.timeout, NULL);
}

/* _dbapi_execute(sql, args: tuple, begin: str | None, timeout=None) -> Future[(rows,
   description | None, rowcount, ddl)]: a PEP 249 adapter's one call per statement.
   `begin` (a BEGIN statement, when the adapter opens a transaction) is sent with the
   statement under one sync: one message, one answer, and if it fails the statement does
   not run.  `description` is PEP 249's, made once per prepared statement; `rowcount`
   comes from the command tag (-1 when it has none); `ddl` says the statement created,
   altered or dropped something other than a temporary object. */
static PyObject *Connection__dbapi_execute(PyObject *self, PyObject *const *args,
                                           Py_ssize_t nargs, PyObject *kwnames)
{
    agentdb_kwargs kw;
    if (nargs != 3 || !PyUnicode_Check(args[0]) || !PyTuple_Check(args[1]) ||
        (args[2] != Py_None && !PyUnicode_Check(args[2]))) {
        PyErr_SetString(
            PyExc_TypeError,
            "_dbapi_execute(sql: str, args: tuple, begin: str | None, timeout=None)");
        return NULL;
    }
    if (agentdb_parse_kwargs("_dbapi_execute", args, nargs, kwnames, AGENTDB_KW_TIMEOUT, &kw) <
        0) {
        return NULL;
    }
    PyObject *begin = args[2] == Py_None ? NULL : args[2];
    if (begin != NULL) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(begin, &n);
        if (s == NULL || agentdb_sql_utf8(begin) == NULL) {
            return NULL;
        }
        if (memchr(s, ';', (size_t)n) != NULL ||
            agentdb_sql_classify(s, n) != AGENTDB_SQL_BEGIN) {
            PyErr_SetString(PyExc_ValueError,
                            "_dbapi_execute: begin must be one BEGIN statement (or None)");
            return NULL;
        }
    }
    return conn_submit_query((agentdb_Connection *)self, AGENTDB_MODE_DBAPI, args[0], args[1],
                             kw.timeout, begin);
}

/* executemany() (`mode` AGENTDB_MODE_NONE) and fetchmany() (AGENTDB_MODE_ALL: the rows of
   every execution, in order). */
static PyObject *conn_many(agentdb_Connection *c, const char *method, int mode,
                           PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    agentdb_state *st = agentdb_conn_st(c);
    agentdb_kwargs kw;
    if (nargs != 2 || !PyUnicode_Check(args[0])) {
        PyErr_Format(PyExc_TypeError,
                     "%s(query: str, args: iterable of sequences, timeout=None)", method);
        return NULL;
    }
    if (agentdb_parse_kwargs(method, args, nargs, kwnames, AGENTDB_KW_TIMEOUT, &kw) < 0) {
        return NULL;
    }
    if (agentdb_conn_check_ready(c) < 0 || agentdb_conn_check_loop(c, st) < 0) {
        return NULL;
    }
    /* A tuple of the rows: no code of the user's can change it while they are encoded. */
    PyObject *rows = PySequence_Tuple(args[1]);
    if (rows == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(rows); i++) {
        PyObject *row = PyTuple_GET_ITEM(rows, i);
        if (!PyTuple_Check(row) && !PyList_Check(row)) {
            PyErr_Format(st->InterfaceError ? st->InterfaceError : PyExc_TypeError,
                         "%s: row %zd is a %.100s, not a tuple or list", method, i,
                         Py_TYPE(row)->tp_name);
            Py_DECREF(rows);
            return NULL;
        }
    }
    PyObject *fut = agentdb_future_new(st, c->loop, NULL);
    if (fut == NULL) {
        Py_DECREF(rows);
        return NULL;
    }
    int rc = agentdb_connection_submit(c, fut, OPK_MANY, mode, args[0], rows, 0, kw.timeout,
                                       NULL, 0);
    Py_DECREF(rows);
    if (rc < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    return fut;
}

static PyObject *Connection_executemany(PyObject *self, PyObject *const *args,
                                        Py_ssize_t nargs, PyObject *kwnames)
{
    return conn_many((agentdb_Connection *)self, "executemany", AGENTDB_MODE_NONE, args, nargs,
                     kwnames);
}

static PyObject *Connection__fetchmany(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                       PyObject *kwnames)
{
    return conn_many((agentdb_Connection *)self, "fetchmany", AGENTDB_MODE_ALL, args, nargs,
                     kwnames);
}

/* close(*, timeout=None): timeout= is asyncpg's; closing never waits. */
static PyObject *Connection_close(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    agentdb_state *st = agentdb_conn_st(c);
    agentdb_kwargs kw;
    if (nargs != 0) {
        PyErr_SetString(PyExc_TypeError, "close() takes only timeout=");
        return NULL;
    }
    if (agentdb_parse_kwargs("close", args, nargs, kwnames, AGENTDB_KW_TIMEOUT, &kw) < 0) {
        return NULL;
    }
    /* A pooled connection closed by its user leaves the pool (close_now tells it). */
    agentdb_connection_close_now(c, NULL);
    PyObject *loop = agentdb_running_loop(st);
    if (loop == NULL) {
        return NULL;
    }
    PyObject *fut = agentdb_future_new(st, loop, NULL);
    Py_DECREF(loop);
    if (fut == NULL) {
        return NULL;
    }
    if (agentdb_future_set_result(st, fut, Py_None) < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    return fut;
}

static PyObject *Connection_terminate(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    agentdb_connection_close_now((agentdb_Connection *)self, NULL);
    Py_RETURN_NONE;
}

static PyObject *Connection_is_closed(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    return PyBool_FromLong(c->state == CONN_CLOSED ||
                           (c->pg != NULL && PQstatus(c->pg) == CONNECTION_BAD));
}

static PyObject *Connection_get_server_version(PyObject *self, PyObject *Py_UNUSED(ig))
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    return PyLong_FromLong(c->pg ? PQserverVersion(c->pg) : 0);
}

static PyObject *Connection_get_backend_pid(PyObject *self, PyObject *Py_UNUSED(ig))
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    return PyLong_FromLong(c->pg ? PQbackendPID(c->pg) : 0);
}

static PyObject *Connection_get_parameter_status(PyObject *self, PyObject *name)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    const char *n = PyUnicode_AsUTF8(name);
    if (n == NULL) {
        return NULL;
    }
    const char *v = c->pg ? PQparameterStatus(c->pg, n) : NULL;
    if (v == NULL) {
        Py_RETURN_NONE;
    }
    return PyUnicode_FromString(v);
}

static PyObject *Connection_ssl_in_use(PyObject *self, PyObject *Py_UNUSED(ig))
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    return PyBool_FromLong(c->pg ? PQsslInUse(c->pg) : 0);
}

#ifdef AGENTDB_TESTING
static PyObject *Connection__pending(PyObject *self, PyObject *Py_UNUSED(ig))
{
    return PyLong_FromSsize_t(((agentdb_Connection *)self)->nops);
}

/* _debug_state() -> dict: the pipeline's state, for tests and post-mortems.  It only
   looks: no libpq call that reads or sends (PQflush, PQisBusy) runs here. */
static PyObject *Connection__debug_state(PyObject *self, PyObject *Py_UNUSED(ig))
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    PyObject *ops = PyList_New(0);
    if (ops == NULL) {
        return NULL;
    }
    for (agentdb_Op *op = c->head; op != NULL; op = op->next) {
        PyObject *t = Py_BuildValue("{s:i,s:i,s:i,s:i,s:i,s:i,s:O}", "st", op->st, "kind",
                                    op->kind, "step", op->step, "abandoned", op->abandoned,
                                    "cancel_sent", op->cancel_sent, "phase_cmds",
                                    op->phase_cmds, "sql", op->sql);
        if (t == NULL || PyList_Append(ops, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(ops);
            return NULL;
        }
        Py_DECREF(t);
    }
    return Py_BuildValue("{s:N,s:i,s:i,s:i,s:i,s:i,s:i,s:n,s:i,s:i,s:i,s:i,s:i,s:k}", "ops",
                         ops, "state", c->state, "cancel_pending", c->cancel_pending,
                         "simple_mode", c->simple_mode, "kick_scheduled", c->kick_scheduled,
                         "copy_in", c->copy_in, "pool_state", c->link.state, "nops", c->nops,
                         "writer", c->watch.writer, "reader", c->watch.reader, "socket",
                         c->pg ? PQsocket(c->pg) : -1, "status",
                         c->pg ? (int)PQstatus(c->pg) : -1, "readable",
                         agentdb_fd_readable(c->pg ? PQsocket(c->pg) : -1), "stalls",
                         c->stalls);
}
#endif

/* _configure(statement_cache_size, command_timeout, cancel_grace[, json_text]) */
static PyObject *Connection__configure(PyObject *self, PyObject *args)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    Py_ssize_t cache;
    double command_timeout, grace;
    int json_text = -1;
    if (!PyArg_ParseTuple(args, "ndd|p:_configure", &cache, &command_timeout, &grace,
                          &json_text)) {
        return NULL;
    }
    if (cache < 0) {
        PyErr_SetString(PyExc_ValueError, "statement_cache_size must be >= 0");
        return NULL;
    }
    c->stmt_cache_size = cache;
    c->command_timeout = command_timeout;
    c->cancel_grace = grace > 0 ? grace : 5.0;
    if (json_text >= 0 && json_text != c->types.json_text) {
        c->types.json_text = json_text;
        c->types.gen++; /* statements prepared before pick their decoders again */
    }
    Py_RETURN_NONE;
}

/* _set_type_codecs(codecs: dict | None): the codecs set_type_codec() and
   set_builtin_type_codec() gave this connection (agentdb/type_codecs.py makes them). */
static PyObject *Connection__set_type_codecs(PyObject *self, PyObject *codecs)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    if (codecs != Py_None && !PyDict_CheckExact(codecs)) {
        PyErr_SetString(PyExc_TypeError, "_set_type_codecs(codecs: dict | None)");
        return NULL;
    }
    Py_XSETREF(c->types.custom, codecs == Py_None ? NULL : Py_NewRef(codecs));
    c->types.gen++;
    Py_RETURN_NONE;
}

/* _set_vector_types(vector_oid, halfvec_oid): pgvector's types in this connection's
   database (0: not there), as connect() found them. */
static PyObject *Connection__set_vector_types(PyObject *self, PyObject *args)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    unsigned int vector_oid, halfvec_oid;
    if (!PyArg_ParseTuple(args, "II:_set_vector_types", &vector_oid, &halfvec_oid)) {
        return NULL;
    }
    if (vector_oid != c->types.vector_oid || halfvec_oid != c->types.halfvec_oid) {
        c->types.vector_oid = vector_oid;
        c->types.halfvec_oid = halfvec_oid;
        c->types.gen++;
    }
    Py_RETURN_NONE;
}

/* The future of a statement was cancelled: cancel the statement. */
static PyObject *Connection__future_cancelled(PyObject *self, PyObject *fut)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    if (c->connect_fut == fut) {
        /* Cancelled while connecting: close, leak nothing. */
        Py_CLEAR(c->connect_fut);
        agentdb_connection_close_now(c, NULL);
        Py_RETURN_NONE;
    }
    for (agentdb_Op *op = c->head; op != NULL; op = op->next) {
        if (op->fut == fut && !op->abandoned) {
            agentdb_conn_abandon(c, op);
            break;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *Connection__future_abandoned(PyObject *self, PyObject *fut)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    if (fut == c->connect_fut_done && c->link.pool == NULL) {
        /* A connect that completed for a task cancelled at the same moment:
           nobody but us will ever close it.  (Held, not just remembered by
           address: a freed future's address may be a later query's.) */
        Py_CLEAR(c->connect_fut_done);
        agentdb_connection_close_now(c, NULL);
    }
    Py_RETURN_NONE;
}

static PyMethodDef Connection_methods[] = {
    {"_connect", agentdb_Connection__connect, METH_VARARGS, NULL},
    {"_configure", Connection__configure, METH_VARARGS, NULL},
    {"_set_vector_types", Connection__set_vector_types, METH_VARARGS, NULL},
    {"_set_type_codecs", Connection__set_type_codecs, METH_O, NULL},
    {"_fetchrow_unprepared", (PyCFunction)(void (*)(void))Connection__fetchrow_unprepared,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"execute", (PyCFunction)(void (*)(void))Connection_execute, METH_FASTCALL | METH_KEYWORDS,
     "execute(query, *args, timeout=None) -> Future[str]: run a statement (several, "
     "without arguments) and return the command tag of the last."},
    {"fetch", (PyCFunction)(void (*)(void))Connection_fetch, METH_FASTCALL | METH_KEYWORDS,
     "fetch(query, *args, timeout=None) -> Future[list[Record]]"},
    {"fetchrow", (PyCFunction)(void (*)(void))Connection_fetchrow,
     METH_FASTCALL | METH_KEYWORDS, "fetchrow(query, *args, timeout=None) -> Future[Record | None]"},
    {"fetchval", (PyCFunction)(void (*)(void))Connection_fetchval,
     METH_FASTCALL | METH_KEYWORDS,
     "fetchval(query, *args, column=0, timeout=None) -> Future[value | None]"},
    {"executemany", (PyCFunction)(void (*)(void))Connection_executemany,
     METH_FASTCALL | METH_KEYWORDS,
     "executemany(query, args, timeout=None) -> Future[None]: one statement per row of "
     "args, in one round trip and one implicit transaction (atomic)."},
    {"_query", (PyCFunction)(void (*)(void))Connection__query, METH_FASTCALL | METH_KEYWORDS,
     NULL},
    {"_fetchmany", (PyCFunction)(void (*)(void))Connection__fetchmany,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"_describe", (PyCFunction)(void (*)(void))agentdb_Connection__describe,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"_query_uncached", (PyCFunction)(void (*)(void))agentdb_Connection__query_uncached,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"_dbapi_execute",
     (PyCFunction)(void (*)(void))Connection__dbapi_execute, METH_FASTCALL | METH_KEYWORDS,
     NULL},
    {"_copy", (PyCFunction)(void (*)(void))agentdb_Connection__copy, METH_FASTCALL | METH_KEYWORDS,
     NULL},
    {"_copy_hold", (PyCFunction)(void (*)(void))agentdb_Connection__copy_hold,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"_copy_send", (PyCFunction)(void (*)(void))agentdb_Connection__copy_send, METH_FASTCALL, NULL},
    {"_copy_feed", (PyCFunction)(void (*)(void))agentdb_Connection__copy_feed, METH_FASTCALL, NULL},
    {"_copy_binary", (PyCFunction)(void (*)(void))agentdb_Connection__copy_binary, METH_FASTCALL,
     NULL},
    {"close", (PyCFunction)(void (*)(void))Connection_close, METH_FASTCALL | METH_KEYWORDS,
     "close(timeout=None) -> Future[None]: close the connection."},
    {"terminate", Connection_terminate, METH_NOARGS, "Close the connection now."},
    {"is_closed", Connection_is_closed, METH_NOARGS, NULL},
    {"is_in_transaction", agentdb_Connection_is_in_transaction, METH_NOARGS, NULL},
    {"get_transaction_status", agentdb_Connection_get_transaction_status, METH_NOARGS,
     "'idle', 'active', 'intrans', 'inerror' or 'unknown'."},
    {"_server_version_num", Connection_get_server_version, METH_NOARGS, NULL},
    {"get_backend_pid", Connection_get_backend_pid, METH_NOARGS, NULL},
    {"get_parameter_status", Connection_get_parameter_status, METH_O, NULL},
    {"ssl_in_use", Connection_ssl_in_use, METH_NOARGS, NULL},
#ifdef AGENTDB_TESTING
    {"_pending", Connection__pending, METH_NOARGS, NULL},
    {"_statement_count", agentdb_Connection__statement_count, METH_NOARGS, NULL},
    {"_debug_state", Connection__debug_state, METH_NOARGS, NULL},
#endif
    {"_listeners", agentdb_Connection__listeners, METH_NOARGS, NULL},
    {"_reset_session", (PyCFunction)(void (*)(void))agentdb_Connection__reset_session,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"_notice_handlers", agentdb_Connection__notice_handlers, METH_NOARGS, NULL},
    {"_termination_listeners", agentdb_Connection__termination_listeners, METH_NOARGS, NULL},
    {"clear_statement_cache", agentdb_Connection_clear_statement_cache, METH_NOARGS,
     "Forget every cached prepared statement (after DDL inside a transaction)."},
    {"_future_cancelled", Connection__future_cancelled, METH_O, NULL},
    {"_future_abandoned", Connection__future_abandoned, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyObject *Connection_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    (void)args;
    (void)kwargs;
    agentdb_Connection *c = (agentdb_Connection *)type->tp_alloc(type, 0);
    if (c == NULL) {
        return NULL;
    }
    c->st = agentdb_state_from_type(type);
    /* Distinct statement names per connection: behind a pooler that moves
       clients between server connections, names never collide. */
    c->stmt_tag = ((unsigned long)(uintptr_t)c >> 4) ^ ((unsigned long)getpid() << 16);
    c->state = CONN_NEW;
    agentdb_fdwatch_init(&c->watch);
    c->stmt_cache_size = 100;
    c->cancel_grace = 5.0;
    c->stmts = PyDict_New();
    c->transactions = PyList_New(0);
    if (c->stmts == NULL || c->transactions == NULL) {
        Py_DECREF(c);
        return NULL;
    }
    return (PyObject *)c;
}

static int Connection_traverse(PyObject *self, visitproc visit, void *arg)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(c->loop);
    Py_VISIT(c->connect_fut);
    Py_VISIT(c->connect_fut_done);
    Py_VISIT(c->transactions);
    Py_VISIT(c->stmts);
    Py_VISIT(c->link.pool);
    Py_VISIT(c->listeners);
    Py_VISIT(c->notice_handlers);
    Py_VISIT(c->termination_listeners);
    Py_VISIT(c->types.custom);
    for (agentdb_Op *op = c->head; op != NULL; op = op->next) {
        Py_VISIT(op->fut);
        Py_VISIT(op->args);
        Py_VISIT(op->result);
        Py_VISIT(op->error);
    }
    return 0;
}

static int Connection_clear(PyObject *self)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    agentdb_connection_close_now(c, NULL);
    Py_CLEAR(c->stmts);
    Py_CLEAR(c->types.custom);
    Py_CLEAR(c->link.pool);
    Py_CLEAR(c->listeners);
    Py_CLEAR(c->notice_handlers);
    Py_CLEAR(c->termination_listeners);
    Py_CLEAR(c->transactions);
    Py_CLEAR(c->connect_fut_done);
    return 0;
}

/* PEP 442 finalizer: a connection dropped without close() says so, is closed,
   and is never given back to a pool (its checked-out slot is freed instead). */
static void Connection_finalize(PyObject *self)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    if (c->state != CONN_READY && c->state != CONN_CONNECTING) {
        return;
    }
    PyObject *exc = PyErr_GetRaisedException();
    Py_CLEAR(c->termination_listeners); /* collected, not terminated: nobody awaits it */
    if (c->pid == (long)getpid() &&
        PyErr_WarnFormat(PyExc_ResourceWarning, 1, "unclosed agentdb connection %R", self) < 0) {
        PyErr_WriteUnraisable(self);
    }
    if (c->link.pool != NULL && c->link.state != POOLST_IDLE) {
        agentdb_pool_conn_lost_by_gc(c->link.pool, c);
    }
    agentdb_connection_close_now(c, NULL);
    PyErr_SetRaisedException(exc);
}

static void Connection_dealloc(PyObject *self)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    PyTypeObject *tp = Py_TYPE(self);
    if (PyObject_CallFinalizerFromDealloc(self) < 0) {
        return; /* resurrected */
    }
    PyObject_GC_UnTrack(self);
    if (c->weakreflist != NULL) {
        PyObject_ClearWeakRefs(self);
    }
    agentdb_connection_close_now(c, NULL);
    agentdb_iohandle_detach(c->io);
    agentdb_iohandle_detach(c->cb_write);
    agentdb_iohandle_detach(c->cb_timer);
    agentdb_iohandle_detach(c->cb_kick);
    agentdb_iohandle_detach(c->cb_cancel_done);
    agentdb_iohandle_detach(c->cb_watchdog);
    Py_CLEAR(c->cb_watchdog);
    Py_CLEAR(c->cb_kick);
    Py_CLEAR(c->cb_cancel_done);
    Py_CLEAR(c->io);
    Py_CLEAR(c->cb_read);
    Py_CLEAR(c->cb_write);
    Py_CLEAR(c->cb_timer);
    Py_CLEAR(c->loop);
    Py_CLEAR(c->stmts);
    Py_CLEAR(c->types.custom);
    Py_CLEAR(c->link.pool);
    Py_CLEAR(c->listeners);
    Py_CLEAR(c->notice_handlers);
    Py_CLEAR(c->termination_listeners);
    Py_CLEAR(c->transactions);
    Py_CLEAR(c->connect_fut_done);
    PyMem_Free(c->secret);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *Connection_repr(PyObject *self)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    static const char *names[] = {"new", "connecting", "ready", "closed"};
    if (c->state == CONN_READY && c->pg != NULL) {
        return PyUnicode_FromFormat("<%s %s@%s:%s/%s pid=%d>", Py_TYPE(self)->tp_name,
                                    PQuser(c->pg), PQhost(c->pg), PQport(c->pg), PQdb(c->pg),
                                    PQbackendPID(c->pg));
    }
    return PyUnicode_FromFormat("<%s [%s]>", Py_TYPE(self)->tp_name, names[c->state]);
}

static PyMemberDef Connection_members[] = {
    {"__weaklistoffset__", Py_T_PYSSIZET, offsetof(agentdb_Connection, weakreflist), Py_READONLY},
    {"_transactions", Py_T_OBJECT_EX, offsetof(agentdb_Connection, transactions), Py_READONLY,
     "The stack of open Transaction objects (emptied when a pool takes it back)."},
    {"_lease", Py_T_ULONGLONG, offsetof(agentdb_Connection, lease), Py_READONLY,
     "How many times a pool took it back: a Transaction notes it when it starts."},
    {"_session_epoch", Py_T_ULONGLONG, offsetof(agentdb_Connection, session_resets), Py_READONLY,
     "How many session resets were queued on it: what was set in the session before "
     "(by whoever took the connection when it was new) is gone when it changes."},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot Connection_slots[] = {
    {Py_tp_new, Connection_new},
    {Py_tp_dealloc, Connection_dealloc},
    {Py_tp_finalize, Connection_finalize},
    {Py_tp_traverse, Connection_traverse},
    {Py_tp_clear, Connection_clear},
    {Py_tp_repr, Connection_repr},
    {Py_tp_methods, Connection_methods},
    {Py_tp_members, Connection_members},
    {Py_tp_doc, "A PostgreSQL connection driven by libpq in nonblocking mode. Open one with "
                "agentdb.connect()."},
    {0, NULL},
};

static PyType_Spec Connection_spec = {
    .name = "agentdb._core.Connection",
    .basicsize = sizeof(agentdb_Connection),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Connection_slots,
};

int agentdb_connection_setup(PyObject *module, agentdb_state *st)
{
    st->ConnectionType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &Connection_spec,
                                                                  NULL);
    if (st->ConnectionType == NULL) {
        return -1;
    }
    return PyModule_AddType(module, st->ConnectionType);
}
