/* connect.c: opening a connection: PQconnectStartParams, then PQconnectPoll driven by
   socket readiness until it is ready (in pipeline mode) or fails; the connect deadline. */
#include "conn_int.h"

#include <string.h>
#include <unistd.h>

/* Close with the exception being raised as every pending statement's error. */
static void conn_close_with_pending_error(agentdb_Connection *c)
{
    PyObject *exc = PyErr_GetRaisedException();
    agentdb_connection_close_now(c, exc);
    Py_XDECREF(exc);
}

static void conn_connect_fail(agentdb_Connection *c, const char *context)
{
    agentdb_state *st = agentdb_conn_st(c);
    PyObject *exc = agentdb_error_from_conn(st, c->pg, st->OperationalError, context, c->secret);
    if (exc == NULL) {
        PyErr_Clear();
    }
    agentdb_connection_close_now(c, exc);
    Py_XDECREF(exc);
}

/* One step of PQconnectPoll; re-registers for whatever it asks next.  The
   socket can change between steps (one per host tried), and libpq may have
   closed the old one: unregister before polling, register after. */
void agentdb_conn_connect_step(agentdb_Connection *c)
{
    agentdb_state *st = agentdb_conn_st(c);
    agentdb_conn_unwatch(c);
    PostgresPollingStatusType ps = PQconnectPoll(c->pg);
    int fd = PQsocket(c->pg);
    switch (ps) {
    case PGRES_POLLING_READING:
        if (agentdb_conn_watch_read(c, fd) < 0) {
            goto py_error;
        }
        return;
    case PGRES_POLLING_WRITING:
        if (agentdb_conn_watch_write(c, fd, 1) < 0) {
            goto py_error;
        }
        return;
    case PGRES_POLLING_OK:
        break;
    default:
        conn_connect_fail(c, NULL);
        return;
    }
    /* Connected. */
    agentdb_timer_cancel(st, &c->connect_timer);
    if (PQsetnonblocking(c->pg, 1) != 0) {
        conn_connect_fail(c, "could not set nonblocking mode");
        return;
    }
    if (!PQenterPipelineMode(c->pg)) {
        conn_connect_fail(c, "could not enter pipeline mode");
        return;
    }
    c->cancel = PQgetCancel(c->pg);
    c->utf8_id = pg_char_to_encoding("UTF8");
    c->state = CONN_READY;
    c->link.created_at = c->link.last_used = agentdb_monotonic();
    /* One reader for the connection's whole life: results, notices, and EOF
       of an idle connection (liveness without a round trip). */
    if (agentdb_conn_watch_read(c, fd) < 0) {
        goto py_error;
    }
    if (c->connect_fut != NULL) {
        PyObject *fut = c->connect_fut;
        c->connect_fut = NULL;
        Py_XSETREF(c->connect_fut_done, fut); /* our reference moves there */
        if (agentdb_future_set_result(st, fut, (PyObject *)c) < 0) {
            PyErr_WriteUnraisable(fut);
        }
    }
    return;
py_error:
    conn_close_with_pending_error(c);
}

/* _connect(keywords: list[str], values: list[str], timeout: float | None,
            secret: str | None) -> Future[Connection] */
PyObject *agentdb_Connection__connect(PyObject *self, PyObject *args)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    agentdb_state *st = agentdb_conn_st(c);
    PyObject *keys, *values, *timeout_obj, *secret;
    const char **kw = NULL, **vals = NULL;
    PyObject *fut = NULL;
    if (!PyArg_ParseTuple(args, "O!O!OO:_connect", &PyList_Type, &keys, &PyList_Type, &values,
                          &timeout_obj, &secret)) {
        return NULL;
    }
    if (c->state != CONN_NEW) {
        PyErr_SetString(st->InterfaceError, "the connection was already opened");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(keys);
    if (PyList_GET_SIZE(values) != n) {
        PyErr_SetString(PyExc_ValueError, "keywords and values differ in length");
        return NULL;
    }
    c->loop = agentdb_running_loop(st);
    if (c->loop == NULL) {
        return NULL;
    }
    if (secret != Py_None) {
        const char *s = PyUnicode_AsUTF8(secret);
        if (s == NULL) {
            return NULL;
        }
        c->secret = PyMem_Malloc(strlen(s) + 1);
        if (c->secret == NULL) {
            return PyErr_NoMemory();
        }
        strcpy(c->secret, s);
    }
    kw = PyMem_Calloc(n + 1, sizeof(char *));
    vals = PyMem_Calloc(n + 1, sizeof(char *));
    if (kw == NULL || vals == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        kw[i] = PyUnicode_AsUTF8(PyList_GET_ITEM(keys, i));
        vals[i] = PyUnicode_AsUTF8(PyList_GET_ITEM(values, i));
        if (kw[i] == NULL || vals[i] == NULL) {
            goto error;
        }
    }
    c->io = agentdb_iohandle_new(st, self, agentdb_conn_on_read);
    PyObject *wio = agentdb_iohandle_new(st, self, agentdb_conn_on_write);
    PyObject *tio = agentdb_iohandle_new(st, self, agentdb_conn_on_timer);
    c->cb_read = c->io ? Py_NewRef(c->io) : NULL;
    c->cb_write = wio;
    c->cb_timer = tio;
    c->cb_kick = agentdb_iohandle_new(st, self, agentdb_conn_on_kick);
    c->cb_watchdog = agentdb_iohandle_new(st, self, agentdb_conn_on_watchdog);
    if (c->io == NULL || wio == NULL || tio == NULL || c->cb_kick == NULL ||
        c->cb_watchdog == NULL) {
        goto error;
    }
    fut = agentdb_future_new(st, c->loop, self);
    if (fut == NULL) {
        goto error;
    }
    c->pid = (long)getpid();
    c->pg = PQconnectStartParams(kw, vals, 0);
    if (c->pg == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    AGENTDB_COUNT(st->live_pgconns, 1);
    /* Notices go nowhere by default rather than to stderr. */
    PQsetNoticeReceiver(c->pg, agentdb_notice_receive, c);
    c->state = CONN_CONNECTING;
    c->connect_fut = Py_NewRef(fut);
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_connect_fail(c, NULL);
        goto done;
    }
    if (timeout_obj != Py_None) {
        double timeout = PyFloat_AsDouble(timeout_obj);
        if (timeout == -1.0 && PyErr_Occurred()) {
            goto error;
        }
        PyObject *zero = PyLong_FromLong(0);
        if (zero == NULL) {
            goto error;
        }
        c->connect_timer = agentdb_call_later(st, c->loop, timeout, c->cb_timer, zero);
        Py_DECREF(zero);
        if (c->connect_timer == NULL) {
            goto error;
        }
    }
    /* The first poll must wait for the socket to be writable. */
    if (agentdb_conn_watch_write(c, PQsocket(c->pg), 1) < 0) {
        goto error;
    }
done:
    PyMem_Free(kw);
    PyMem_Free(vals);
    return fut;
error:
    PyMem_Free(kw);
    PyMem_Free(vals);
    if (c->pg != NULL) {
        PyObject *exc = PyErr_GetRaisedException();
        agentdb_connection_close_now(c, NULL);
        PyErr_SetRaisedException(exc);
    }
    Py_XDECREF(fut);
    return NULL;
}
