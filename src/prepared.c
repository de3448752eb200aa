/* prepared.c: what conn.prepare() and server-side cursors need of the core: a statement
   described without being run (its parameter types and result columns, the statement left
   in the cache for its executions), and a statement run without the statement cache. */
#include "conn_int.h"

/* (parameter type oids, RecordDesc or None) of a described statement. */
PyObject *agentdb_stmt_description(PyObject *capsule)
{
    agentdb_Stmt *s = capsule != NULL ? agentdb_stmt_get(capsule) : NULL;
    if (s == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_SystemError,
                            "agentdb: a described statement has no description");
        }
        return NULL;
    }
    PyObject *params = PyTuple_New(s->nparams);
    if (params == NULL) {
        return NULL;
    }
    for (int i = 0; i < s->nparams; i++) {
        PyObject *oid = PyLong_FromUnsignedLong(s->ptypes[i]);
        if (oid == NULL) {
            Py_DECREF(params);
            return NULL;
        }
        PyTuple_SET_ITEM(params, i, oid);
    }
    return Py_BuildValue("(NO)", params, s->desc != NULL ? s->desc : Py_None);
}

/* The checks every method here starts with; the query must be a str.  0 => ok. */
static int start(agentdb_Connection *c, const char *method, PyObject *const *args,
                 Py_ssize_t nargs, PyObject *kwnames, Py_ssize_t want, agentdb_kwargs *kw)
{
    if (nargs != want || !PyUnicode_Check(args[0]) || (want == 2 && !PyTuple_Check(args[1]))) {
        PyErr_Format(PyExc_TypeError, "%s(sql: str%s, timeout=None)", method,
                     want == 2 ? ", args: tuple" : "");
        return -1;
    }
    if (agentdb_parse_kwargs(method, args, nargs, kwnames, AGENTDB_KW_TIMEOUT, kw) < 0 ||
        agentdb_conn_check_ready(c) < 0 || agentdb_conn_check_loop(c, agentdb_conn_st(c)) < 0) {
        return -1;
    }
    return 0;
}

static PyObject *submit(agentdb_Connection *c, int mode, PyObject *sql, PyObject *args,
                        double timeout)
{
    PyObject *fut = agentdb_future_new(agentdb_conn_st(c), c->loop, NULL);
    if (fut == NULL) {
        return NULL;
    }
    if (agentdb_connection_submit(c, fut, OPK_QUERY, mode, sql, args, 0, timeout, NULL, 0) < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    return fut;
}

/* _describe(sql, timeout=None) -> Future[(param oids, RecordDesc | None)]: Parse +
   Describe in the connection's order, nothing executed (a statement already in the cache
   costs no round trip).  The statement stays in the cache for its executions. */
PyObject *agentdb_Connection__describe(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                       PyObject *kwnames)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    agentdb_kwargs kw;
    if (start(c, "_describe", args, nargs, kwnames, 1, &kw) < 0) {
        return NULL;
    }
    return submit(c, AGENTDB_MODE_DESCRIBE, args[0], NULL, kw.timeout);
}

/* _query_uncached(sql, args: tuple, timeout=None) -> as _query: one round trip, the
   unnamed statement, the arguments typed as without a statement cache, rows as text. */
PyObject *agentdb_Connection__query_uncached(PyObject *self, PyObject *const *args,
                                             Py_ssize_t nargs, PyObject *kwnames)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    agentdb_kwargs kw;
    if (start(c, "_query_uncached", args, nargs, kwnames, 2, &kw) < 0) {
        return NULL;
    }
    return submit(c, AGENTDB_MODE_RAW | AGENTDB_MODE_UNCACHED, args[0], args[1], kw.timeout);
}
