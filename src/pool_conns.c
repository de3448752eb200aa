/* pool_conns.c: a pool's connections through their life: opening them, waiters
   served first in first out, handing out (pings, expiry), and taking them back (the
   session reset, the reset coroutine); the hooks a connection calls and the pool's timers. */
#include "pool_int.h"

static void pool_serve(agentdb_Pool *p);
static void ping_done(agentdb_Connection *c, agentdb_Op *op, PyObject *result);
static void pool_run_user_reset(agentdb_Pool *p, agentdb_Connection *c);

Py_ssize_t agentdb_pool_count(agentdb_Pool *p)
{
    return PyList_GET_SIZE(p->idle) + PyList_GET_SIZE(p->shared) +
           PyList_GET_SIZE(p->resetting) + p->opening + p->in_use;
}

int agentdb_list_remove(PyObject *list, PyObject *item)
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

void agentdb_waiter_free(agentdb_state *st, agentdb_Waiter *w)
{
    agentdb_timer_cancel(st, &w->timer);
    Py_XDECREF(w->fut);
    Py_XDECREF(w->sql);
    Py_XDECREF(w->args);
    Py_XDECREF(w->profile);
    PyMem_Free(w);
}

agentdb_Waiter *agentdb_waiter_pop(agentdb_Pool *p)
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

agentdb_Waiter *agentdb_waiter_unlink(agentdb_Pool *p, int (*match)(agentdb_Waiter *, void *),
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

int agentdb_waiter_match_fut(agentdb_Waiter *w, void *arg)
{
    return w->fut == (PyObject *)arg;
}

static int match_id(agentdb_Waiter *w, void *arg)
{
    return w->id == *(unsigned long long *)arg;
}

/* Close a connection the pool holds (it reports back through
   agentdb_pool_conn_closed). */
void agentdb_pool_close_conn(agentdb_Connection *c)
{
    agentdb_pool_link(c)->closing = 1; /* not "lost": the pool decided */
    agentdb_connection_close_now(c, NULL);
}

static void set_waiter_error(agentdb_state *st, agentdb_Waiter *w, PyObject *exc)
{
    if (agentdb_future_set_exception(st, w->fut, exc) < 0) {
        PyErr_WriteUnraisable(w->fut);
    }
}

void agentdb_pool_check_drained(agentdb_Pool *p)
{
    agentdb_state *st = agentdb_pool_st(p);
    if (p->closing && p->drained != NULL && agentdb_pool_count(p) == 0) {
        if (agentdb_future_set_result(st, p->drained, Py_None) < 0) {
            PyErr_WriteUnraisable(p->drained);
        }
    }
}

static void pool_open(agentdb_Pool *p)
{
    agentdb_state *st = agentdb_pool_st(p);
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

void agentdb_pool_on_grow_timer(PyObject *self, PyObject *arg)
{
    (void)arg;
    agentdb_Pool *p = (agentdb_Pool *)self;
    Py_CLEAR(p->grow_timer);
    agentdb_pool_grow(p);
}

void agentdb_pool_grow(agentdb_Pool *p)
{
    if (!p->closing && p->nwaiters > p->opening + p->pinging &&
        agentdb_pool_count(p) < p->pool_size + p->max_overflow) {
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
           agentdb_pool_count(p) < p->pool_size + p->max_overflow) {
        Py_ssize_t before = p->opening;
        pool_open(p);
        if (p->opening == before) {
            break;
        }
    }
}

/* Take ownership of a freshly opened connection. */
int agentdb_pool_adopt(agentdb_Pool *p, agentdb_Connection *c)
{
    Py_INCREF(p);
    Py_XSETREF(agentdb_pool_link(c)->pool, (PyObject *)p);
    agentdb_pool_link(c)->state = POOLST_OPENING;
    PyObject *r = PyObject_CallMethod(p->all, "add", "O", (PyObject *)c);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    p->n_opened++;
    return 0;
}

/* Done callback of a connect task started by pool_open. */
void agentdb_pool_on_opened(PyObject *self, PyObject *task)
{
    agentdb_Pool *p = (agentdb_Pool *)self;
    agentdb_state *st = agentdb_pool_st(p);
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
        agentdb_pool_check_drained(p);
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
            while ((w = agentdb_waiter_pop(p)) != NULL) {
                int done = agentdb_future_done(st, w->fut);
                if (done == 0) {
                    set_waiter_error(st, w, exc);
                    agentdb_waiter_free(st, w);
                    break;
                }
                PyErr_Clear();
                agentdb_waiter_free(st, w);
            }
        }
        Py_DECREF(exc);
        agentdb_pool_check_drained(p);
        agentdb_pool_grow(p);
        return;
    }
    Py_XDECREF(exc);
    conn = PyObject_CallMethodNoArgs(task, st->str_result);
    if (conn == NULL || !agentdb_connection_check(st, conn)) {
        PyErr_Clear();
        Py_XDECREF(conn);
        agentdb_pool_check_drained(p);
        return;
    }
    agentdb_Connection *c = (agentdb_Connection *)conn;
    p->connect_backoff = 0;
    p->next_connect_at = 0;
    if (agentdb_pool_adopt(p, c) < 0) {
        PyErr_WriteUnraisable(self);
    }
    if (p->closing) {
        agentdb_pool_close_conn(c);
    }
    else {
        agentdb_pool_make_available(p, c);
    }
    Py_DECREF(conn);
}

/* 1 when the connection is too old (recycle, or opened before expire_connections()) or
   idle too long (max_idle). */
static int pool_expired(agentdb_Pool *p, agentdb_Connection *c, double now)
{
    if ((p->recycle > 0 && now - agentdb_pool_link(c)->created_at > p->recycle) ||
        agentdb_pool_link(c)->created_at <= p->expire_before) {
        p->n_recycled++;
        return 1;
    }
    if (p->max_idle > 0 && agentdb_pool_link(c)->state == POOLST_IDLE && now - agentdb_pool_link(c)->last_used > p->max_idle) {
        p->n_expired++;
        return 1;
    }
    return 0;
}

/* Pop a usable idle connection (new reference) or NULL. Dead and expired
   ones are closed; ones idle longer than ping_after get a ping first (they
   come back through agentdb_pool_make_available) and are skipped here.  With
   pre_ping, what the server sent an idle connection is read before it is handed out
   (no round trip): a backend terminated since is noticed even when the loop has not
   yet reported its socket readable. */
agentdb_Connection *agentdb_pool_pop_idle(agentdb_Pool *p)
{
    double now = agentdb_monotonic();
    while (PyList_GET_SIZE(p->idle) > 0) {
        Py_ssize_t last = PyList_GET_SIZE(p->idle) - 1;
        if (p->pre_ping &&
            agentdb_connection_read_pending((agentdb_Connection *)PyList_GET_ITEM(p->idle, last))) {
            continue; /* it read something (a FATAL?): maybe closed and gone; look again */
        }
        agentdb_Connection *c = (agentdb_Connection *)Py_NewRef(PyList_GET_ITEM(p->idle, last));
        if (PyList_SetSlice(p->idle, last, last + 1, NULL) < 0) {
            Py_DECREF(c);
            PyErr_WriteUnraisable((PyObject *)p);
            return NULL;
        }
        if (!agentdb_connection_alive(c) || pool_expired(p, c, now)) {
            agentdb_pool_link(c)->state = POOLST_RESETTING; /* counted nowhere while it closes */
            if (PyList_Append(p->resetting, (PyObject *)c) < 0) {
                PyErr_Clear();
            }
            agentdb_pool_close_conn(c);
            Py_DECREF(c);
            continue;
        }
        if (p->pre_ping && now - agentdb_pool_link(c)->last_used > p->ping_after) {
            agentdb_pool_link(c)->state = POOLST_RESETTING;
            if (PyList_Append(p->resetting, (PyObject *)c) < 0) {
                PyErr_Clear();
            }
            p->pinging++;
            p->n_pings++;
            if (agentdb_connection_internal(c, "", p->reset_timeout, ping_done, 0) < 0) {
                PyErr_Clear();
                p->pinging--;
                agentdb_pool_close_conn(c);
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
    agentdb_Pool *p = (agentdb_Pool *)agentdb_pool_link(c)->pool;
    if (p == NULL) {
        return;
    }
    p->pinging--;
    if (result == NULL || !agentdb_connection_alive(c)) {
        p->n_failed_pings++;
        agentdb_pool_close_conn(c);
        return;
    }
    /* Liveness proven: it goes to a waiter or back to idle. */
    Py_INCREF(c);
    if (agentdb_list_remove(p->resetting, (PyObject *)c) < 0) {
        PyErr_Clear();
    }
    agentdb_pool_link(c)->state = POOLST_OPENING;
    agentdb_pool_make_available(p, c);
    Py_DECREF(c);
}

/* A connection (in no list) starts serving shortcuts, `solo` when one that changes the
   session runs on it alone.  A session its last borrower left changed (the
   "transaction" reset rule keeps such state) is reset first, ahead of the shortcuts:
   they always start from a clean session.  0 => ok, -1 => error set. */
int agentdb_pool_share(agentdb_Pool *p, agentdb_Connection *c, int solo)
{
    if (PyList_Append(p->shared, (PyObject *)c) < 0) {
        return -1;
    }
    agentdb_pool_link(c)->state = POOLST_SHARED;
    agentdb_pool_link(c)->solo = solo;
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
    agentdb_state *st = agentdb_pool_st(p);
    record_wait(p, w->since);
    if (w->shortcut) {
        if (agentdb_pool_share(p, c, w->solo) < 0) {
            return -1;
        }
        int kind = w->args != NULL && PyTuple_GET_SIZE(w->args) == 0 &&
                           w->mode == AGENTDB_MODE_STATUS
                       ? OPK_SIMPLE
                       : OPK_QUERY;
        if (agentdb_connection_submit(c, w->fut, kind, w->mode, w->sql, w->args, w->column,
                                      w->timeout, w->profile,
                                      agentdb_pool_estimate(p, (agentdb_StmtProfile *)w->profile)) <
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
    agentdb_pool_link(c)->state = POOLST_IN_USE;
    agentdb_pool_link(c)->last_used = agentdb_monotonic();
    if (agentdb_future_set_result(st, w->fut, (PyObject *)c) < 0) {
        PyErr_WriteUnraisable(w->fut);
    }
    return 0;
}

/* A clean, alive connection that no list holds: to the first live waiter,
   else back to idle (or closed when pool_size are idle already: overflow). */
void agentdb_pool_make_available(agentdb_Pool *p, agentdb_Connection *c)
{
    agentdb_state *st = agentdb_pool_st(p);
    agentdb_pool_link(c)->solo = agentdb_pool_link(c)->reserved = 0;
    if (p->closing || !agentdb_connection_alive(c) || pool_expired(p, c, agentdb_monotonic())) {
        agentdb_pool_link(c)->state = POOLST_RESETTING;
        if (PyList_Append(p->resetting, (PyObject *)c) < 0) {
            PyErr_Clear();
        }
        agentdb_pool_close_conn(c);
        return;
    }
    agentdb_Waiter *w;
    while ((w = agentdb_waiter_pop(p)) != NULL) {
        int done = agentdb_future_done(st, w->fut);
        if (done != 0) {
            PyErr_Clear();
            agentdb_waiter_free(st, w);
            continue;
        }
        agentdb_timer_cancel(st, &w->timer);
        int rc = pool_hand_to_waiter(p, c, w);
        agentdb_waiter_free(st, w);
        if (rc == 0) {
            return;
        }
        PyErr_WriteUnraisable((PyObject *)p);
    }
    if (PyList_GET_SIZE(p->idle) >= p->pool_size) {
        agentdb_pool_link(c)->state = POOLST_RESETTING;
        if (PyList_Append(p->resetting, (PyObject *)c) < 0) {
            PyErr_Clear();
        }
        agentdb_pool_close_conn(c);
        return;
    }
    agentdb_pool_link(c)->state = POOLST_IDLE;
    agentdb_pool_link(c)->last_used = agentdb_monotonic();
    if (PyList_Append(p->idle, (PyObject *)c) < 0) {
        PyErr_WriteUnraisable((PyObject *)p);
    }
}

/* Serve waiters with idle connections; open more when needed. */
static void pool_serve(agentdb_Pool *p)
{
    while (p->nwaiters > 0 && PyList_GET_SIZE(p->idle) > 0) {
        agentdb_Connection *c = agentdb_pool_pop_idle(p);
        if (c == NULL) {
            break;
        }
        agentdb_pool_link(c)->state = POOLST_OPENING;
        agentdb_pool_make_available(p, c);
        Py_DECREF(c);
    }
    agentdb_pool_grow(p);
}

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
        agentdb_pool_link(c)->state = POOLST_RESETTING; /* counted nowhere while it closes */
        if (PyList_Append(p->resetting, (PyObject *)c) < 0) {
            PyErr_Clear();
        }
        agentdb_pool_close_conn(c);
        return;
    }
    /* Nothing in flight: libpq's status is exact. */
    int rollback = !agentdb_connection_txn_idle(c);
    int dirty = agentdb_connection_session_dirty(c);
    int session = dirty && (!from_acquire || p->reset_mode == RESET_SESSION);
    if ((rollback || session) &&
        agentdb_connection_queue_reset(c, rollback, session, p->reset_timeout) < 0) {
        PyErr_Clear();
        agentdb_pool_link(c)->state = POOLST_RESETTING;
        if (PyList_Append(p->resetting, (PyObject *)c) < 0) {
            PyErr_Clear();
        }
        agentdb_pool_close_conn(c);
        return;
    }
    p->n_rollbacks += rollback;
    p->n_resets += session;
    if (from_acquire && p->reset_mode == RESET_CALLABLE) {
        pool_run_user_reset(p, c);
        return;
    }
    agentdb_pool_link(c)->state = POOLST_OPENING;
    agentdb_pool_make_available(p, c);
}

/* A connection the pool tracks has no statement left. */
void agentdb_pool_conn_drained(PyObject *pool, agentdb_Connection *c)
{
    agentdb_Pool *p = (agentdb_Pool *)pool;
    int from_acquire;
    if (agentdb_pool_link(c)->state == POOLST_SHARED) {
        from_acquire = 0;
        if (agentdb_list_remove(p->shared, (PyObject *)c) < 0) {
            PyErr_Clear();
        }
    }
    else if (agentdb_pool_link(c)->state == POOLST_RESETTING) {
        if (agentdb_pool_link(c)->user_reset == USER_RESET_RUNNING) {
            return; /* the user's reset coroutine decides */
        }
        from_acquire = agentdb_pool_link(c)->user_reset != USER_RESET_DONE;
        agentdb_pool_link(c)->user_reset = USER_RESET_NONE;
        if (agentdb_list_remove(p->resetting, (PyObject *)c) < 0) {
            PyErr_Clear();
        }
        if (!from_acquire) {
            agentdb_pool_link(c)->state = POOLST_OPENING; /* reset by its user's coroutine: done */
            Py_INCREF(c);
            agentdb_pool_make_available(p, c);
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
   connection waits in `resetting` for its outcome (agentdb_pool_on_user_reset_done). */
static void pool_run_user_reset(agentdb_Pool *p, agentdb_Connection *c)
{
    agentdb_state *st = agentdb_pool_st(p);
    PyObject *coro = NULL, *task = NULL, *r = NULL;
    agentdb_pool_link(c)->state = POOLST_RESETTING;
    agentdb_pool_link(c)->user_reset = USER_RESET_RUNNING;
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
    agentdb_pool_link(c)->user_reset = USER_RESET_NONE;
    agentdb_pool_close_conn(c);
}

/* Done callback of a user reset task: True means the session may be used again. */
void agentdb_pool_on_user_reset_done(PyObject *self, PyObject *task)
{
    agentdb_Pool *p = (agentdb_Pool *)self;
    agentdb_state *st = agentdb_pool_st(p);
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
    if (agentdb_pool_link(c)->state == POOLST_RESETTING && agentdb_pool_link(c)->user_reset == USER_RESET_RUNNING) {
        agentdb_pool_link(c)->user_reset = USER_RESET_DONE;
        if (!ok || !agentdb_connection_alive(c)) {
            agentdb_pool_link(c)->user_reset = USER_RESET_NONE;
            agentdb_pool_close_conn(c);
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
    agentdb_pool_link(c)->user_reset = USER_RESET_NONE;
    switch (agentdb_pool_link(c)->state) {
    case POOLST_IDLE:
        if (!agentdb_pool_link(c)->closing) {
            p->n_lost++;
        }
        if (agentdb_list_remove(p->idle, (PyObject *)c) < 0) {
            PyErr_Clear();
        }
        break;
    case POOLST_SHARED:
        if (agentdb_list_remove(p->shared, (PyObject *)c) < 0) {
            PyErr_Clear();
        }
        break;
    case POOLST_RESETTING:
        if (agentdb_list_remove(p->resetting, (PyObject *)c) < 0) {
            PyErr_Clear();
        }
        break;
    case POOLST_IN_USE:
        p->in_use--;
        break;
    default:
        break;
    }
    if (agentdb_pool_link(c)->state != POOLST_NONE) {
        p->n_closed++;
    }
    agentdb_pool_link(c)->state = POOLST_NONE;
    Py_DECREF(c);
    agentdb_pool_check_drained(p);
    if (!p->closing) {
        pool_serve(p);
    }
    PyErr_SetRaisedException(saved);
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
    if (agentdb_pool_link(c)->state == POOLST_IN_USE) {
        p->n_leaked++;
    }
}

void agentdb_pool_on_timer(PyObject *self, PyObject *arg)
{
    agentdb_Pool *p = (agentdb_Pool *)self;
    agentdb_state *st = agentdb_pool_st(p);
    unsigned long long id = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return;
    }
    agentdb_Waiter *w = agentdb_waiter_unlink(p, match_id, &id);
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
    agentdb_waiter_free(st, w);
}

/* Periodic: close idle connections past max_idle or recycle, so a
   never-used connection expires too. */
void agentdb_pool_on_maintenance(PyObject *self, PyObject *arg)
{
    (void)arg;
    agentdb_Pool *p = (agentdb_Pool *)self;
    agentdb_state *st = agentdb_pool_st(p);
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
            agentdb_pool_close_conn(c);
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

agentdb_Waiter *agentdb_pool_add_waiter(agentdb_Pool *p, PyObject *fut, double timeout)
{
    agentdb_state *st = agentdb_pool_st(p);
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
            agentdb_waiter_free(st, w);
            return NULL;
        }
        w->timer = agentdb_call_later(st, p->loop, timeout, p->cb_timer, id);
        Py_DECREF(id);
        if (w->timer == NULL) {
            agentdb_waiter_free(st, w);
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

void agentdb_pool_fail_waiters(agentdb_Pool *p, const char *msg)
{
    agentdb_state *st = agentdb_pool_st(p);
    agentdb_Waiter *w;
    PyObject *exc = agentdb_error_new(st->InterfaceError, msg, NULL);
    if (exc == NULL) {
        PyErr_WriteUnraisable((PyObject *)p);
        return;
    }
    while ((w = agentdb_waiter_pop(p)) != NULL) {
        set_waiter_error(st, w, exc);
        agentdb_waiter_free(st, w);
    }
    Py_DECREF(exc);
}
