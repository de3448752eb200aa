/* pool.c: Pool, idle connections, size/overflow accounting and FIFO waiters, the
   shortcuts' scheduling and the reset of a session between users. */
#include "connection.h"
#include "errors.h"
#include "structmember.h"

#include <math.h>

/* How the session is reset when a connection comes back (create_pool(reset=)). */
enum {
    RESET_SESSION,     /* default: rollback, and the session reset when it was changed */
    RESET_TRANSACTION, /* rollback only: session state stays (SQLAlchemy's semantics) */
    RESET_CALLABLE,    /* rollback, then the user's coroutine function */
};

/* A released connection's user-supplied reset (RESET_CALLABLE). */
enum { USER_RESET_NONE, USER_RESET_RUNNING, USER_RESET_DONE };

/* Statement texts the pool keeps timings for; beyond, the oldest is forgotten. */
#define PROFILES_MAX 1024
/* A shortcut expected to wait longer than this on the best shared connection (seconds),
   and longer than GROW_QUEUE_FACTOR typical statements per statement queued there,
   gets a new connection instead when the pool may grow: the wait is then held up by a
   long statement, not by a busy pool (where more connections would not help). */
#define GROW_AFTER 0.010
#define GROW_QUEUE_FACTOR 8
/* The least a statement in a queue is counted for (seconds): below, differences are
   noise (how a statement's time splits between it and the one before), and queues of
   fast statements are then weighed by their length. */
#define EST_FLOOR 0.0001

/* A task waiting for a connection: for itself (acquire) or for one statement
   (a pool shortcut such as pool.fetchval). */
typedef struct agentdb_Waiter {
    struct agentdb_Waiter *next;
    unsigned long long id;
    PyObject *fut;   /* AgentFuture, owner = the pool */
    PyObject *timer; /* pool_timeout */
    double since;
    int shortcut;
    int solo; /* a shortcut that changes the session: a connection of its own */
    int mode, column;
    PyObject *sql, *args;
    PyObject *profile; /* the shortcut's agentdb_StmtProfile */
    double timeout; /* the statement's own timeout (shortcuts) */
} agentdb_Waiter;

typedef struct {
    PyObject_HEAD
    agentdb_state *st; /* cached: the type may be a Python subclass */
    PyObject *loop;
    PyObject *opener; /* () -> awaitable of a new Connection */
    Py_ssize_t pool_size, max_overflow;
    double pool_timeout, recycle, max_idle, ping_after, reset_timeout;
    int pre_ping;
    int reset_mode;        /* RESET_* */
    PyObject *reset_cb;    /* RESET_CALLABLE: (conn) -> awaitable of bool (True: reusable) */
    PyObject *user_resets; /* dict: reset task -> connection */
    PyObject *cb_reset_done;
    PyObject *profiles;    /* dict: SQL text -> agentdb_StmtProfile (shortcuts) */
    /* The typical shortcut's duration: a moving average of the logarithm of every
       measured duration (a geometric mean: rare slow statements barely move it). */
    double log_typical, typical;
    unsigned long long n_measured;
    /* The same for statements that went out with nothing ahead of them: a round trip,
       as the client sees it (its own delays in reading included). */
    double log_typical_rtt, typical_rtt;
    unsigned long long n_measured_rtt;
    /* When the loop last read one of the pool's sockets: a statement unanswered then
       was still running on the server (one loop iteration reads every socket ready). */
    double last_read;
    PyObject *idle;      /* list, used as a stack: the most recently used last */
    PyObject *shared;    /* list of connections running shortcut statements */
    PyObject *resetting; /* list of released connections being drained, rolled back or pinged */
    PyObject *all;       /* weakref.WeakSet of every connection, for terminate() */
    PyObject *tasks;     /* set of connect tasks in progress, cancelled by terminate() */
    agentdb_Waiter *whead, *wtail;
    Py_ssize_t nwaiters;
    Py_ssize_t opening, in_use, pinging;
    unsigned long long next_id;
    int closing;
    PyObject *drained; /* future: every connection closed after close() began */
    PyObject *cb_timer, *cb_opened, *cb_maint;
    PyObject *maint_timer;
    PyObject *cb_grow, *grow_timer;
    double connect_backoff, next_connect_at; /* after failed connects */
    PyObject *last_connect_error;            /* str, for PoolTimeout messages */
    /* statistics */
    unsigned long long n_acquired, n_timeouts, n_opened, n_closed, n_lost, n_recycled,
        n_expired, n_pings, n_failed_pings, n_connect_errors, n_rollbacks, n_leaked,
        n_cancelled_waits, n_shortcuts, n_abandoned, n_abandoned_on_server, n_resets,
        n_isolated, n_grown_for_wait;
    double wait_total, wait_max;
    unsigned long long wait_hist[8]; /* <1ms, <10ms, <100ms, <1s, <10s, <30s, <60s, more */
    PyObject *weakreflist;
} agentdb_Pool;

static inline agentdb_state *pool_state(agentdb_Pool *p)
{
    return p->st;
}

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

static Py_ssize_t pool_count(agentdb_Pool *p)
{
    return PyList_GET_SIZE(p->idle) + PyList_GET_SIZE(p->shared) +
           PyList_GET_SIZE(p->resetting) + p->opening + p->in_use;
}

static int list_remove(PyObject *list, PyObject *item)
{
    for (Py_ssize_t i = PyList_GET_SIZE(list) - 1; i >= 0; i--) {
        if (PyList_GET_ITEM(list, i) == item) {
            return PySequence_DelItem(list, i) < 0 ? -1 : 1;
        }
    }
    return 0;
}

static void record_wait(agentdb_Pool *p, double since)
{
    double w = agentdb_monotonic() - since;
    p->wait_total += w;
    if (w > p->wait_max) {
        p->wait_max = w;
    }
    static const double bounds[] = {0.001, 0.01, 0.1, 1, 10, 30, 60};
    int i = 0;
    while (i < 7 && w >= bounds[i]) {
        i++;
    }
    p->wait_hist[i]++;
}

static void waiter_free(agentdb_state *st, agentdb_Waiter *w)
{
    agentdb_timer_cancel(st, &w->timer);
    Py_XDECREF(w->fut);
    Py_XDECREF(w->sql);
    Py_XDECREF(w->args);
    Py_XDECREF(w->profile);
    PyMem_Free(w);
}

static agentdb_Waiter *waiter_pop(agentdb_Pool *p)
{
    agentdb_Waiter *w = p->whead;
    if (w != NULL) {
        p->whead = w->next;
        if (p->whead == NULL) {
            p->wtail = NULL;
        }
        p->nwaiters--;
    }
    return w;
}

static agentdb_Waiter *waiter_unlink(agentdb_Pool *p, int (*match)(agentdb_Waiter *, void *),
                                     void *arg)
{
    agentdb_Waiter *prev = NULL;
    for (agentdb_Waiter *w = p->whead; w != NULL; prev = w, w = w->next) {
        if (match(w, arg)) {
            if (prev) {
                prev->next = w->next;
            }
            else {
                p->whead = w->next;
            }
            if (p->wtail == w) {
                p->wtail = prev;
            }
            p->nwaiters--;
            return w;
        }
    }
    return NULL;
}

static int match_fut(agentdb_Waiter *w, void *arg)
{
    return w->fut == (PyObject *)arg;
}

static int match_id(agentdb_Waiter *w, void *arg)
{
    return w->id == *(unsigned long long *)arg;
}

/* The pool's link on connection `c` (pool.h). */
static inline agentdb_PoolLink *lk(agentdb_Connection *c)
{
    return agentdb_connection_link(c);
}

static void pool_serve(agentdb_Pool *p);
static void pool_make_available(agentdb_Pool *p, agentdb_Connection *c);
static double pool_estimate(agentdb_Pool *p, agentdb_StmtProfile *pr);
static void pool_reserve(agentdb_Pool *p);

/* Close a connection the pool holds (it reports back through
   agentdb_pool_conn_closed). */
static void pool_close_conn(agentdb_Connection *c)
{
    lk(c)->closing = 1; /* not "lost": the pool decided */
    agentdb_connection_close_now(c, NULL);
}

static void set_waiter_error(agentdb_state *st, agentdb_Waiter *w, PyObject *exc)
{
    if (agentdb_future_set_exception(st, w->fut, exc) < 0) {
        PyErr_WriteUnraisable(w->fut);
    }
}

static void pool_check_drained(agentdb_Pool *p)
{
    agentdb_state *st = pool_state(p);
    if (p->closing && p->drained != NULL && pool_count(p) == 0) {
        if (agentdb_future_set_result(st, p->drained, Py_None) < 0) {
            PyErr_WriteUnraisable(p->drained);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Opening connections */

static void pool_open(agentdb_Pool *p)
{
    agentdb_state *st = pool_state(p);
    PyObject *coro = NULL, *task = NULL, *r = NULL;
    coro = PyObject_CallNoArgs(p->opener);
    if (coro == NULL) {
        goto error;
    }
    task = PyObject_CallMethodOneArg(p->loop, st->str_create_task, coro);
    if (task == NULL) {
        goto error;
    }
    r = PyObject_CallMethodOneArg(task, st->str_add_done_callback, p->cb_opened);
    if (r == NULL || PySet_Add(p->tasks, task) < 0) {
        goto error;
    }
    p->opening++;
    Py_DECREF(r);
    Py_DECREF(task);
    Py_DECREF(coro);
    return;
error:
    Py_XDECREF(task);
    if (coro != NULL && task == NULL) {
        PyObject *cr = PyObject_CallMethod(coro, "close", NULL);
        Py_XDECREF(cr);
    }
    Py_XDECREF(coro);
    PyErr_WriteUnraisable((PyObject *)p);
}

/* Open connections for waiters no idle connection or pending connect/ping
   will serve, within pool_size + max_overflow. */
static void pool_grow(agentdb_Pool *p);

static void pool_on_grow_timer(PyObject *self, PyObject *arg)
{
    (void)arg;
    agentdb_Pool *p = (agentdb_Pool *)self;
    Py_CLEAR(p->grow_timer);
    pool_grow(p);
}

static void pool_grow(agentdb_Pool *p)
{
    if (!p->closing && p->nwaiters > p->opening + p->pinging &&
        pool_count(p) < p->pool_size + p->max_overflow) {
        double wait = p->next_connect_at - agentdb_monotonic();
        int nothing_coming = p->opening == 0 && p->in_use + PyList_GET_SIZE(p->shared) +
                                                        PyList_GET_SIZE(p->resetting) ==
                                                    0;
        if (wait > 0 && nothing_coming) {
            /* Backing off, but nothing else can serve these waiters: one attempt
               now, so a caller gets the connect error at once.  Each failure
               fails one waiter, so this ends with the waiters. */
            pool_open(p);
            return;
        }
        if (wait > 0) {
            /* Backing off after a failed connect: try again when it ends. */
            if (p->grow_timer == NULL) {
                p->grow_timer = agentdb_call_later(p->st, p->loop, wait, p->cb_grow, Py_None);
                if (p->grow_timer == NULL) {
                    PyErr_WriteUnraisable((PyObject *)p);
                }
            }
            return;
        }
    }
    while (!p->closing && p->nwaiters > p->opening + p->pinging &&
           pool_count(p) < p->pool_size + p->max_overflow) {
        Py_ssize_t before = p->opening;
        pool_open(p);
        if (p->opening == before) {
            break;
        }
    }
}

/* Take ownership of a freshly opened connection. */
static int pool_adopt(agentdb_Pool *p, agentdb_Connection *c)
{
    Py_INCREF(p);
    Py_XSETREF(lk(c)->pool, (PyObject *)p);
    lk(c)->state = POOLST_OPENING;
    PyObject *r = PyObject_CallMethod(p->all, "add", "O", (PyObject *)c);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    p->n_opened++;
    return 0;
}

/* Done callback of a connect task started by pool_open. */
static void pool_on_opened(PyObject *self, PyObject *task)
{
    agentdb_Pool *p = (agentdb_Pool *)self;
    agentdb_state *st = pool_state(p);
    p->opening--;
    if (p->tasks != NULL && PySet_Discard(p->tasks, task) < 0) {
        PyErr_Clear();
    }
    PyObject *conn = NULL, *exc = NULL;
    PyObject *cancelled = PyObject_CallMethodNoArgs(task, st->str_cancelled);
    if (cancelled == NULL) {
        PyErr_Clear();
    }
    else if (PyObject_IsTrue(cancelled)) {
        Py_DECREF(cancelled);
        pool_check_drained(p);
        pool_serve(p);
        return;
    }
    Py_XDECREF(cancelled);
    exc = PyObject_CallMethodNoArgs(task, st->str_exception);
    if (exc == NULL) {
        exc = PyErr_GetRaisedException();
    }
    if (exc != NULL && exc != Py_None) {
        p->n_connect_errors++;
        /* Back off: the next connect waits (0.05 s, doubling to 2 s) so a
           refusing or full server is not hammered while waiters remain. */
        p->connect_backoff = p->connect_backoff <= 0 ? 0.05 : p->connect_backoff * 2;
        if (p->connect_backoff > 2.0) {
            p->connect_backoff = 2.0;
        }
        p->next_connect_at = agentdb_monotonic() + p->connect_backoff;
        PyObject *text = PyObject_Str(exc);
        if (text != NULL) {
            Py_XSETREF(p->last_connect_error, text);
        }
        else {
            PyErr_Clear();
        }
        /* Each failed connect fails one waiter (the one it was opened for),
           unless a connection in use may still come back to it (then it waits
           for that, within pool_timeout). */
        if (p->in_use + PyList_GET_SIZE(p->shared) + PyList_GET_SIZE(p->resetting) == 0) {
            agentdb_Waiter *w;
            while ((w = waiter_pop(p)) != NULL) {
                int done = agentdb_future_done(st, w->fut);
                if (done == 0) {
                    set_waiter_error(st, w, exc);
                    waiter_free(st, w);
                    break;
                }
                PyErr_Clear();
                waiter_free(st, w);
            }
        }
        Py_DECREF(exc);
        pool_check_drained(p);
        pool_grow(p);
        return;
    }
    Py_XDECREF(exc);
    conn = PyObject_CallMethodNoArgs(task, st->str_result);
    if (conn == NULL || !agentdb_connection_check(st, conn)) {
        PyErr_Clear();
        Py_XDECREF(conn);
        pool_check_drained(p);
        return;
    }
    agentdb_Connection *c = (agentdb_Connection *)conn;
    p->connect_backoff = 0;
    p->next_connect_at = 0;
    if (pool_adopt(p, c) < 0) {
        PyErr_WriteUnraisable(self);
    }
    if (p->closing) {
        pool_close_conn(c);
    }
    else {
        pool_make_available(p, c);
    }
    Py_DECREF(conn);
}

/* ------------------------------------------------------------------------ */
/* Handing out */

/* 1 when the connection is too old (recycle) or idle too long (max_idle). */
static int pool_expired(agentdb_Pool *p, agentdb_Connection *c, double now)
{
    if (p->recycle > 0 && now - lk(c)->created_at > p->recycle) {
        p->n_recycled++;
        return 1;
    }
    if (p->max_idle > 0 && lk(c)->state == POOLST_IDLE && now - lk(c)->last_used > p->max_idle) {
        p->n_expired++;
        return 1;
    }
    return 0;
}

static void ping_done(agentdb_Connection *c, agentdb_Op *op, PyObject *result);

/* Pop a usable idle connection (new reference) or NULL. Dead and expired
   ones are closed; ones idle longer than ping_after get a ping first (they
   come back through pool_make_available) and are skipped here. */
static agentdb_Connection *pool_pop_idle(agentdb_Pool *p)
{
    double now = agentdb_monotonic();
    while (PyList_GET_SIZE(p->idle) > 0) {
        Py_ssize_t last = PyList_GET_SIZE(p->idle) - 1;
        agentdb_Connection *c = (agentdb_Connection *)Py_NewRef(PyList_GET_ITEM(p->idle, last));
        if (PyList_SetSlice(p->idle, last, last + 1, NULL) < 0) {
            Py_DECREF(c);
            PyErr_WriteUnraisable((PyObject *)p);
            return NULL;
        }
        if (!agentdb_connection_alive(c) || pool_expired(p, c, now)) {
            lk(c)->state = POOLST_RESETTING; /* counted nowhere while it closes */
            if (PyList_Append(p->resetting, (PyObject *)c) < 0) {
                PyErr_Clear();
            }
            pool_close_conn(c);
            Py_DECREF(c);
            continue;
        }
        if (p->pre_ping && now - lk(c)->last_used > p->ping_after) {
            lk(c)->state = POOLST_RESETTING;
            if (PyList_Append(p->resetting, (PyObject *)c) < 0) {
                PyErr_Clear();
            }
            p->pinging++;
            p->n_pings++;
            if (agentdb_connection_internal(c, "", p->reset_timeout, ping_done, 0) < 0) {
                PyErr_Clear();
                p->pinging--;
                pool_close_conn(c);
            }
            Py_DECREF(c);
            continue;
        }
        return c;
    }
    return NULL;
}

static void ping_done(agentdb_Connection *c, agentdb_Op *op, PyObject *result)
{
    (void)op;
    agentdb_Pool *p = (agentdb_Pool *)lk(c)->pool;
    if (p == NULL) {
        return;
    }
    p->pinging--;
    if (result == NULL || !agentdb_connection_alive(c)) {
        p->n_failed_pings++;
        pool_close_conn(c);
        return;
    }
    /* Liveness proven: it goes to a waiter or back to idle. */
    Py_INCREF(c);
    if (list_remove(p->resetting, (PyObject *)c) < 0) {
        PyErr_Clear();
    }
    lk(c)->state = POOLST_OPENING;
    pool_make_available(p, c);
    Py_DECREF(c);
}

/* A connection (in no list) starts serving shortcuts, `solo` when one that changes the
   session runs on it alone.  A session its last borrower left changed (the
   "transaction" reset rule keeps such state) is reset first, ahead of the shortcuts:
   they always start from a clean session.  0 => ok, -1 => error set. */
static int pool_share(agentdb_Pool *p, agentdb_Connection *c, int solo)
{
    if (PyList_Append(p->shared, (PyObject *)c) < 0) {
        return -1;
    }
    lk(c)->state = POOLST_SHARED;
    lk(c)->solo = solo;
    if (agentdb_connection_session_dirty(c)) {
        if (agentdb_connection_queue_reset(c, 0, 1, p->reset_timeout) < 0) {
            PyErr_Clear(); /* not open any more: its close hook takes it out of the list */
        }
        p->n_resets++;
    }
    return 0;
}

/* Give a connection (not in any list) to a waiter. 0 => handed over,
   -1 => the waiter could not take it (the caller keeps the connection). */
static int pool_hand_to_waiter(agentdb_Pool *p, agentdb_Connection *c, agentdb_Waiter *w)
{
    agentdb_state *st = pool_state(p);
    record_wait(p, w->since);
    if (w->shortcut) {
        if (pool_share(p, c, w->solo) < 0) {
            return -1;
        }
        int kind = w->args != NULL && PyTuple_GET_SIZE(w->args) == 0 &&
                           w->mode == AGENTDB_MODE_STATUS
                       ? OPK_SIMPLE
                       : OPK_QUERY;
        if (agentdb_connection_submit(c, w->fut, kind, w->mode, w->sql, w->args, w->column,
                                      w->timeout, w->profile,
                                      pool_estimate(p, (agentdb_StmtProfile *)w->profile)) <
            0) {
            PyObject *exc = PyErr_GetRaisedException();
            set_waiter_error(st, w, exc);
            Py_XDECREF(exc);
            if (agentdb_connection_pending(c) == 0) {
                agentdb_pool_conn_drained((PyObject *)p, c);
            }
        }
        return 0;
    }
    p->in_use++;
    p->n_acquired++;
    lk(c)->state = POOLST_IN_USE;
    lk(c)->last_used = agentdb_monotonic();
    if (agentdb_future_set_result(st, w->fut, (PyObject *)c) < 0) {
        PyErr_WriteUnraisable(w->fut);
    }
    return 0;
}

/* A clean, alive connection that no list holds: to the first live waiter,
   else back to idle (or closed when pool_size are idle already: overflow). */
static void pool_make_available(agentdb_Pool *p, agentdb_Connection *c)
{
    agentdb_state *st = pool_state(p);
    lk(c)->solo = lk(c)->reserved = 0;
    if (p->closing || !agentdb_connection_alive(c) || pool_expired(p, c, agentdb_monotonic())) {
        lk(c)->state = POOLST_RESETTING;
        if (PyList_Append(p->resetting, (PyObject *)c) < 0) {
            PyErr_Clear();
        }
        pool_close_conn(c);
        return;
    }
    agentdb_Waiter *w;
    while ((w = waiter_pop(p)) != NULL) {
        int done = agentdb_future_done(st, w->fut);
        if (done != 0) {
            PyErr_Clear();
            waiter_free(st, w);
            continue;
        }
        agentdb_timer_cancel(st, &w->timer);
        int rc = pool_hand_to_waiter(p, c, w);
        waiter_free(st, w);
        if (rc == 0) {
            return;
        }
        PyErr_WriteUnraisable((PyObject *)p);
    }
    if (PyList_GET_SIZE(p->idle) >= p->pool_size) {
        lk(c)->state = POOLST_RESETTING;
        if (PyList_Append(p->resetting, (PyObject *)c) < 0) {
            PyErr_Clear();
        }
        pool_close_conn(c);
        return;
    }
    lk(c)->state = POOLST_IDLE;
    lk(c)->last_used = agentdb_monotonic();
    if (PyList_Append(p->idle, (PyObject *)c) < 0) {
        PyErr_WriteUnraisable((PyObject *)p);
    }
}

/* Serve waiters with idle connections; open more when needed. */
static void pool_serve(agentdb_Pool *p)
{
    while (p->nwaiters > 0 && PyList_GET_SIZE(p->idle) > 0) {
        agentdb_Connection *c = pool_pop_idle(p);
        if (c == NULL) {
            break;
        }
        lk(c)->state = POOLST_OPENING;
        pool_make_available(p, c);
        Py_DECREF(c);
    }
    pool_grow(p);
}

/* ------------------------------------------------------------------------ */
/* Hooks called by connection.c */

static void pool_run_user_reset(agentdb_Pool *p, agentdb_Connection *c);

/* A connection back from its user (`from_acquire`: acquire() and release()) or from
   shortcuts, with nothing of theirs left in flight and in no list: queue what resets
   its session, then hand it out again at once.  The reset travels ahead of the next
   user's statements on the same pipeline: it costs them no round trip of their own,
   and a session that ran only ordinary statements, outside a transaction, needs none.
   A released connection follows the pool's reset rule; shortcuts, whatever the rule,
   leave nothing behind (a session-changing one ran alone). */
static void pool_recycle(agentdb_Pool *p, agentdb_Connection *c, int from_acquire)
{
    if (!agentdb_connection_alive(c)) {
        lk(c)->state = POOLST_RESETTING; /* counted nowhere while it closes */
        if (PyList_Append(p->resetting, (PyObject *)c) < 0) {
            PyErr_Clear();
        }
        pool_close_conn(c);
        return;
    }
    /* Nothing in flight: libpq's status is exact. */
    int rollback = !agentdb_connection_txn_idle(c);
    int dirty = agentdb_connection_session_dirty(c);
    int session = dirty && (!from_acquire || p->reset_mode == RESET_SESSION);
    if ((rollback || session) &&
        agentdb_connection_queue_reset(c, rollback, session, p->reset_timeout) < 0) {
        PyErr_Clear();
        lk(c)->state = POOLST_RESETTING;
        if (PyList_Append(p->resetting, (PyObject *)c) < 0) {
            PyErr_Clear();
        }
        pool_close_conn(c);
        return;
    }
    p->n_rollbacks += rollback;
    p->n_resets += session;
    if (from_acquire && p->reset_mode == RESET_CALLABLE) {
        pool_run_user_reset(p, c);
        return;
    }
    lk(c)->state = POOLST_OPENING;
    pool_make_available(p, c);
}

/* A connection the pool tracks has no statement left. */
void agentdb_pool_conn_drained(PyObject *pool, agentdb_Connection *c)
{
    agentdb_Pool *p = (agentdb_Pool *)pool;
    int from_acquire;
    if (lk(c)->state == POOLST_SHARED) {
        from_acquire = 0;
        if (list_remove(p->shared, (PyObject *)c) < 0) {
            PyErr_Clear();
        }
    }
    else if (lk(c)->state == POOLST_RESETTING) {
        if (lk(c)->user_reset == USER_RESET_RUNNING) {
            return; /* the user's reset coroutine decides */
        }
        from_acquire = lk(c)->user_reset != USER_RESET_DONE;
        lk(c)->user_reset = USER_RESET_NONE;
        if (list_remove(p->resetting, (PyObject *)c) < 0) {
            PyErr_Clear();
        }
        if (!from_acquire) {
            lk(c)->state = POOLST_OPENING; /* reset by its user's coroutine: done */
            Py_INCREF(c);
            pool_make_available(p, c);
            Py_DECREF(c);
            return;
        }
    }
    else {
        return; /* idle with its reset just done, or in use */
    }
    Py_INCREF(c);
    pool_recycle(p, c, from_acquire);
    Py_DECREF(c);
}

/* RESET_CALLABLE: run the user's reset for `c` in a task of the pool's; the
   connection waits in `resetting` for its outcome (pool_on_user_reset_done). */
static void pool_run_user_reset(agentdb_Pool *p, agentdb_Connection *c)
{
    agentdb_state *st = pool_state(p);
    PyObject *coro = NULL, *task = NULL, *r = NULL;
    lk(c)->state = POOLST_RESETTING;
    lk(c)->user_reset = USER_RESET_RUNNING;
    if (PyList_Append(p->resetting, (PyObject *)c) < 0) {
        goto error;
    }
    coro = PyObject_CallOneArg(p->reset_cb, (PyObject *)c);
    if (coro == NULL) {
        goto error;
    }
    task = PyObject_CallMethodOneArg(p->loop, st->str_create_task, coro);
    if (task == NULL) {
        goto error;
    }
    r = PyObject_CallMethodOneArg(task, st->str_add_done_callback, p->cb_reset_done);
    if (r == NULL || PyDict_SetItem(p->user_resets, task, (PyObject *)c) < 0) {
        goto error;
    }
    Py_DECREF(r);
    Py_DECREF(task);
    Py_DECREF(coro);
    return;
error:
    PyErr_WriteUnraisable((PyObject *)p);
    if (coro != NULL && task == NULL) {
        PyObject *cr = PyObject_CallMethod(coro, "close", NULL);
        Py_XDECREF(cr);
        PyErr_Clear();
    }
    Py_XDECREF(r);
    Py_XDECREF(task);
    Py_XDECREF(coro);
    lk(c)->user_reset = USER_RESET_NONE;
    pool_close_conn(c);
}

/* Done callback of a user reset task: True means the session may be used again. */
static void pool_on_user_reset_done(PyObject *self, PyObject *task)
{
    agentdb_Pool *p = (agentdb_Pool *)self;
    agentdb_state *st = pool_state(p);
    PyObject *conn = PyDict_GetItemWithError(p->user_resets, task); /* borrowed */
    if (conn == NULL) {
        PyErr_Clear();
        return;
    }
    Py_INCREF(conn);
    if (PyDict_DelItem(p->user_resets, task) < 0) {
        PyErr_Clear();
    }
    agentdb_Connection *c = (agentdb_Connection *)conn;
    int ok = 0;
    PyObject *cancelled = PyObject_CallMethodNoArgs(task, st->str_cancelled);
    if (cancelled != NULL && !PyObject_IsTrue(cancelled)) {
        PyObject *exc = PyObject_CallMethodNoArgs(task, st->str_exception);
        if (exc == Py_None) {
            PyObject *res = PyObject_CallMethodNoArgs(task, st->str_result);
            ok = res != NULL && PyObject_IsTrue(res) == 1;
            Py_XDECREF(res);
        }
        Py_XDECREF(exc);
    }
    Py_XDECREF(cancelled);
    PyErr_Clear();
    if (lk(c)->state == POOLST_RESETTING && lk(c)->user_reset == USER_RESET_RUNNING) {
        lk(c)->user_reset = USER_RESET_DONE;
        if (!ok || !agentdb_connection_alive(c)) {
            lk(c)->user_reset = USER_RESET_NONE;
            pool_close_conn(c);
        }
        else if (agentdb_connection_pending(c) == 0) {
            agentdb_pool_conn_drained((PyObject *)p, c);
        }
        /* else: what it queued and did not wait for runs first (the drain hook) */
    }
    Py_DECREF(conn);
}

void agentdb_pool_conn_closed(PyObject *pool, agentdb_Connection *c)
{
    agentdb_Pool *p = (agentdb_Pool *)pool;
    PyObject *saved = PyErr_GetRaisedException();
    Py_INCREF(c);
    lk(c)->user_reset = USER_RESET_NONE;
    switch (lk(c)->state) {
    case POOLST_IDLE:
        if (!lk(c)->closing) {
            p->n_lost++;
        }
        if (list_remove(p->idle, (PyObject *)c) < 0) {
            PyErr_Clear();
        }
        break;
    case POOLST_SHARED:
        if (list_remove(p->shared, (PyObject *)c) < 0) {
            PyErr_Clear();
        }
        break;
    case POOLST_RESETTING:
        if (list_remove(p->resetting, (PyObject *)c) < 0) {
            PyErr_Clear();
        }
        break;
    case POOLST_IN_USE:
        p->in_use--;
        break;
    default:
        break;
    }
    if (lk(c)->state != POOLST_NONE) {
        p->n_closed++;
    }
    lk(c)->state = POOLST_NONE;
    Py_DECREF(c);
    pool_check_drained(p);
    if (!p->closing) {
        pool_serve(p);
    }
    PyErr_SetRaisedException(saved);
}

void agentdb_pool_note_read(PyObject *pool, double now)
{
    ((agentdb_Pool *)pool)->last_read = now;
}

/* One more measurement into a geometric moving average: the plain mean of the
   first ones, then a moving average (the prior gives way fast). */
static void typical_add(double *log_avg, double *avg, unsigned long long *n, double seconds)
{
    double weight = *n < 16 ? 1.0 / (double)(*n + 2) : 0.05;
    (*n)++;
    *log_avg += (log(seconds > 1e-6 ? seconds : 1e-6) - *log_avg) * weight;
    *avg = exp(*log_avg);
}

void agentdb_pool_measured(PyObject *pool, PyObject *profile, double seconds, int round_trip)
{
    agentdb_Pool *p = (agentdb_Pool *)pool;
    agentdb_StmtProfile *pr = (agentdb_StmtProfile *)profile;
    /* What a statement costs a queue is its time on the server: a statement that went
       out alone waited a round trip besides (the same for every connection), one
       pipelined behind others did not.  Without this, one text's samples would swing
       between the two and so would every queue's estimate. */
    if (round_trip) {
        typical_add(&p->log_typical_rtt, &p->typical_rtt, &p->n_measured_rtt, seconds);
        seconds -= p->typical_rtt;
        if (seconds < 1e-6) {
            seconds = 1e-6;
        }
    }
    typical_add(&p->log_typical, &p->typical, &p->n_measured, seconds);
    pr->mean = pr->runs == 0 ? seconds : pr->mean + (seconds - pr->mean) * 0.25;
    pr->runs++;
}

void agentdb_pool_count_abandoned(PyObject *pool, int on_server)
{
    agentdb_Pool *p = (agentdb_Pool *)pool;
    p->n_abandoned++;
    p->n_abandoned_on_server += on_server != 0;
}

void agentdb_pool_conn_lost_by_gc(PyObject *pool, agentdb_Connection *c)
{
    agentdb_Pool *p = (agentdb_Pool *)pool;
    if (lk(c)->state == POOLST_IN_USE) {
        p->n_leaked++;
    }
}

/* ------------------------------------------------------------------------ */
/* Timers */

static void pool_on_timer(PyObject *self, PyObject *arg)
{
    agentdb_Pool *p = (agentdb_Pool *)self;
    agentdb_state *st = pool_state(p);
    unsigned long long id = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return;
    }
    agentdb_Waiter *w = waiter_unlink(p, match_id, &id);
    if (w == NULL) {
        return;
    }
    Py_CLEAR(w->timer);
    p->n_timeouts++;
    PyObject *msg =
        p->last_connect_error != NULL && p->connect_backoff > 0
            ? PyUnicode_FromFormat("no connection became available within pool_timeout; "
                                   "the last connect failed: %U",
                                   p->last_connect_error)
            : PyUnicode_FromString(
                  "no connection became available within pool_timeout (the pool is "
                  "exhausted: raise pool_size/max_overflow, or release connections sooner)");
    PyObject *exc = msg ? PyObject_CallOneArg(st->PoolTimeout, msg) : NULL;
    Py_XDECREF(msg);
    if (exc == NULL) {
        PyErr_WriteUnraisable(self);
    }
    else {
        set_waiter_error(st, w, exc);
        Py_DECREF(exc);
    }
    waiter_free(st, w);
}

/* Periodic: close idle connections past max_idle or recycle, so a
   never-used connection expires too. */
static void pool_on_maintenance(PyObject *self, PyObject *arg)
{
    (void)arg;
    agentdb_Pool *p = (agentdb_Pool *)self;
    agentdb_state *st = pool_state(p);
    Py_CLEAR(p->maint_timer);
    if (p->closing) {
        return;
    }
    double now = agentdb_monotonic();
    for (Py_ssize_t i = PyList_GET_SIZE(p->idle) - 1; i >= 0; i--) {
        if (i >= PyList_GET_SIZE(p->idle)) {
            continue;
        }
        agentdb_Connection *c = (agentdb_Connection *)PyList_GET_ITEM(p->idle, i);
        if (pool_expired(p, c, now) || !agentdb_connection_alive(c)) {
            pool_close_conn(c);
        }
    }
    double interval = 1.0;
    if (p->max_idle > 0 && p->max_idle / 4 < interval) {
        interval = p->max_idle / 4;
    }
    if (p->recycle > 0 && p->recycle / 4 < interval) {
        interval = p->recycle / 4;
    }
    if (interval < 0.05) {
        interval = 0.05;
    }
    p->maint_timer = agentdb_call_later(st, p->loop, interval, p->cb_maint, Py_None);
    if (p->maint_timer == NULL) {
        PyErr_WriteUnraisable(self);
    }
}

/* ------------------------------------------------------------------------ */
/* acquire / release */

static int pool_check_open(agentdb_Pool *p, agentdb_state *st)
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

static agentdb_Waiter *pool_add_waiter(agentdb_Pool *p, PyObject *fut, double timeout)
{
    agentdb_state *st = pool_state(p);
    agentdb_Waiter *w = PyMem_Calloc(1, sizeof(*w));
    if (w == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    w->id = ++p->next_id;
    w->fut = Py_NewRef(fut);
    w->since = agentdb_monotonic();
    if (timeout > 0) {
        PyObject *id = PyLong_FromUnsignedLongLong(w->id);
        if (id == NULL) {
            waiter_free(st, w);
            return NULL;
        }
        w->timer = agentdb_call_later(st, p->loop, timeout, p->cb_timer, id);
        Py_DECREF(id);
        if (w->timer == NULL) {
            waiter_free(st, w);
            return NULL;
        }
    }
    if (p->wtail) {
        p->wtail->next = w;
    }
    else {
        p->whead = w;
    }
    p->wtail = w;
    p->nwaiters++;
    return w;
}

/* A future resolving to a checked-out connection. */
static PyObject *pool_acquire_future(agentdb_Pool *p, double timeout)
{
    agentdb_state *st = pool_state(p);
    if (pool_check_open(p, st) < 0) {
        return NULL;
    }
    PyObject *fut = agentdb_future_new(st, p->loop, (PyObject *)p);
    if (fut == NULL) {
        return NULL;
    }
    if (p->nwaiters == 0) {
        agentdb_Connection *c = pool_pop_idle(p);
        if (c != NULL) {
            /* The fast path: a done future, so awaiting it never suspends
               and no cancellation can fall between hand-out and use. */
            p->in_use++;
            p->n_acquired++;
            p->wait_hist[0]++;
            lk(c)->state = POOLST_IN_USE;
            lk(c)->last_used = agentdb_monotonic();
            int rc = agentdb_future_set_result(st, fut, (PyObject *)c);
            Py_DECREF(c);
            if (rc < 0) {
                Py_DECREF(fut);
                return NULL;
            }
            return fut;
        }
    }
    if (pool_add_waiter(p, fut, timeout > 0 ? timeout : p->pool_timeout) == NULL) {
        Py_DECREF(fut);
        return NULL;
    }
    pool_grow(p);
    pool_reserve(p);
    return fut;
}

static int parse_timeout(PyObject *obj, double *out)
{
    *out = 0;
    if (obj == NULL || obj == Py_None) {
        return 0;
    }
    *out = PyFloat_AsDouble(obj);
    if (*out == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (*out <= 0) {
        PyErr_SetString(PyExc_ValueError, "timeout must be a positive number");
        return -1;
    }
    return 0;
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
    agentdb_state *st = pool_state(p);
    if (!agentdb_connection_check(st, obj)) {
        PyErr_Format(PyExc_TypeError, "release() expects a Connection, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    agentdb_Connection *c = (agentdb_Connection *)obj;
    if (lk(c)->pool != (PyObject *)p) {
        PyErr_SetString(st->InterfaceError, "this connection does not belong to this pool");
        return -1;
    }
    if (lk(c)->state != POOLST_IN_USE) {
        if (lk(c)->state == POOLST_NONE) {
            return 0; /* closed while checked out: its slot is already free */
        }
        PyErr_SetString(st->InterfaceError, "this connection was already released");
        return -1;
    }
    p->in_use--;
    lk(c)->state = POOLST_RESETTING;
    if (PyList_Append(p->resetting, obj) < 0) {
        return -1;
    }
    /* The next user must not get this user's transactions, LISTENs or handlers.  (With
       the session reset, LISTEN made the session dirty and the reset unlistens.) */
    agentdb_connection_forget_user(c, p->reset_mode != RESET_SESSION);
    if (!agentdb_connection_alive(c)) {
        pool_close_conn(c);
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
    agentdb_state *st = pool_state(p);
    (void)kwnames;
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "release(connection)");
        return NULL;
    }
    if (pool_release_conn(p, args[0]) < 0) {
        return NULL;
    }
    return done_future(st, p->loop, Py_None);
}

/* The waiter's future was cancelled (its task was). */
static PyObject *Pool__future_cancelled(PyObject *self, PyObject *fut)
{
    agentdb_Pool *p = (agentdb_Pool *)self;
    agentdb_state *st = pool_state(p);
    agentdb_Waiter *w = waiter_unlink(p, match_fut, fut);
    if (w != NULL) {
        p->n_cancelled_waits++;
        waiter_free(st, w);
    }
    Py_RETURN_NONE;
}

/* A connection was handed to a task that was cancelled before it could see
   it: take it back. */
static PyObject *Pool__future_abandoned(PyObject *self, PyObject *fut)
{
    agentdb_Pool *p = (agentdb_Pool *)self;
    agentdb_state *st = pool_state(p);
    PyObject *conn = PyObject_CallMethodNoArgs(fut, st->str_result);
    if (conn == NULL) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    if (agentdb_connection_check(st, conn) &&
        lk((agentdb_Connection *)conn)->state == POOLST_IN_USE) {
        p->n_cancelled_waits++;
        if (pool_release_conn(p, conn) < 0) {
            PyErr_Clear();
        }
    }
    Py_DECREF(conn);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------ */
/* Shortcuts: one statement on a pooled connection, no exclusive checkout.

   A shortcut pipelines onto a connection other shortcuts are using, so it must not
   see anything another caller did there, nor wait behind another caller's slow
   statement:
   - a statement that changes the session (SET, BEGIN, LISTEN, CREATE TEMP, session
     advisory locks, ...: sqlclass.c) runs alone on a connection of its own, whose
     session is reset before anyone shares it again (pool_recycle);
   - the others queue on the shared connection whose queue is expected to clear
     first, by the durations measured for each SQL text (an unmeasured one counts as
     long), and not at all when even that wait is long and the pool may grow. */

static PyObject *StmtProfile_repr(PyObject *self)
{
    agentdb_StmtProfile *pr = (agentdb_StmtProfile *)self;
    PyObject *mean = PyFloat_FromDouble(pr->mean * 1000.0);
    if (mean == NULL) {
        return NULL;
    }
    PyObject *r = PyUnicode_FromFormat("<StatementProfile flags=%u runs=%lu mean_ms=%R>",
                                       pr->flags, pr->runs, mean);
    Py_DECREF(mean);
    return r;
}

static void StmtProfile_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_Free(self);
    Py_DECREF(tp);
}

static PyMemberDef StmtProfile_members[] = {
    {"flags", T_UINT, offsetof(agentdb_StmtProfile, flags), READONLY,
     "What the statement does to its session (the core's SQL_* flags)."},
    {"runs", T_ULONG, offsetof(agentdb_StmtProfile, runs), READONLY, "Runs timed."},
    {"mean", T_DOUBLE, offsetof(agentdb_StmtProfile, mean), READONLY,
     "Moving average of its duration on the server, seconds."},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot StmtProfile_slots[] = {
    {Py_tp_dealloc, StmtProfile_dealloc},
    {Py_tp_repr, StmtProfile_repr},
    {Py_tp_members, StmtProfile_members},
    {Py_tp_doc, "What a pool knows of one SQL text run through its shortcuts."},
    {0, NULL},
};

static PyType_Spec StmtProfile_spec = {
    .name = "agentdb._core.StatementProfile",
    .basicsize = sizeof(agentdb_StmtProfile),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = StmtProfile_slots,
};

/* The profile of `sql` (borrowed; made on first use, the oldest forgotten beyond
   PROFILES_MAX), or NULL with an error set. */
static agentdb_StmtProfile *pool_profile(agentdb_Pool *p, PyObject *sql)
{
    PyObject *found = PyDict_GetItemWithError(p->profiles, sql);
    if (found != NULL || PyErr_Occurred()) {
        return (agentdb_StmtProfile *)found;
    }
    Py_ssize_t n;
    const char *text = PyUnicode_AsUTF8AndSize(sql, &n);
    if (text == NULL) {
        return NULL;
    }
    if (PyDict_GET_SIZE(p->profiles) >= PROFILES_MAX) {
        Py_ssize_t pos = 0;
        PyObject *oldest, *value;
        if (PyDict_Next(p->profiles, &pos, &oldest, &value)) {
            Py_INCREF(oldest);
            int rc = PyDict_DelItem(p->profiles, oldest);
            Py_DECREF(oldest);
            if (rc < 0) {
                return NULL;
            }
        }
    }
    agentdb_StmtProfile *pr = PyObject_New(agentdb_StmtProfile, pool_state(p)->StmtProfileType);
    if (pr == NULL) {
        return NULL;
    }
    pr->flags = agentdb_sql_classify(text, n);
    pr->runs = 0;
    pr->mean = 0;
    int rc = PyDict_SetItem(p->profiles, sql, (PyObject *)pr);
    Py_DECREF(pr); /* the dict holds it */
    return rc < 0 ? NULL : pr;
}

/* The expected duration of a shortcut's statement: what its text took so far, or
   AGENTDB_EST_UNKNOWN, weighed when a queue is weighed by pool_unknown_est. */
static double pool_estimate(agentdb_Pool *p, agentdb_StmtProfile *pr)
{
    (void)p;
    if (pr->runs == 0) {
        return AGENTDB_EST_UNKNOWN;
    }
    return pr->mean > EST_FLOOR ? pr->mean : EST_FLOOR;
}

/* The typical statement's time on the server, at least EST_FLOOR. */
static double pool_typical(agentdb_Pool *p)
{
    return p->typical > EST_FLOOR ? p->typical : EST_FLOOR;
}

/* What a statement of a text not timed yet is expected to take: a few typical
   statements' worth (most statements are like the others; one that overruns this is
   then avoided by its age, agentdb_connection_expected_wait). */
static double pool_unknown_est(agentdb_Pool *p)
{
    return 4 * pool_typical(p);
}

/* May a shortcut queue on this shared connection? */
static int pool_shareable(agentdb_Connection *c)
{
    /* Not open, or its statements all abandoned and being cancelled: it takes nothing
       new until they are gone (a cancel must only ever hit an abandoned statement). */
    return !lk(c)->solo && !lk(c)->reserved && agentdb_connection_accepts(c);
}

/* The shared connection whose queue is expected to clear first (borrowed), its
   expected wait in *wait; NULL when no shared connection may take a shortcut. */
static agentdb_Connection *pool_pick_shared(agentdb_Pool *p, double *wait)
{
    double now = agentdb_monotonic(), seen = p->last_read, unknown_est = pool_unknown_est(p);
    /* A running statement counts as held up past twice its usual time plus this: a
       few of the pool's round trips (which include the client's own delays). */
    double slack = 4 * p->typical_rtt + 0.001;
    agentdb_Connection *best = NULL;
    *wait = INFINITY;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(p->shared); i++) {
        agentdb_Connection *s = (agentdb_Connection *)PyList_GET_ITEM(p->shared, i);
        if (!pool_shareable(s)) {
            continue;
        }
        double w = agentdb_connection_expected_wait(s, now, seen, unknown_est, slack);
        if (w < *wait) {
            *wait = w;
            best = s;
        }
    }
    return best;
}

static int pool_may_grow(agentdb_Pool *p)
{
    return !p->closing && pool_count(p) < p->pool_size + p->max_overflow;
}

static int waiter_is_exclusive(agentdb_Waiter *w)
{
    return !w->shortcut || w->solo;
}

/* Waiters that need a connection of their own (acquire(), a shortcut that changes
   the session) when the pool cannot grow: stop queueing shortcuts on that many
   shared connections, the ones expected to clear first, so that they drain and go
   to those waiters instead of serving shortcuts forever. */
static void pool_reserve(agentdb_Pool *p)
{
    if (pool_may_grow(p) || PyList_GET_SIZE(p->shared) == 0) {
        return;
    }
    Py_ssize_t need = -(p->opening + p->pinging);
    for (agentdb_Waiter *w = p->whead; w != NULL; w = w->next) {
        need += waiter_is_exclusive(w);
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(p->shared); i++) {
        need -= lk((agentdb_Connection *)PyList_GET_ITEM(p->shared, i))->reserved;
    }
    while (need-- > 0) {
        double wait;
        agentdb_Connection *c = pool_pick_shared(p, &wait);
        if (c == NULL) {
            return;
        }
        lk(c)->reserved = 1;
    }
}

/* Parse (query, *args, timeout=None[, column=0]) of a shortcut. 0 => ok. */
static int parse_shortcut_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                               int allow_column, double *timeout, int *column,
                               PyObject **rest)
{
    *timeout = 0;
    *column = 0;
    if (nargs < 1 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "the first argument must be the query (a str)");
        return -1;
    }
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(key, "timeout") == 0) {
            if (parse_timeout(args[nargs + i], timeout) < 0) {
                return -1;
            }
        }
        else if (allow_column && PyUnicode_CompareWithASCIIString(key, "column") == 0) {
            long col = PyLong_AsLong(args[nargs + i]);
            if ((col == -1 && PyErr_Occurred()) || col < 0 || col > 1600) {
                PyErr_SetString(PyExc_ValueError, "column must be a non-negative int");
                return -1;
            }
            *column = (int)col;
        }
        else {
            PyErr_Format(PyExc_TypeError, "unexpected keyword argument '%U'", key);
            return -1;
        }
    }
    *rest = PyTuple_New(nargs - 1);
    if (*rest == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 1; i < nargs; i++) {
        PyTuple_SET_ITEM(*rest, i - 1, Py_NewRef(args[i]));
    }
    return 0;
}

static PyObject *pool_shortcut(agentdb_Pool *p, int mode, PyObject *const *args,
                               Py_ssize_t nargs, PyObject *kwnames, int allow_column)
{
    agentdb_state *st = pool_state(p);
    double timeout;
    int column;
    PyObject *rest = NULL, *fut = NULL;
    if (pool_check_open(p, st) < 0 ||
        parse_shortcut_args(args, nargs, kwnames, allow_column, &timeout, &column, &rest) < 0) {
        return NULL;
    }
    agentdb_StmtProfile *pr = pool_profile(p, args[0]);
    if (pr == NULL || agentdb_sql_refuse(st, pr->flags) < 0) {
        goto error;
    }
    int solo = (pr->flags & (AGENTDB_SQL_SESSION | AGENTDB_SQL_BEGIN)) != 0;
    int kind = nargs == 1 && mode == AGENTDB_MODE_STATUS ? OPK_SIMPLE : OPK_QUERY;
    p->n_shortcuts++;
    p->n_isolated += solo;
    agentdb_Connection *c = NULL;
    if (p->nwaiters == 0) {
        c = pool_pop_idle(p);
        if (c != NULL && pool_share(p, c, solo) < 0) {
            Py_DECREF(c);
            goto error;
        }
    }
    if (c == NULL && !solo && pool_count(p) >= p->pool_size && p->opening <= p->nwaiters) {
        /* At pool_size, no connect in progress that no waiter claimed yet: queue behind
           other shortcuts rather than wait here, unless the best queue is held up by a
           long statement and a new connection may be opened instead. */
        double wait;
        agentdb_Connection *best = pool_pick_shared(p, &wait);
        if (best != NULL && wait > GROW_AFTER &&
            wait > GROW_QUEUE_FACTOR * (double)agentdb_connection_pending(best) * pool_typical(p) &&
            pool_may_grow(p)) {
            p->n_grown_for_wait++;
            best = NULL;
        }
        c = (agentdb_Connection *)Py_XNewRef(best);
    }
    fut = agentdb_future_new(st, p->loop, (PyObject *)p);
    if (fut == NULL) {
        Py_XDECREF(c);
        goto error;
    }
    if (c != NULL) {
        int rc = agentdb_connection_submit(c, fut, kind, mode, args[0], rest, column, timeout,
                                           (PyObject *)pr, pool_estimate(p, pr));
        if (rc < 0 && agentdb_connection_pending(c) == 0) {
            PyObject *exc = PyErr_GetRaisedException();
            agentdb_pool_conn_drained((PyObject *)p, c);
            PyErr_SetRaisedException(exc);
        }
        Py_DECREF(c);
        if (rc < 0) {
            goto error;
        }
    }
    else {
        agentdb_Waiter *w = pool_add_waiter(p, fut, p->pool_timeout);
        if (w == NULL) {
            goto error;
        }
        w->shortcut = 1;
        w->solo = solo;
        w->mode = mode;
        w->column = column;
        w->sql = Py_NewRef(args[0]);
        w->args = Py_NewRef(rest);
        w->profile = Py_NewRef((PyObject *)pr);
        w->timeout = timeout;
        pool_grow(p);
        pool_reserve(p);
    }
    Py_DECREF(rest);
    return fut;
error:
    Py_XDECREF(rest);
    Py_XDECREF(fut);
    return NULL;
}

static PyObject *Pool_fetch(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames)
{
    return pool_shortcut((agentdb_Pool *)self, AGENTDB_MODE_ALL, args, nargs, kwnames, 0);
}

static PyObject *Pool_fetchrow(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    return pool_shortcut((agentdb_Pool *)self, AGENTDB_MODE_ROW, args, nargs, kwnames, 0);
}

static PyObject *Pool_fetchval(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    return pool_shortcut((agentdb_Pool *)self, AGENTDB_MODE_VAL, args, nargs, kwnames, 1);
}

static PyObject *Pool_execute(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    return pool_shortcut((agentdb_Pool *)self, AGENTDB_MODE_STATUS, args, nargs, kwnames, 0);
}

/* ------------------------------------------------------------------------ */
/* AcquireContext: `await pool.acquire()` and `async with pool.acquire() as c`. */

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
    agentdb_state *st = pool_state(p);
    double timeout = 0;
    if (nargs > 0) {
        PyErr_SetString(PyExc_TypeError, "acquire() takes only timeout=");
        return NULL;
    }
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        if (PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, i), "timeout") != 0) {
            PyErr_Format(PyExc_TypeError, "unexpected keyword argument '%U'",
                         PyTuple_GET_ITEM(kwnames, i));
            return NULL;
        }
        if (parse_timeout(args[i], &timeout) < 0) {
            return NULL;
        }
    }
    agentdb_AcquireContext *ctx = PyObject_GC_New(agentdb_AcquireContext, st->AcquireContextType);
    if (ctx == NULL) {
        return NULL;
    }
    ctx->pool = Py_NewRef(self);
    ctx->fut = NULL;
    ctx->timeout = timeout;
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
    agentdb_state *st = pool_state(p);
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

/* ------------------------------------------------------------------------ */
/* Pool lifecycle */

static int Pool_init(PyObject *self, PyObject *args, PyObject *kwargs)
{
    agentdb_Pool *p = (agentdb_Pool *)self;
    agentdb_state *st = pool_state(p);
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
    p->cb_timer = agentdb_iohandle_new(st, self, pool_on_timer);
    p->cb_opened = agentdb_iohandle_new(st, self, pool_on_opened);
    p->cb_maint = agentdb_iohandle_new(st, self, pool_on_maintenance);
    p->cb_grow = agentdb_iohandle_new(st, self, pool_on_grow_timer);
    p->cb_reset_done = agentdb_iohandle_new(st, self, pool_on_user_reset_done);
    if (p->cb_grow == NULL || p->cb_reset_done == NULL) {
        return -1;
    }
    if (p->idle == NULL || p->shared == NULL || p->resetting == NULL || p->all == NULL ||
        p->cb_timer == NULL || p->cb_opened == NULL || p->cb_maint == NULL) {
        return -1;
    }
    /* The loop holds the handles, the handles point at us weakly: a pool that
       is dropped unclosed can still be collected. */
    pool_on_maintenance(self, Py_None);
    return 0;
}

/* _adopt(conn): take a connection opened by create_pool's prefill. */
static PyObject *Pool__adopt(PyObject *self, PyObject *conn)
{
    agentdb_Pool *p = (agentdb_Pool *)self;
    agentdb_state *st = pool_state(p);
    if (!agentdb_connection_check(st, conn)) {
        PyErr_SetString(PyExc_TypeError, "_adopt() expects a Connection");
        return NULL;
    }
    if (pool_adopt(p, (agentdb_Connection *)conn) < 0) {
        return NULL;
    }
    pool_make_available(p, (agentdb_Connection *)conn);
    Py_RETURN_NONE;
}

static void pool_fail_waiters(agentdb_Pool *p, const char *msg)
{
    agentdb_state *st = pool_state(p);
    agentdb_Waiter *w;
    PyObject *exc = agentdb_error_new(st->InterfaceError, msg, NULL);
    if (exc == NULL) {
        PyErr_WriteUnraisable((PyObject *)p);
        return;
    }
    while ((w = waiter_pop(p)) != NULL) {
        set_waiter_error(st, w, exc);
        waiter_free(st, w);
    }
    Py_DECREF(exc);
}

static void pool_close_list(PyObject *list)
{
    while (PyList_GET_SIZE(list) > 0) {
        Py_ssize_t before = PyList_GET_SIZE(list);
        PyObject *c = Py_NewRef(PyList_GET_ITEM(list, before - 1));
        pool_close_conn((agentdb_Connection *)c);
        if (PyList_GET_SIZE(list) == before) {
            /* Not removed by the close hook (already closed): drop it. */
            PyList_SetSlice(list, before - 1, before, NULL);
        }
        Py_DECREF(c);
    }
}

/* Cancel the connects in progress: their tasks close what they opened, and
   pool_on_opened frees their slots. 0 => ok, -1 => error set. */
static int pool_cancel_connects(agentdb_Pool *p)
{
    agentdb_state *st = pool_state(p);
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
    agentdb_state *st = pool_state(p);
    if (p->drained == NULL) {
        p->drained = agentdb_future_new(st, p->loop, NULL);
        if (p->drained == NULL) {
            return NULL;
        }
    }
    p->closing = 1;
    agentdb_timer_cancel(st, &p->maint_timer);
    pool_fail_waiters(p, "the pool is closing");
    pool_close_list(p->idle);
    /* Nobody waits for a connect in progress any more: cancel it rather than
       wait for a server that may never answer. */
    if (pool_cancel_connects(p) < 0) {
        return NULL;
    }
    /* Shared connections finish their statements, then close (closing is set). */
    pool_check_drained(p);
    return Py_NewRef(p->drained);
}

/* terminate(): close every connection now, checked out or not. */
static PyObject *Pool_terminate(PyObject *self, PyObject *Py_UNUSED(ig))
{
    agentdb_Pool *p = (agentdb_Pool *)self;
    agentdb_state *st = pool_state(p);
    p->closing = 1;
    agentdb_timer_cancel(st, &p->maint_timer);
    pool_fail_waiters(p, "the pool was terminated");
    PyObject *all = PySequence_List(p->all);
    if (all == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(all); i++) {
        pool_close_conn((agentdb_Connection *)PyList_GET_ITEM(all, i));
    }
    Py_DECREF(all);
    if (pool_cancel_connects(p) < 0) {
        return NULL;
    }
    pool_close_list(p->idle);
    pool_close_list(p->shared);
    pool_close_list(p->resetting);
    pool_check_drained(p);
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

static PyObject *Pool_stats(PyObject *self, PyObject *Py_UNUSED(ig))
{
    agentdb_Pool *p = (agentdb_Pool *)self;
    PyObject *d = PyDict_New();
    if (d == NULL) {
        return NULL;
    }
    Py_ssize_t size = pool_count(p);
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
    {"fetch", (PyCFunction)(void (*)(void))Pool_fetch, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"fetchrow", (PyCFunction)(void (*)(void))Pool_fetchrow, METH_FASTCALL | METH_KEYWORDS,
     NULL},
    {"fetchval", (PyCFunction)(void (*)(void))Pool_fetchval, METH_FASTCALL | METH_KEYWORDS,
     NULL},
    {"execute", (PyCFunction)(void (*)(void))Pool_execute, METH_FASTCALL | METH_KEYWORDS,
     NULL},
    {"stats", Pool_stats, METH_NOARGS, "Counters and sizes of the pool, as a dict."},
    {"terminate", Pool_terminate, METH_NOARGS, "Close every connection now."},
    {"is_closing", Pool_is_closing, METH_NOARGS, NULL},
    {"_connections", Pool__connections, METH_NOARGS, NULL},
    {"_profiles", Pool__profiles, METH_NOARGS, NULL},
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
    agentdb_state *st = pool_state(p);
    agentdb_Waiter *w;
    while ((w = waiter_pop(p)) != NULL) {
        waiter_free(st, w);
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
    agentdb_state *st = pool_state(p);
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
    {"__weaklistoffset__", T_PYSSIZET, offsetof(agentdb_Pool, weakreflist), READONLY},
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
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &StmtProfile_spec, NULL);
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
