/* copystream.c: COPY on a connection: the Python methods that queue COPY
   statements, the FROM STDIN payload streamed out as the socket takes it (whole, or
   chunk by chunk as Python feeds it), the TO STDOUT data kept or handed on. */
#include "conn_int.h"
#include "codecs/copy_binary.h"

/* Stream the op's COPY FROM STDIN payload; on a full buffer, wait for write
   readiness (agentdb_conn_on_write resumes here).  Ends the COPY when all is sent. */
void agentdb_copy_in_continue(agentdb_Connection *c, agentdb_Op *op)
{
    const char *buf = PyBytes_AS_STRING(op->copy_data);
    Py_ssize_t len = PyBytes_GET_SIZE(op->copy_data);
    while (op->copy_off < len) {
        Py_ssize_t chunk = len - op->copy_off > 65536 ? 65536 : len - op->copy_off;
        int r = PQputCopyData(c->pg, buf + op->copy_off, (int)chunk);
        if (r == 0) {
            agentdb_conn_flush(c); /* full: wait for write readiness */
            if (agentdb_conn_watch_write(c, PQsocket(c->pg), 1) < 0) {
                PyErr_WriteUnraisable((PyObject *)c);
            }
            return;
        }
        if (r < 0) {
            agentdb_conn_lost(c, "COPY failed");
            return;
        }
        op->copy_off += chunk;
    }
    if (op->copy_more && op->copy_abort == NULL) {
        /* This chunk is in libpq's buffer: the feeder may give the next one. */
        if (op->copy_fed != NULL) {
            PyObject *fed = op->copy_fed;
            op->copy_fed = NULL;
            if (agentdb_future_set_result(agentdb_conn_st(c), fed, Py_None) < 0) {
                PyErr_WriteUnraisable((PyObject *)c);
            }
            Py_DECREF(fed);
        }
        agentdb_conn_flush(c);
        return;
    }
    int r = PQputCopyEnd(c->pg, op->copy_abort);
    if (r == 0) {
        agentdb_conn_flush(c);
        return; /* retried on write readiness */
    }
    if (r < 0) {
        agentdb_conn_lost(c, "COPY failed");
        return;
    }
    c->copy_in = 0;
    agentdb_conn_flush(c);
}

/* _copy(sql, data: bytes | None, timeout=None) -> Future: COPY ... FROM STDIN
   sending `data` (-> command tag), or COPY ... TO STDOUT (data None -> bytes). */
PyObject *agentdb_Connection__copy(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    agentdb_state *st = agentdb_conn_st(c);
    agentdb_kwargs kw;
    if (nargs != 2 || !PyUnicode_Check(args[0]) ||
        (args[1] != Py_None && !PyBytes_Check(args[1]) && !PyCallable_Check(args[1]))) {
        PyErr_SetString(PyExc_TypeError,
                        "_copy(sql: str, data: bytes | Callable | None, timeout=None)");
        return NULL;
    }
    if (agentdb_parse_kwargs("_copy", args, nargs, kwnames, AGENTDB_KW_TIMEOUT, &kw) < 0) {
        return NULL;
    }
    if (agentdb_conn_check_ready(c) < 0 || agentdb_conn_check_loop(c, st) < 0) {
        return NULL;
    }
    PyObject *fut = agentdb_future_new(st, c->loop, (PyObject *)c);
    if (fut == NULL) {
        return NULL;
    }
    agentdb_Op *op = agentdb_op_new(c, OPK_SIMPLE, AGENTDB_MODE_STATUS, args[0], NULL);
    if (op == NULL) {
        Py_DECREF(fut);
        return NULL;
    }
    op->fut = Py_NewRef(fut);
    if (PyCallable_Check(args[1])) { /* COPY TO STDOUT, each chunk given to it */
        op->copy_mode = COPY_OUT;
        op->copy_data = Py_NewRef(args[1]);
    }
    else if (args[1] != Py_None) {
        op->copy_mode = COPY_IN;
        op->copy_data = Py_NewRef(args[1]);
    }
    else {
        op->copy_mode = COPY_OUT;
        op->copy_data = PyList_New(0);
        if (op->copy_data == NULL) {
            agentdb_op_free(st, op);
            Py_DECREF(fut);
            return NULL;
        }
    }
    if (agentdb_conn_enqueue(c, op, kw.timeout) < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    return fut;
}

/* _copy_hold(timeout=None) -> Future: a COPY ... FROM STDIN queued now, in the order of
   the call, whose statement and payload come later from _copy_send() (they depend on the
   answer to a statement queued before it).  Statements queued after it wait for it.
   Cancelling the future (or its timeout) drops it. */
PyObject *agentdb_Connection__copy_hold(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                       PyObject *kwnames)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    agentdb_state *st = agentdb_conn_st(c);
    agentdb_kwargs kw;
    if (nargs != 0) {
        PyErr_SetString(PyExc_TypeError, "_copy_hold(*, timeout=None)");
        return NULL;
    }
    if (agentdb_parse_kwargs("_copy_hold", args, nargs, kwnames, AGENTDB_KW_TIMEOUT, &kw) < 0) {
        return NULL;
    }
    if (agentdb_conn_check_ready(c) < 0 || agentdb_conn_check_loop(c, st) < 0) {
        return NULL;
    }
    PyObject *sql = PyUnicode_FromStringAndSize(NULL, 0);
    if (sql == NULL) {
        return NULL;
    }
    PyObject *fut = agentdb_future_new(st, c->loop, (PyObject *)c);
    if (fut == NULL) {
        Py_DECREF(sql);
        return NULL;
    }
    agentdb_Op *op = agentdb_op_new(c, OPK_SIMPLE, AGENTDB_MODE_STATUS, sql, NULL);
    Py_DECREF(sql);
    if (op == NULL) {
        Py_DECREF(fut);
        return NULL;
    }
    op->fut = Py_NewRef(fut);
    op->copy_mode = COPY_IN;
    op->held = 1;
    if (agentdb_conn_enqueue(c, op, kw.timeout) < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    return fut;
}

/* The held or streamed COPY whose future is `fut`, or NULL when it is gone. */
static agentdb_Op *copy_op_of(agentdb_Connection *c, PyObject *fut, int held)
{
    agentdb_Op *op = c->head;
    while (op != NULL && !(op->fut == fut && op->held == held && !op->abandoned &&
                           op->copy_mode == COPY_IN)) {
        op = op->next;
    }
    return op;
}

/* _copy_send(fut, sql: str | None, data: bytes | None, more=False) -> None: the statement
   and payload of the COPY _copy_hold() returned `fut` for; it goes out in its turn.  sql
   None drops it unsent (`fut` is then never completed).  With `more`, `data` is the first
   chunk and _copy_feed() gives the rest.  Nothing happens when it is gone already
   (cancelled, timed out, the connection closed): `fut` holds that outcome. */
PyObject *agentdb_Connection__copy_send(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    int more = 0;
    if ((nargs != 3 && nargs != 4) || (args[1] != Py_None && !PyUnicode_Check(args[1])) ||
        (args[1] != Py_None && !PyBytes_Check(args[2])) ||
        (nargs == 4 && (more = PyObject_IsTrue(args[3])) < 0)) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError,
                            "_copy_send(fut, sql: str | None, data: bytes | None, more=False)");
        }
        return NULL;
    }
    agentdb_Op *op = copy_op_of(c, args[0], 1);
    if (op == NULL) {
        Py_RETURN_NONE;
    }
    if (args[1] == Py_None) {
        agentdb_op_drop(c, op);
    }
    else {
        Py_SETREF(op->sql, Py_NewRef(args[1]));
        Py_XSETREF(op->copy_data, Py_NewRef(args[2]));
        op->held = 0;
        op->copy_more = more;
    }
    agentdb_conn_process(c);
    Py_RETURN_NONE;
}

/* _copy_feed(fut, data: bytes | None, abort: str | None = None) -> Future | None: the next
   chunk of the streamed COPY _copy_send(..., more=True) started; the future it returns
   completes once the chunk is in libpq's buffer, and only then may the next one be fed.
   data None ends the COPY, with `abort` as its error when given (the server then fails
   it).  None when the COPY is gone (its `fut` holds the outcome). */
PyObject *agentdb_Connection__copy_feed(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    agentdb_state *st = agentdb_conn_st(c);
    if ((nargs != 2 && nargs != 3) || (args[1] != Py_None && !PyBytes_Check(args[1])) ||
        (nargs == 3 && args[2] != Py_None && !PyUnicode_Check(args[2]))) {
        PyErr_SetString(PyExc_TypeError,
                        "_copy_feed(fut, data: bytes | None, abort: str | None = None)");
        return NULL;
    }
    agentdb_Op *op = copy_op_of(c, args[0], 0);
    if (op == NULL || !op->copy_more) {
        Py_RETURN_NONE;
    }
    if (op->copy_fed != NULL || (op->copy_data != NULL &&
                                 op->copy_off < PyBytes_GET_SIZE(op->copy_data))) {
        PyErr_SetString(st->InterfaceError, "_copy_feed() before the last chunk was taken");
        return NULL;
    }
    PyObject *chunk = args[1] == Py_None ? PyBytes_FromStringAndSize(NULL, 0)
                                         : Py_NewRef(args[1]);
    if (chunk == NULL) {
        return NULL;
    }
    PyObject *fed;
    if (args[1] == Py_None) {
        if (nargs == 3 && args[2] != Py_None) {
            const char *msg = PyUnicode_AsUTF8(args[2]);
            size_t n = msg != NULL ? strlen(msg) + 1 : 0;
            if (msg == NULL || (op->copy_abort = PyMem_Malloc(n)) == NULL) {
                Py_DECREF(chunk);
                return msg == NULL ? NULL : PyErr_NoMemory();
            }
            memcpy(op->copy_abort, msg, n);
        }
        op->copy_more = 0;
        fed = Py_NewRef(Py_None);
    }
    else {
        fed = agentdb_future_new(st, c->loop, NULL);
        if (fed == NULL) {
            Py_DECREF(chunk);
            return NULL;
        }
        op->copy_fed = Py_NewRef(fed);
    }
    Py_XSETREF(op->copy_data, chunk);
    op->copy_off = 0;
    if (c->copy_in && c->head == op) {
        agentdb_copy_in_continue(c, op);
        agentdb_conn_process(c);
    }
    return fed;
}

int agentdb_copy_out_chunk(agentdb_Op *op, const char *buf, int n)
{
    PyObject *chunk = PyBytes_FromStringAndSize(buf, n);
    if (chunk == NULL) {
        return -1;
    }
    int rc;
    if (PyList_Check(op->copy_data)) {
        rc = PyList_Append(op->copy_data, chunk);
    }
    else {
        PyObject *r = PyObject_CallOneArg(op->copy_data, chunk);
        rc = r == NULL ? -1 : 0;
        Py_XDECREF(r);
    }
    Py_DECREF(chunk);
    return rc;
}

/* _copy_binary(records, oids) -> bytes | None: _core._copy_binary with this connection's
   types (pgvector's, its own codecs). */
PyObject *agentdb_Connection__copy_binary(PyObject *self, PyObject *const *args,
                                          Py_ssize_t nargs)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    agentdb_state *st = agentdb_conn_st(c);
    const agentdb_typeopts *prev = st->cur_types;
    st->cur_types = &c->types;
    PyObject *res = agentdb_copy_binary(st, args, nargs);
    st->cur_types = prev;
    return res;
}
