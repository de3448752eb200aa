/* notify.c: what the server sends unasked: NOTIFY to listeners, NOTICE and WARNING to
   log listeners; and forgetting a connection's user's listeners and handlers. */
#include "conn_int.h"

/* Deliver NOTIFY messages to the listeners of their channel, each call
   scheduled on the loop (callback(conn, pid, channel, payload)): a listener
   that raises reaches the loop's exception handler, not our read path. */
void agentdb_conn_drain_notifies(agentdb_Connection *c)
{
    agentdb_state *st = agentdb_conn_st(c);
    PGnotify *n;
    while ((n = PQnotifies(c->pg)) != NULL) {
        PyObject *callbacks = NULL;
        if (c->listeners != NULL && PyDict_GET_SIZE(c->listeners) > 0) {
            callbacks = PyDict_GetItemString(c->listeners, n->relname); /* borrowed */
        }
        if (callbacks != NULL && PyList_GET_SIZE(callbacks) > 0) {
            PyObject *cbs = PyList_GetSlice(callbacks, 0, PyList_GET_SIZE(callbacks));
            for (Py_ssize_t i = 0; cbs != NULL && i < PyList_GET_SIZE(cbs); i++) {
                PyObject *h = PyObject_CallMethod(c->loop, "call_soon", "OOiss",
                                                  PyList_GET_ITEM(cbs, i), (PyObject *)c,
                                                  n->be_pid, n->relname, n->extra);
                if (h == NULL) {
                    PyErr_WriteUnraisable((PyObject *)c);
                }
                Py_XDECREF(h);
            }
            Py_XDECREF(cbs);
        }
        PQfreemem(n);
    }
    (void)st;
}

/* libpq's notice receiver: NOTICE/WARNING messages go to the connection's
   notice handlers (callback(conn, message) scheduled on the loop, message an
   exception instance carrying .sqlstate, .severity, ...), never to stderr.
   Without handlers they are dropped: a flood costs nothing. */
void agentdb_notice_receive(void *arg, const PGresult *res)
{
    agentdb_Connection *c = arg;
    if (c->notice_handlers == NULL || PyList_GET_SIZE(c->notice_handlers) == 0 ||
        c->loop == NULL) {
        return;
    }
    PyObject *saved = PyErr_GetRaisedException();
    PyObject *msg = agentdb_error_from_result(agentdb_conn_st(c), res);
    PyObject *cbs = PyList_GetSlice(c->notice_handlers, 0, PyList_GET_SIZE(c->notice_handlers));
    for (Py_ssize_t i = 0; msg != NULL && cbs != NULL && i < PyList_GET_SIZE(cbs); i++) {
        PyObject *h = PyObject_CallMethod(c->loop, "call_soon", "OOO", PyList_GET_ITEM(cbs, i),
                                          (PyObject *)c, msg);
        Py_XDECREF(h);
        if (h == NULL) {
            break;
        }
    }
    if (PyErr_Occurred()) {
        PyErr_WriteUnraisable((PyObject *)c);
    }
    Py_XDECREF(cbs);
    Py_XDECREF(msg);
    PyErr_SetRaisedException(saved);
}

/* _listeners() -> dict channel -> list of callbacks (created on demand);
   _notice_handlers() -> list.  agentdb/connection.py builds add_listener(),
   add_log_listener() and friends on them. */
PyObject *agentdb_Connection__listeners(PyObject *self, PyObject *Py_UNUSED(ig))
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    if (c->listeners == NULL && (c->listeners = PyDict_New()) == NULL) {
        return NULL;
    }
    return Py_NewRef(c->listeners);
}

PyObject *agentdb_Connection__notice_handlers(PyObject *self, PyObject *Py_UNUSED(ig))
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    if (c->notice_handlers == NULL && (c->notice_handlers = PyList_New(0)) == NULL) {
        return NULL;
    }
    return Py_NewRef(c->notice_handlers);
}

void agentdb_connection_forget_user(agentdb_Connection *c, int unlisten)
{
    c->lease++;
    if (c->transactions != NULL && PyList_GET_SIZE(c->transactions) > 0 &&
        PyList_SetSlice(c->transactions, 0, PyList_GET_SIZE(c->transactions), NULL) < 0) {
        PyErr_Clear();
    }
    int had = c->listeners != NULL && PyDict_GET_SIZE(c->listeners) > 0;
    if (c->listeners != NULL) {
        PyDict_Clear(c->listeners);
    }
    Py_CLEAR(c->termination_listeners);
    if (c->notice_handlers != NULL) {
        Py_ssize_t n = PyList_GET_SIZE(c->notice_handlers);
        if (n > 0 && PyList_SetSlice(c->notice_handlers, 0, n, NULL) < 0) {
            PyErr_Clear();
        }
    }
    /* Notifications for callbacks just forgotten would only be read and dropped. */
    if (had && unlisten && c->state == CONN_READY &&
        agentdb_connection_internal(c, "UNLISTEN *", 0, NULL, 0) < 0) {
        PyErr_Clear();
    }
}

/* _termination_listeners() -> list (created on demand): add_termination_listener()'s
   callbacks.  Forgotten with the rest when a pool takes the connection back. */
PyObject *agentdb_Connection__termination_listeners(PyObject *self, PyObject *Py_UNUSED(ig))
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    if (c->termination_listeners == NULL && (c->termination_listeners = PyList_New(0)) == NULL) {
        return NULL;
    }
    return Py_NewRef(c->termination_listeners);
}

/* The connection closed (by its user or lost): schedule its Python side's
   `_on_terminated(callbacks)` on the loop, once, with the listeners of the moment. */
void agentdb_conn_fire_termination(agentdb_Connection *c)
{
    PyObject *cbs = c->termination_listeners;
    if (cbs == NULL || PyList_GET_SIZE(cbs) == 0 || c->loop == NULL) {
        return;
    }
    c->termination_listeners = NULL;
    PyObject *saved = PyErr_GetRaisedException();
    PyObject *snapshot = PyList_AsTuple(cbs);
    PyObject *fire = snapshot ? PyObject_GetAttrString((PyObject *)c, "_on_terminated") : NULL;
    PyObject *h = fire ? PyObject_CallMethod(c->loop, "call_soon", "OO", fire, snapshot) : NULL;
    if (h == NULL) {
        PyErr_Clear(); /* a closed loop, or the core's own Connection class: nobody to tell */
    }
    Py_XDECREF(h);
    Py_XDECREF(fire);
    Py_XDECREF(snapshot);
    Py_DECREF(cbs);
    PyErr_SetRaisedException(saved);
}
