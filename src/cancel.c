/* cancel.c: statements whose awaiter is gone: their deadlines, abandoning them, and
   cancel requests (a thread each: PQcancel blocks), sent only when every statement in
   flight is abandoned. */
#include "conn_int.h"

static PyObject *timeout_error(double timeout)
{
    return PyObject_CallFunction(PyExc_TimeoutError, "s",
                                 timeout > 0 ? "the statement timed out" : "timed out");
}

/* A cancel request runs on a thread of its own: PQcancel blocks (libpq < 17)
   and the loop never blocks.  When it is done the thread tells the loop
   (call_soon_threadsafe), and only then may the connection send its next
   statement: a cancel that arrived late would otherwise cancel that one. */
typedef struct {
    PGcancel *cancel;
    PyObject *loop;
    PyObject *done_cb;
} cancel_job;

static void cancel_thread(void *arg)
{
    cancel_job *job = arg;
    char errbuf[256];
    PQcancel(job->cancel, errbuf, sizeof(errbuf));
    PQfreeCancel(job->cancel);
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *r = PyObject_CallMethod(job->loop, "call_soon_threadsafe", "O", job->done_cb);
    if (r == NULL) {
        PyErr_Clear(); /* the loop is closed: nobody waits any more */
    }
    Py_XDECREF(r);
    Py_DECREF(job->loop);
    Py_DECREF(job->done_cb);
    PyMem_RawFree(job);
    PyGILState_Release(gil);
}

static void conn_on_cancel_done(PyObject *self, PyObject *arg)
{
    (void)arg;
    agentdb_Connection *c = (agentdb_Connection *)self;
    if (c->cancel_pending > 0 && --c->cancel_pending == 0) {
        agentdb_timer_cancel(agentdb_conn_st(c), &c->cancel_timer);
        agentdb_conn_process(c);
    }
}

void agentdb_conn_request_cancel(agentdb_Connection *c)
{
    agentdb_state *st = agentdb_conn_st(c);
    if (c->pg == NULL) {
        return;
    }
    cancel_job *job = PyMem_RawCalloc(1, sizeof(*job));
    if (job == NULL) {
        return;
    }
    job->cancel = PQgetCancel(c->pg);
    /* The connection's own handle, detached when the connection goes away:
       a cancel that completes after that calls nothing. */
    if (c->cb_cancel_done == NULL) {
        c->cb_cancel_done = agentdb_iohandle_new(st, (PyObject *)c, conn_on_cancel_done);
    }
    job->done_cb = Py_XNewRef(c->cb_cancel_done);
    if (job->cancel == NULL || job->done_cb == NULL) {
        goto fail;
    }
    if (c->cancel_timer == NULL) {
        /* Bounded: a cancel that cannot get through closes the connection. */
        c->cancel_timer = agentdb_call_later(st, c->loop, c->cancel_grace, c->cb_timer,
                                             st->cancel_timer_id);
        if (c->cancel_timer == NULL) {
            PyErr_Clear();
        }
    }
    job->loop = Py_NewRef(c->loop);
    c->cancel_pending++;
    if (PyThread_start_new_thread(cancel_thread, job) == PYTHREAD_INVALID_THREAD_ID) {
        c->cancel_pending--;
        Py_DECREF(job->loop);
        goto fail;
    }
    return;
fail:
    PyErr_Clear();
    if (job->cancel) {
        PQfreeCancel(job->cancel);
    }
    Py_XDECREF(job->done_cb);
    PyMem_RawFree(job);
}

int agentdb_connection_draining(agentdb_Connection *c)
{
    int any = 0;
    for (agentdb_Op *op = c->head; op != NULL; op = op->next) {
        if (op->st == OPST_FAILED) {
            continue; /* finished at the head, never on the server */
        }
        if (!agentdb_op_in_flight(op)) {
            break; /* queued (or described, not sent): nothing of it runs */
        }
        if (!op->abandoned) {
            return 0;
        }
        any = 1;
    }
    return any;
}

/* Every statement in flight is abandoned: cancel the one the server runs (the head),
   and again as the head advances, one cancel at a time.  A cancel request hits
   whatever the server runs when it arrives; nothing but abandoned statements can be
   running then, since the connection sends nothing new meanwhile (conn_kick) nor
   until the last cancel has been delivered (cancel_pending).  A cancelled statement
   that does not end within cancel_grace closes the connection (agentdb_conn_on_timer). */
void agentdb_conn_cancel_abandoned(agentdb_Connection *c)
{
    agentdb_state *st = agentdb_conn_st(c);
    agentdb_Op *op = c->head;
    if (c->state != CONN_READY || op == NULL || !agentdb_op_in_flight(op) || op->cancel_sent ||
        c->cancel_pending > 0 || !agentdb_connection_draining(c)) {
        return;
    }
    op->cancel_sent = 1;
    agentdb_conn_request_cancel(c);
    agentdb_timer_cancel(st, &op->timer);
    PyObject *id = PyLong_FromUnsignedLongLong(op->id);
    if (id != NULL) {
        op->timer = agentdb_call_later(st, c->loop, c->cancel_grace, c->cb_timer, id);
        Py_DECREF(id);
    }
    if (op->timer == NULL) {
        PyErr_Clear();
    }
}

/* The awaiter of `op` is gone (future cancelled or deadline passed): its result
   is discarded.  A statement not sent is dropped; one the server has is cancelled
   there once every statement in flight is abandoned (agentdb_conn_cancel_abandoned). */
void agentdb_conn_abandon(agentdb_Connection *c, agentdb_Op *op)
{
    agentdb_state *st = agentdb_conn_st(c);
    op->abandoned = 1;
    agentdb_timer_cancel(st, &op->timer);
    if (c->link.pool != NULL && op->fut != NULL) {
        agentdb_pool_count_abandoned(c->link.pool, agentdb_op_in_flight(op));
    }
    if (op->encoding) {
        return; /* op_send_exec drops it once its encoder returns */
    }
    if (op->st == OPST_QUEUED || (op->st == OPST_FAILED && op != c->head)) {
        agentdb_op_drop(c, op);
        agentdb_conn_process(c);
        return;
    }
    if (!agentdb_op_in_flight(op)) {
        agentdb_conn_process(c); /* READY2 or FAILED at the head: finished there */
        return;
    }
    agentdb_conn_cancel_abandoned(c);
}

void agentdb_conn_on_timer(PyObject *self, PyObject *arg)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    agentdb_state *st = agentdb_conn_st(c);
    unsigned long long id = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return;
    }
    if (id == (unsigned long long)-1) {
        /* A cancel request did not complete within cancel_grace. */
        Py_CLEAR(c->cancel_timer);
        if (c->cancel_pending > 0) {
            agentdb_conn_close_lost(c, "a cancel request could not reach the server in time; the "
                               "connection was closed");
        }
        return;
    }
    if (id == 0) {
        /* The connect deadline. */
        Py_CLEAR(c->connect_timer);
        if (c->state == CONN_CONNECTING) {
            PyObject *exc = PyObject_CallFunction(PyExc_TimeoutError, "s",
                                                  "timed out connecting to the server");
            if (exc == NULL) {
                PyErr_Clear();
            }
            agentdb_connection_close_now(c, exc);
            Py_XDECREF(exc);
        }
        return;
    }
    for (agentdb_Op *op = c->head; op != NULL; op = op->next) {
        if (op->id != id) {
            continue;
        }
        Py_CLEAR(op->timer);
        if (op->cancel_sent) {
            /* The server did not act on the cancel in time: the link is dead. */
            agentdb_conn_close_lost(c, "the server did not answer a cancelled statement in time; "
                               "the connection was closed");
            return;
        }
        if (op->fut != NULL) {
            PyObject *exc = timeout_error(op->timeout);
            if (exc == NULL || agentdb_future_set_exception(st, op->fut, exc) < 0) {
                PyErr_WriteUnraisable(op->fut);
            }
            Py_XDECREF(exc);
        }
        else if (op->done != NULL && op->error == NULL) {
            /* An internal statement (a reset, a ping) that did not finish in time
               failed, whatever its late answer says. */
            op->error = timeout_error(op->timeout);
            if (op->error == NULL) {
                PyErr_Clear();
            }
        }
        agentdb_conn_abandon(c, op);
        return;
    }
}
