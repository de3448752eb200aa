/* pool.c: the Pool type: creating and closing a pool, acquire() and release(),
   the AcquireContext of `async with pool.acquire()`, stats(). */
#include "pool_int.h"


static PyObject *Pool_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    (void)args;
    (void)kwargs;
    agentdb_Pool *p = (agentdb_Pool *)type->tp_alloc(type, 0);
    if (p != NULL) {
        p->st = agentdb_state_from_type(type);
    }
    return (PyObject *)p;
}

int agentdb_pool_check_open(agentdb_Pool *p, agentdb_state *st)
{
    if (p->closing) {
        PyErr_SetString(st->InterfaceError, "the pool is closed");
        return -1;
    }
    PyObject *loop = agentdb_running_loop(st);
    if (loop == NULL) {
        return -1;
    }
    int same = loop == p->loop;
    Py_DECREF(loop);
    if (!same) {
        PyErr_SetString(st->InterfaceError,
                        "this pool belongs to another event loop (a pool created in one "
                        "event loop, e.g. a session-scoped fixture, cannot be used from "
                        "another: create it on the loop that uses it)");
        return -1;
    }
    return 0;
}

/* A future resolving to a checked-out connection. */
static PyObject *pool_acquire_future(agentdb_Pool *p, double timeout)
{
    agentdb_state *st = agentdb_pool_st(p);
    if (agentdb_pool_check_open(p, st) < 0) {
        return NULL;
    }
    PyObject *fut = agentdb_future_new(st, p->loop, (PyObject *)p);
    if (fut == NULL) {
        return NULL;
    }
    if (p->nwaiters == 0) {
        agentdb_Connection *c = agentdb_pool_pop_idle(p);
        if (c != NULL) {
            /* The fast path: a done future, so awaiting it never suspends
               and no cancellation can fall between hand-out and use. */
            p->in_use++;
            p->n_acquired++;
            p->wait_hist[0]++;
            agentdb_pool_link(c)->state = POOLST_IN_USE;
            agentdb_pool_link(c)->last_used = agentdb_monotonic();
            int rc = agentdb_future_set_result(st, fut, (PyObject *)c);
            Py_DECREF(c);
            if (rc < 0) {
                Py_DECREF(fut);
                return NULL;
            }
            return fut;
        }
    }
    if (agentdb_pool_add_waiter(p, fut, timeout > 0 ? timeout : p->pool_timeout) == NULL) {
        Py_DECREF(fut);
        return NULL;
    }
    agentdb_pool_grow(p);
    agentdb_pool_reserve(p);
    return fut;
}

static PyObject *done_future(agentdb_state *st, PyObject *loop, PyObject *value)
{
    PyObject *fut = agentdb_future_new(st, loop, NULL);
    if (fut != NULL && agentdb_future_set_result(st, fut, value) < 0) {
        Py_CLEAR(fut);
    }
    return fut;
}

/* Give back a checked-out connection: it never goes back dirty.  Never
   waits: draining, rollback and pings happen in the pool's own time. */
static int pool_release_conn(agentdb_Pool *p, PyObject *obj)
{
    agentdb_state *st = agentdb_pool_st(p);
    if (!agentdb_connection_check(st, obj)) {
        PyErr_Format(PyExc_TypeError, "release() expects a Connection, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    agentdb_Connection *c = (agentdb_Connection *)obj;
    if (agentdb_pool_link(c)->pool != (PyObject *)p) {
        PyErr_SetString(st->InterfaceError, "this connection does not belong to this pool");
        return -1;
    }
    if (agentdb_pool_link(c)->state != POOLST_IN_USE) {
        if (agentdb_pool_link(c)->state == POOLST_NONE) {
            return 0; /* closed while checked out: its slot is already free */
        }
        PyErr_SetString(st->InterfaceError, "this connection was already released");
        return -1;
    }
    p->in_use--;
    agentdb_pool_link(c)->state = POOLST_RESETTING;
    if (PyList_Append(p->resetting, obj) < 0) {
        return -1;
    }
    /* The next user must not get this user's transactions, LISTENs or handlers.  (With
       the session reset, LISTEN made the session dirty and the reset unlistens.) */
    agentdb_connection_forget_user(c, p->reset_mode != RESET_SESSION);
    if (!agentdb_connection_alive(c)) {
        agentdb_pool_close_conn(c);
    }
    else if (agentdb_connection_pending(c) == 0) {
        agentdb_pool_conn_drained((PyObject *)p, c);
    }
    /* else: its statements still run (a cancelled one draining); the drain hook
       resets and hands it out after them, and their own deadlines bound that. */
    return 0;
}

static PyObject *Pool_release(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    agentdb_Pool *p = (agentdb_Pool *)self;
    agentdb_state *st = agentdb_pool_st(p);
    agentdb_kwargs kw; /* timeout= is asyncpg's: releasing never waits */
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "release(connection, *, timeout=None)");
        return NULL;
    }
    if (agentdb_parse_kwargs("release", args, nargs, kwnames, AGENTDB_KW_TIMEOUT, &kw) < 0 ||
        pool_release_conn(p, args[0]) < 0) {
        return NULL;
    }
    return done_future(st, p->loop, Py_None);
}

/* The waiter's future was cancelled (its task was). */
static PyObject *Pool__future_cancelled(PyObject *self, PyObject *fut)
{
    agentdb_Pool *p = (agentdb_Pool *)self;
    agentdb_state *st = agentdb_pool_st(p);
    agentdb_Waiter *w = agentdb_waiter_unlink(p, agentdb_waiter_match_fut, fut);
    if (w != NULL) {
        p->n_cancelled_waits++;
        agentdb_waiter_free(st, w);
    }
    Py_RETURN_NONE;
}

/* A connection was handed to a task that was cancelled before it could see
   it: take it back. */
static PyObject *Pool__future_abandoned(PyObject *self, PyObject *fut)
{
    agentdb_Pool *p = (agentdb_Pool *)self;
    agentdb_state *st = agentdb_pool_st(p);
    PyObject *conn = PyObject_CallMethodNoArgs(fut, st->str_result);
    if (conn == NULL) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    if (agentdb_connection_check(st, conn) &&
        agentdb_pool_link((agentdb_Connection *)conn)->state == POOLST_IN_USE) {
        p->n_cancelled_waits++;
        if (pool_release_conn(p, conn) < 0) {
            PyErr_Clear();
        }
    }
    Py_DECREF(conn);
    Py_RETURN_NONE;
}

typedef struct {
    PyObject_HEAD
    PyObject *pool;
    PyObject *fut;
    double timeout;
} agentdb_AcquireContext;

static PyObject *Pool_acquire(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    agentdb_Pool *p = (agentdb_Pool *)self;
    agentdb_state *st = agentdb_pool_st(p);
    agentdb_kwargs kw;
    if (nargs > 0) {
        PyErr_SetString(PyExc_TypeError, "acquire() takes only timeout=");
        return NULL;
    }
    if (agentdb_parse_kwargs("acquire", args, nargs, kwnames, AGENTDB_KW_TIMEOUT, &kw) < 0) {
        return NULL;
    }
    agentdb_AcquireContext *ctx = PyObject_GC_New(agentdb_AcquireContext, st->AcquireContextType);
    if (ctx == NULL) {
        return NULL;
    }
    ctx->pool = Py_NewRef(self);
    ctx->fut = NULL;
    ctx->timeout = kw.timeout;
    PyObject_GC_Track(ctx);
    return (PyObject *)ctx;
}

static PyObject *AcquireContext_start(agentdb_AcquireContext *ctx)
{
    agentdb_state *st = agentdb_state_from_type(Py_TYPE(ctx));
    if (ctx->fut != NULL) {
        PyErr_SetString(st->InterfaceError, "this acquire() was already awaited");
        return NULL;
    }
    ctx->fut = pool_acquire_future((agentdb_Pool *)ctx->pool, ctx->timeout);
    return Py_XNewRef(ctx->fut);
}

static PyObject *AcquireContext_await(PyObject *self)
{
    PyObject *fut = AcquireContext_start((agentdb_AcquireContext *)self);
    if (fut == NULL) {
        return NULL;
    }
    PyObject *it = Py_TYPE(fut)->tp_as_async->am_await(fut);
    Py_DECREF(fut);
    return it;
}

static PyObject *AcquireContext_aenter(PyObject *self, PyObject *Py_UNUSED(ig))
{
    return AcquireContext_start((agentdb_AcquireContext *)self);
}

static PyObject *AcquireContext_aexit(PyObject *self, PyObject *args)
{
    agentdb_AcquireContext *ctx = (agentdb_AcquireContext *)self;
    agentdb_Pool *p = (agentdb_Pool *)ctx->pool;
    agentdb_state *st = agentdb_pool_st(p);
    (void)args;
    if (ctx->fut == NULL) {
        PyErr_SetString(st->InterfaceError, "__aexit__ without __aenter__");
        return NULL;
    }
    PyObject *conn = PyObject_CallMethodNoArgs(ctx->fut, st->str_result);
    Py_CLEAR(ctx->fut);
    if (conn == NULL) {
        return NULL;
    }
    int rc = pool_release_conn(p, conn);
    Py_DECREF(conn);
    if (rc < 0) {
        return NULL;
    }
    return done_future(st, p->loop, Py_False);
}

static int AcquireContext_traverse(PyObject *self, visitproc visit, void *arg)
{
    agentdb_AcquireContext *ctx = (agentdb_AcquireContext *)self;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(ctx->pool);
    Py_VISIT(ctx->fut);
    return 0;
}

static int AcquireContext_clear(PyObject *self)
{
    agentdb_AcquireContext *ctx = (agentdb_AcquireContext *)self;
    Py_CLEAR(ctx->pool);
    Py_CLEAR(ctx->fut);
    return 0;
}

static void AcquireContext_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    AcquireContext_clear(self);
    PyObject_GC_Del(self);
    Py_DECREF(tp);
}

static PyMethodDef AcquireContext_methods[] = {
    {"__aenter__", AcquireContext_aenter, METH_NOARGS, NULL},
    {"__aexit__", AcquireContext_aexit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot AcquireContext_slots[] = {
    {Py_am_await, AcquireContext_await},
    {Py_tp_methods, AcquireContext_methods},
    {Py_tp_traverse, AcquireContext_traverse},
    {Py_tp_clear, AcquireContext_clear},
    {Py_tp_dealloc, AcquireContext_dealloc},
    {0, NULL},
};

static PyType_Spec AcquireContext_spec = {
    .name = "agentdb._core.AcquireContext",
    .basicsize = sizeof(agentdb_AcquireContext),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = AcquireContext_slots,
};

static int Pool_init(PyObject *self, PyObject *args, PyObject *kwargs)
{
    agentdb_Pool *p = (agentdb_Pool *)self;
    agentdb_state *st = agentdb_pool_st(p);
    static char *kwlist[] = {"opener", "pool_size", "max_overflow", "pool_timeout",
                             "pool_recycle", "max_idle", "pre_ping", "ping_after",
                             "reset_timeout", "reset", NULL};
    PyObject *opener, *reset_arg = Py_None;
    Py_ssize_t size = 20, overflow = 10;
    double timeout = 30, recycle = 3600, max_idle = 300, ping_after = 10, reset = 5;
    int pre_ping = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|nndddpddO:Pool", kwlist, &opener, &size,
                                     &overflow, &timeout, &recycle, &max_idle, &pre_ping,
                                     &ping_after, &reset, &reset_arg)) {
        return -1;
    }
    if (!PyCallable_Check(opener)) {
        PyErr_SetString(PyExc_TypeError, "opener must be callable");
        return -1;
    }
    /* reset: None or "session" (the default), "transaction", or a callable
       (conn) -> awaitable of bool, run on every release after the rollback. */
    int reset_mode;
    if (reset_arg == Py_None ||
        (PyUnicode_Check(reset_arg) && PyUnicode_CompareWithASCIIString(reset_arg, "session") == 0)) {
        reset_mode = RESET_SESSION;
    }
    else if (PyUnicode_Check(reset_arg) &&
             PyUnicode_CompareWithASCIIString(reset_arg, "transaction") == 0) {
        reset_mode = RESET_TRANSACTION;
    }
    else if (PyCallable_Check(reset_arg) && !PyUnicode_Check(reset_arg)) {
        reset_mode = RESET_CALLABLE;
    }
    else {
        PyErr_Format(PyExc_ValueError,
                     "reset must be None, 'session', 'transaction' or a coroutine function, "
                     "not %R", reset_arg);
        return -1;
    }
    if (size < 1) {
        PyErr_SetString(PyExc_ValueError, "pool_size must be at least 1");
        return -1;
    }
    if (overflow < 0) {
        PyErr_SetString(PyExc_ValueError, "max_overflow must be >= 0");
        return -1;
    }
    if (timeout <= 0) {
        PyErr_SetString(PyExc_ValueError, "pool_timeout must be > 0");
        return -1;
    }
    if (p->loop != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Pool.__init__ called twice");
        return -1;
    }
    p->loop = agentdb_running_loop(st);
    if (p->loop == NULL) {
        return -1;
    }
    p->opener = Py_NewRef(opener);
    p->pool_size = size;
    p->max_overflow = overflow;
    p->pool_timeout = timeout;
    p->recycle = recycle;
    p->max_idle = max_idle;
    p->pre_ping = pre_ping;
    p->ping_after = ping_after;
    p->reset_timeout = reset > 0 ? reset : 5;
    p->reset_mode = reset_mode;
    p->typical = p->typical_rtt = 0.0002; /* until timed: a query on a local network */
    p->log_typical = p->log_typical_rtt = log(p->typical);
    p->reset_cb = reset_mode == RESET_CALLABLE ? Py_NewRef(reset_arg) : NULL;
    p->user_resets = PyDict_New();
    p->profiles = PyDict_New();
    if (p->user_resets == NULL || p->profiles == NULL) {
        return -1;
    }
    p->idle = PyList_New(0);
    p->shared = PyList_New(0);
    p->resetting = PyList_New(0);
    PyObject *weakref = PyImport_ImportModule("weakref");
    if (weakref == NULL) {
        return -1;
    }
    p->all = PyObject_CallMethod(weakref, "WeakSet", NULL);
    Py_DECREF(weakref);
    p->tasks = PySet_New(NULL);
    if (p->tasks == NULL) {
        return -1;
    }
    p->cb_timer = agentdb_iohandle_new(st, self, agentdb_pool_on_timer);
    p->cb_opened = agentdb_iohandle_new(st, self, agentdb_pool_on_opened);
    p->cb_maint = agentdb_iohandle_new(st, self, agentdb_pool_on_maintenance);
    p->cb_grow = agentdb_iohandle_new(st, self, agentdb_pool_on_grow_timer);
    p->cb_reset_done = agentdb_iohandle_new(st, self, agentdb_pool_on_user_reset_done);
    if (p->cb_grow == NULL || p->cb_reset_done == NULL) {
        return -1;
    }
    if (p->idle == NULL || p->shared == NULL || p->resetting == NULL || p->all == NULL ||
        p->cb_timer == NULL || p->cb_opened == NULL || p->cb_maint == NULL) {
        return -1;
    }
    /* The loop holds the handles, the handles point at us weakly: a pool that
       is dropped unclosed can still be collected. */
    agentdb_pool_on_maintenance(self, Py_None);
    return 0;
}

/* _adopt(conn): take a connection opened by create_pool's prefill. */
static PyObject *Pool__adopt(PyObject *self, PyObject *conn)
{
    agentdb_Pool *p = (agentdb_Pool *)self;
    agentdb_state *st = agentdb_pool_st(p);
    if (!agentdb_connection_check(st, conn)) {
        PyErr_SetString(PyExc_TypeError, "_adopt() expects a Connection");
        return NULL;
    }
    if (agentdb_pool_adopt(p, (agentdb_Connection *)conn) < 0) {
        return NULL;
    }
    agentdb_pool_make_available(p, (agentdb_Connection *)conn);
    Py_RETURN_NONE;
}

static void pool_close_list(PyObject *list)
{
    while (PyList_GET_SIZE(list) > 0) {
        Py_ssize_t before = PyList_GET_SIZE(list);
        PyObject *c = Py_NewRef(PyList_GET_ITEM(list, before - 1));
        agentdb_pool_close_conn((agentdb_Connection *)c);
        if (PyList_GET_SIZE(list) == before) {
            /* Not removed by the close hook (already closed): drop it. */
            PyList_SetSlice(list, before - 1, before, NULL);
        }
        Py_DECREF(c);
    }
}

/* Cancel the connects in progress: their tasks close what they opened, and
   agentdb_pool_on_opened frees their slots. 0 => ok, -1 => error set. */
static int pool_cancel_connects(agentdb_Pool *p)
{
    agentdb_state *st = agentdb_pool_st(p);
    PyObject *tasks = PySequence_List(p->tasks);
    if (tasks == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(tasks); i++) {
        PyObject *r = PyObject_CallMethodNoArgs(PyList_GET_ITEM(tasks, i), st->str_cancel);
        if (r == NULL) {
            PyErr_Clear();
        }
        Py_XDECREF(r);
    }
    Py_DECREF(tasks);
    return 0;
}

/* _begin_close() -> Future resolved when every connection is closed.
   Waiters fail now, idle connections close now; checked-out ones close when
   they come back. */
static PyObject *Pool__begin_close(PyObject *self, PyObject *Py_UNUSED(ig))
{
    agentdb_Pool *p = (agentdb_Pool *)self;
    agentdb_state *st = agentdb_pool_st(p);
    if (p->drained == NULL) {
        p->drained = agentdb_future_new(st, p->loop, NULL);
        if (p->drained == NULL) {
            return NULL;
        }
    }
    p->closing = 1;
    agentdb_timer_cancel(st, &p->maint_timer);
    agentdb_pool_fail_waiters(p, "the pool is closing");
    pool_close_list(p->idle);
    /* Nobody waits for a connect in progress any more: cancel it rather than
       wait for a server that may never answer. */
    if (pool_cancel_connects(p) < 0) {
        return NULL;
    }
    /* Shared connections finish their statements, then close (closing is set). */
    agentdb_pool_check_drained(p);
    return Py_NewRef(p->drained);
}

/* terminate(): close every connection now, checked out or not. */
static PyObject *Pool_terminate(PyObject *self, PyObject *Py_UNUSED(ig))
{
    agentdb_Pool *p = (agentdb_Pool *)self;
    agentdb_state *st = agentdb_pool_st(p);
    p->closing = 1;
    agentdb_timer_cancel(st, &p->maint_timer);
    agentdb_pool_fail_waiters(p, "the pool was terminated");
    PyObject *all = PySequence_List(p->all);
    if (all == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(all); i++) {
        agentdb_pool_close_conn((agentdb_Connection *)PyList_GET_ITEM(all, i));
    }
    Py_DECREF(all);
    if (pool_cancel_connects(p) < 0) {
        return NULL;
    }
    pool_close_list(p->idle);
    pool_close_list(p->shared);
    pool_close_list(p->resetting);
    agentdb_pool_check_drained(p);
    Py_RETURN_NONE;
}

#define STAT(name, value)                                         \
    do {                                                          \
        PyObject *v_ = (value);                                   \
        if (v_ == NULL || PyDict_SetItemString(d, name, v_) < 0) { \
            Py_XDECREF(v_);                                       \
            Py_DECREF(d);                                         \
            return NULL;                                          \
        }                                                         \
        Py_DECREF(v_);                                            \
    } while (0)

/* _expire(): every connection open now is replaced: an idle one when next taken, one in
   use or shared when it comes back (pool_expired); asyncpg's expire_connections(). */
static PyObject *Pool__expire(PyObject *self, PyObject *Py_UNUSED(ig))
{
    ((agentdb_Pool *)self)->expire_before = agentdb_monotonic();
    Py_RETURN_NONE;
}

static PyObject *Pool_stats(PyObject *self, PyObject *Py_UNUSED(ig))
{
    agentdb_Pool *p = (agentdb_Pool *)self;
    PyObject *d = PyDict_New();
    if (d == NULL) {
        return NULL;
    }
    Py_ssize_t size = agentdb_pool_count(p);
    STAT("size", PyLong_FromSsize_t(size));
    STAT("max_size", PyLong_FromSsize_t(p->pool_size + p->max_overflow));
    STAT("pool_size", PyLong_FromSsize_t(p->pool_size));
    STAT("max_overflow", PyLong_FromSsize_t(p->max_overflow));
    STAT("overflow", PyLong_FromSsize_t(size > p->pool_size ? size - p->pool_size : 0));
    STAT("idle", PyLong_FromSsize_t(PyList_GET_SIZE(p->idle)));
    STAT("in_use", PyLong_FromSsize_t(p->in_use));
    STAT("shared", PyLong_FromSsize_t(PyList_GET_SIZE(p->shared)));
    STAT("resetting", PyLong_FromSsize_t(PyList_GET_SIZE(p->resetting)));
    STAT("opening", PyLong_FromSsize_t(p->opening));
    STAT("waiting", PyLong_FromSsize_t(p->nwaiters));
    STAT("acquired", PyLong_FromUnsignedLongLong(p->n_acquired));
    STAT("shortcuts", PyLong_FromUnsignedLongLong(p->n_shortcuts));
    STAT("timeouts", PyLong_FromUnsignedLongLong(p->n_timeouts));
    STAT("cancelled_waits", PyLong_FromUnsignedLongLong(p->n_cancelled_waits));
    STAT("opened", PyLong_FromUnsignedLongLong(p->n_opened));
    STAT("closed", PyLong_FromUnsignedLongLong(p->n_closed));
    STAT("lost", PyLong_FromUnsignedLongLong(p->n_lost));
    STAT("recycled", PyLong_FromUnsignedLongLong(p->n_recycled));
    STAT("expired", PyLong_FromUnsignedLongLong(p->n_expired));
    STAT("pings", PyLong_FromUnsignedLongLong(p->n_pings));
    STAT("failed_pings", PyLong_FromUnsignedLongLong(p->n_failed_pings));
    STAT("connect_errors", PyLong_FromUnsignedLongLong(p->n_connect_errors));
    STAT("rollbacks", PyLong_FromUnsignedLongLong(p->n_rollbacks));
    /* Session resets queued (a connection's user changed its session). */
    STAT("session_resets", PyLong_FromUnsignedLongLong(p->n_resets));
    /* Shortcuts that changed the session and ran on a connection of their own. */
    STAT("isolated_shortcuts", PyLong_FromUnsignedLongLong(p->n_isolated));
    /* Shortcuts that opened a connection rather than wait behind long statements. */
    STAT("grown_for_wait", PyLong_FromUnsignedLongLong(p->n_grown_for_wait));
    STAT("leaked", PyLong_FromUnsignedLongLong(p->n_leaked));
    /* Statements whose awaiter gave up (timeout or cancelled task); of those,
       the ones already on the server (cancelled there when alone in flight). */
    STAT("queries_cancelled", PyLong_FromUnsignedLongLong(p->n_abandoned));
    STAT("queries_cancelled_on_server", PyLong_FromUnsignedLongLong(p->n_abandoned_on_server));
    STAT("wait_time_total", PyFloat_FromDouble(p->wait_total));
    STAT("wait_time_max", PyFloat_FromDouble(p->wait_max));
    STAT("wait_histogram",
         Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K}", "1ms", p->wait_hist[0], "10ms",
                       p->wait_hist[1], "100ms", p->wait_hist[2], "1s", p->wait_hist[3], "10s",
                       p->wait_hist[4], "30s", p->wait_hist[5], "60s", p->wait_hist[6], "inf",
                       p->wait_hist[7]));
    STAT("closing", PyBool_FromLong(p->closing));
    return d;
}

#ifdef AGENTDB_TESTING
/* _connections() -> (idle, shared, resetting): lists of the connections the
   pool holds, for tests and post-mortems. */
static PyObject *Pool__connections(PyObject *self, PyObject *Py_UNUSED(ig))
{
    agentdb_Pool *p = (agentdb_Pool *)self;
    return Py_BuildValue("(NNN)", PySequence_List(p->idle), PySequence_List(p->shared),
                         PySequence_List(p->resetting));
}

/* _profiles() -> dict: SQL text -> StatementProfile, what the shortcuts learned. */
static PyObject *Pool__profiles(PyObject *self, PyObject *Py_UNUSED(ig))
{
    return PyDict_Copy(((agentdb_Pool *)self)->profiles);
}
#endif

static PyObject *Pool_is_closing(PyObject *self, PyObject *Py_UNUSED(ig))
{
    return PyBool_FromLong(((agentdb_Pool *)self)->closing);
}

static PyObject *Pool_get_loop(PyObject *self, PyObject *Py_UNUSED(ig))
{
    agentdb_Pool *p = (agentdb_Pool *)self;
    return Py_NewRef(p->loop ? p->loop : Py_None);
}

static PyMethodDef Pool_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))Pool_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire(timeout=None): await it, or use `async with pool.acquire() as conn`."},
    {"release", (PyCFunction)(void (*)(void))Pool_release, METH_FASTCALL | METH_KEYWORDS,
     "release(conn) -> Future[None]: give a connection back (never waits)."},
    {"fetch", (PyCFunction)(void (*)(void))agentdb_Pool_fetch, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"fetchrow", (PyCFunction)(void (*)(void))agentdb_Pool_fetchrow, METH_FASTCALL | METH_KEYWORDS,
     NULL},
    {"fetchval", (PyCFunction)(void (*)(void))agentdb_Pool_fetchval, METH_FASTCALL | METH_KEYWORDS,
     NULL},
    {"execute", (PyCFunction)(void (*)(void))agentdb_Pool_execute, METH_FASTCALL | METH_KEYWORDS,
     NULL},
    {"_expire", Pool__expire, METH_NOARGS, NULL},
    {"stats", Pool_stats, METH_NOARGS, "Counters and sizes of the pool, as a dict."},
    {"terminate", Pool_terminate, METH_NOARGS, "Close every connection now."},
    {"is_closing", Pool_is_closing, METH_NOARGS, NULL},
#ifdef AGENTDB_TESTING
    {"_connections", Pool__connections, METH_NOARGS, NULL},
    {"_profiles", Pool__profiles, METH_NOARGS, NULL},
#endif
    {"get_loop", Pool_get_loop, METH_NOARGS, NULL},
    {"_begin_close", Pool__begin_close, METH_NOARGS, NULL},
    {"_adopt", Pool__adopt, METH_O, NULL},
    {"_future_cancelled", Pool__future_cancelled, METH_O, NULL},
    {"_future_abandoned", Pool__future_abandoned, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static int Pool_traverse(PyObject *self, visitproc visit, void *arg)
{
    agentdb_Pool *p = (agentdb_Pool *)self;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(p->loop);
    Py_VISIT(p->opener);
    Py_VISIT(p->idle);
    Py_VISIT(p->shared);
    Py_VISIT(p->resetting);
    Py_VISIT(p->all);
    Py_VISIT(p->tasks);
    Py_VISIT(p->drained);
    Py_VISIT(p->reset_cb);
    Py_VISIT(p->user_resets);
    Py_VISIT(p->profiles);
    for (agentdb_Waiter *w = p->whead; w != NULL; w = w->next) {
        Py_VISIT(w->fut);
        Py_VISIT(w->args);
    }
    return 0;
}

static int Pool_clear(PyObject *self)
{
    agentdb_Pool *p = (agentdb_Pool *)self;
    agentdb_state *st = agentdb_pool_st(p);
    agentdb_Waiter *w;
    while ((w = agentdb_waiter_pop(p)) != NULL) {
        agentdb_waiter_free(st, w);
    }
    Py_CLEAR(p->opener);
    Py_CLEAR(p->idle);
    Py_CLEAR(p->shared);
    Py_CLEAR(p->resetting);
    Py_CLEAR(p->all);
    Py_CLEAR(p->tasks);
    Py_CLEAR(p->drained);
    Py_CLEAR(p->reset_cb);
    Py_CLEAR(p->user_resets);
    Py_CLEAR(p->profiles);
    return 0;
}

static void Pool_dealloc(PyObject *self)
{
    agentdb_Pool *p = (agentdb_Pool *)self;
    agentdb_state *st = agentdb_pool_st(p);
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (p->weakreflist != NULL) {
        PyObject_ClearWeakRefs(self);
    }
    agentdb_iohandle_detach(p->cb_timer);
    agentdb_iohandle_detach(p->cb_opened);
    agentdb_iohandle_detach(p->cb_maint);
    agentdb_iohandle_detach(p->cb_grow);
    agentdb_iohandle_detach(p->cb_reset_done);
    agentdb_timer_cancel(st, &p->maint_timer);
    agentdb_timer_cancel(st, &p->grow_timer);
    Py_CLEAR(p->cb_grow);
    Py_CLEAR(p->cb_reset_done);
    Py_CLEAR(p->last_connect_error);
    Pool_clear(self);
    Py_CLEAR(p->cb_timer);
    Py_CLEAR(p->cb_opened);
    Py_CLEAR(p->cb_maint);
    Py_CLEAR(p->loop);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMemberDef Pool_members[] = {
    {"__weaklistoffset__", Py_T_PYSSIZET, offsetof(agentdb_Pool, weakreflist), Py_READONLY},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot Pool_slots[] = {
    {Py_tp_init, Pool_init},
    {Py_tp_new, Pool_new},
    {Py_tp_dealloc, Pool_dealloc},
    {Py_tp_traverse, Pool_traverse},
    {Py_tp_clear, Pool_clear},
    {Py_tp_methods, Pool_methods},
    {Py_tp_members, Pool_members},
    {Py_tp_doc, "A pool of connections. Create one with agentdb.create_pool()."},
    {0, NULL},
};

static PyType_Spec Pool_spec = {
    .name = "agentdb._core.Pool",
    .basicsize = sizeof(agentdb_Pool),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Pool_slots,
};

int agentdb_pool_setup(PyObject *module, agentdb_state *st)
{
    st->StmtProfileType =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &agentdb_StmtProfile_spec, NULL);
    if (st->StmtProfileType == NULL || PyModule_AddType(module, st->StmtProfileType) < 0) {
        return -1;
    }
    st->PoolType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &Pool_spec, NULL);
    if (st->PoolType == NULL || PyModule_AddType(module, st->PoolType) < 0) {
        return -1;
    }
    st->AcquireContextType =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &AcquireContext_spec, NULL);
    if (st->AcquireContextType == NULL) {
        return -1;
    }
    return PyModule_AddType(module, st->AcquireContextType);
}
