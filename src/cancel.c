/* cancel.c: statements whose awaiter is gone: their deadlines, abandoning them, and
   cancel requests, sent only when every statement in flight is abandoned: on the event
   loop with libpq 17+ (PQcancelStart/PQcancelPoll), else a thread each (PQcancel blocks). */
#include "conn_int.h"

#include <unistd.h>

static PyObject *timeout_error(double timeout)
{
    return PyObject_CallFunction(PyExc_TimeoutError, "s",
                                 timeout > 0 ? "the statement timed out" : "timed out");
}

/* The request delivered (or failed): the connection may send its next statement, if it
   still waits for this one (it may have closed meanwhile: then nothing). */
static void conn_on_cancel_done(PyObject *self, PyObject *arg)
{
    (void)arg;
    agentdb_Connection *c = (agentdb_Connection *)self;
    if (c->cancel_pending > 0 && --c->cancel_pending == 0) {
        agentdb_timer_cancel(agentdb_conn_st(c), &c->cancel_timer);
        agentdb_conn_process(c);
    }
}

#ifdef LIBPQ_HAS_ASYNC_CANCEL
/* libpq 17+: a cancel request on the loop, no thread.  A PGcancelConn (PQcancelCreate:
   the connection's own address and encryption settings, so a TLS connection cancels over
   TLS) is driven by PQcancelPoll from its socket's readiness, as a connection's connect is
   (agentdb_conn_connect_step), until the server closes it (delivered) or it fails.  The
   loop holds the job (its reader or writer, its deadline) and nothing else does: a job
   frees its PGcancelConn when the request completes, fails or outlives its deadline; a
   job the loop drops unfinished (loop closed, interpreter teardown) frees it when
   collected.  It outlives its connection: a close cancels what still runs, fire and
   forget. */
typedef struct {
    PyObject_HEAD
    agentdb_state *st;
    PGcancelConn *cc;
    PyObject *loop;
    PyObject *done_cb; /* the connection's handle, detached when it goes away */
    PyObject *timer;   /* its deadline */
    agentdb_fdwatch watch;
} cancel_job;

/* The request is over: stop watching, free the PGcancelConn, tell the connection
   (`delivered`: it completed or failed; not at the deadline: the connection's own
   cancel_timer, due first, decides then). */
static void job_finish(cancel_job *j, int delivered)
{
    agentdb_fdwatch_stop(j->st, &j->watch, j->loop);
    agentdb_timer_cancel(j->st, &j->timer);
    if (j->cc != NULL) {
        PQcancelFinish(j->cc);
        j->cc = NULL;
        AGENTDB_COUNT(j->st->live_cancelconns, -1);
    }
    PyObject *done = j->done_cb;
    j->done_cb = NULL;
    Py_CLEAR(j->loop);
    if (done != NULL && delivered) {
        PyObject *r = PyObject_CallOneArg(done, Py_None);
        if (r == NULL) {
            PyErr_WriteUnraisable(done);
        }
        Py_XDECREF(r);
    }
    Py_XDECREF(done);
}

/* One PQcancelPoll step; watch for what it asks next.  The socket can change between
   steps and libpq may have closed the old one: unwatch before polling, watch after. */
static void job_step(cancel_job *j)
{
    agentdb_fdwatch_stop(j->st, &j->watch, j->loop);
    PostgresPollingStatusType ps = PQcancelPoll(j->cc);
    int fd = PQcancelSocket(j->cc);
    int rc = 0;
    if (ps == PGRES_POLLING_READING) {
        rc = agentdb_fdwatch_read(&j->watch, j->loop, fd, (PyObject *)j);
    }
    else if (ps == PGRES_POLLING_WRITING) {
        rc = agentdb_fdwatch_write(&j->watch, j->loop, fd, 1, (PyObject *)j);
    }
    else {
        job_finish(j, 1); /* PGRES_POLLING_OK: delivered; FAILED: as PQcancel's failure */
        return;
    }
    if (rc < 0) {
        PyErr_Clear();
        job_finish(j, 1);
    }
}

/* job(): its socket is ready; job(True): its deadline passed. */
static PyObject *job_call(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)kwargs;
    cancel_job *j = (cancel_job *)self;
    Py_INCREF(self); /* finishing drops what holds it */
    if (j->cc != NULL && j->loop != NULL) {
        if (PyTuple_GET_SIZE(args) > 0) {
            job_finish(j, 0);
        }
        else {
            job_step(j);
        }
    }
    Py_DECREF(self);
    Py_RETURN_NONE;
}

static int job_traverse(PyObject *self, visitproc visit, void *arg)
{
    cancel_job *j = (cancel_job *)self;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(j->loop);
    Py_VISIT(j->done_cb);
    Py_VISIT(j->timer);
    return 0;
}

static int job_clear(PyObject *self)
{
    cancel_job *j = (cancel_job *)self;
    Py_CLEAR(j->loop);
    Py_CLEAR(j->done_cb);
    Py_CLEAR(j->timer);
    return 0;
}

static void job_dealloc(PyObject *self)
{
    cancel_job *j = (cancel_job *)self;
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    job_clear(self);
    if (j->cc != NULL) { /* dropped unfinished by its loop */
        PQcancelFinish(j->cc);
        AGENTDB_COUNT(j->st->live_cancelconns, -1);
    }
    if (j->watch.fd >= 0) {
        close(j->watch.fd); /* nothing polls it any more: the loop let go of us */
    }
    PyObject_GC_Del(self);
    Py_DECREF(tp);
}

static PyType_Slot job_slots[] = {
    {Py_tp_call, job_call},
    {Py_tp_traverse, job_traverse},
    {Py_tp_clear, job_clear},
    {Py_tp_dealloc, job_dealloc},
    {Py_tp_doc, "A cancel request driven by the event loop (libpq 17+; internal)."},
    {0, NULL},
};

static PyType_Spec job_spec = {
    .name = "agentdb._core._CancelRequest",
    .basicsize = sizeof(cancel_job),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = job_slots,
};

/* Start a request on the loop.  0 => started (cancel_pending counts it), -1 => error set. */
static int cancel_start(agentdb_Connection *c, PyObject *done_cb)
{
    agentdb_state *st = agentdb_conn_st(c);
    PGcancelConn *cc = PQcancelCreate(c->pg);
    if (cc == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (PQcancelStatus(cc) == CONNECTION_BAD || !PQcancelStart(cc)) {
        PQcancelFinish(cc);
        PyErr_SetString(PyExc_OSError, "could not start a cancel request");
        return -1;
    }
    cancel_job *j = PyObject_GC_New(cancel_job, st->CancelRequestType);
    if (j == NULL) {
        PQcancelFinish(cc);
        return -1;
    }
    j->st = st;
    j->cc = cc;
    j->loop = Py_NewRef(c->loop);
    j->done_cb = Py_NewRef(done_cb);
    j->timer = NULL;
    agentdb_fdwatch_init(&j->watch);
    PyObject_GC_Track((PyObject *)j);
    AGENTDB_COUNT(st->live_cancelconns, 1);
    AGENTDB_COUNT(st->cancels_async, 1);
    /* Freed by its deadline at the latest: a little after the connection's own, which
       closes the connection when the request is not through by then. */
    j->timer = agentdb_call_later(st, c->loop, c->cancel_grace + 1.0, (PyObject *)j, Py_True);
    /* The first poll waits for the socket to be writable (as after PQconnectStart). */
    if (j->timer == NULL ||
        agentdb_fdwatch_write(&j->watch, c->loop, PQcancelSocket(cc), 1, (PyObject *)j) < 0) {
        PyObject *exc = PyErr_GetRaisedException();
        job_finish(j, 0);
        Py_DECREF(j);
        PyErr_SetRaisedException(exc);
        return -1;
    }
    c->cancel_pending++;
    Py_DECREF(j); /* the loop holds it now */
    return 0;
}

int agentdb_cancel_setup(PyObject *module, agentdb_state *st)
{
    st->CancelRequestType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &job_spec, NULL);
    return st->CancelRequestType == NULL ? -1 : 0;
}

#else /* libpq < 17 */

/* libpq < 17: a cancel request runs on a thread of its own: PQcancel blocks and the loop
   never blocks.  When it is done the thread tells the loop (call_soon_threadsafe), and
   only then may the connection send its next statement: a cancel that arrived late would
   otherwise cancel that one. */
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

/* Start a request on a thread.  0 => started (cancel_pending counts it), -1 => error set. */
static int cancel_start(agentdb_Connection *c, PyObject *done_cb)
{
    cancel_job *job = PyMem_RawCalloc(1, sizeof(*job));
    if (job == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    job->cancel = PQgetCancel(c->pg);
    if (job->cancel == NULL) {
        PyMem_RawFree(job);
        PyErr_SetString(PyExc_OSError, "could not start a cancel request");
        return -1;
    }
    job->done_cb = Py_NewRef(done_cb);
    job->loop = Py_NewRef(c->loop);
    c->cancel_pending++;
    if (PyThread_start_new_thread(cancel_thread, job) == PYTHREAD_INVALID_THREAD_ID) {
        c->cancel_pending--;
        Py_DECREF(job->loop);
        Py_DECREF(job->done_cb);
        PQfreeCancel(job->cancel);
        PyMem_RawFree(job);
        PyErr_SetString(PyExc_OSError, "could not start a cancel thread");
        return -1;
    }
    AGENTDB_COUNT(agentdb_conn_st(c)->cancel_threads, 1);
    return 0;
}

int agentdb_cancel_setup(PyObject *module, agentdb_state *st)
{
    (void)module;
    (void)st;
    return 0;
}

#endif /* LIBPQ_HAS_ASYNC_CANCEL */

/* Ask the server to cancel what the connection runs now.  A request that cannot start is
   as one that did not get through: the cancelled statement's cancel_grace closes the
   connection. */
void agentdb_conn_request_cancel(agentdb_Connection *c)
{
    agentdb_state *st = agentdb_conn_st(c);
    if (c->pg == NULL) {
        return;
    }
    /* The connection's own handle, detached when the connection goes away:
       a cancel that completes after that calls nothing. */
    if (c->cb_cancel_done == NULL) {
        c->cb_cancel_done = agentdb_iohandle_new(st, (PyObject *)c, conn_on_cancel_done);
        if (c->cb_cancel_done == NULL) {
            PyErr_Clear();
            return;
        }
    }
    if (c->cancel_timer == NULL) {
        /* Bounded: a cancel that cannot get through closes the connection. */
        c->cancel_timer = agentdb_call_later(st, c->loop, c->cancel_grace, c->cb_timer,
                                             st->cancel_timer_id);
        if (c->cancel_timer == NULL) {
            PyErr_Clear();
        }
    }
    if (cancel_start(c, c->cb_cancel_done) < 0) {
        PyErr_Clear();
    }
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
