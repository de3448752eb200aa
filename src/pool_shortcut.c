/* pool_shortcut.c: pool shortcuts (pool.fetch...): one statement on a shared
   connection, scheduled by expected wait (statement profiles), alone when it changes the
   session; reserving shared connections for waiters that need one of their own. */
#include "pool_int.h"

#include <math.h>

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
    {"flags", Py_T_UINT, offsetof(agentdb_StmtProfile, flags), Py_READONLY,
     "What the statement does to its session (the core's SQL_* flags)."},
    {"runs", Py_T_ULONG, offsetof(agentdb_StmtProfile, runs), Py_READONLY, "Runs timed."},
    {"mean", Py_T_DOUBLE, offsetof(agentdb_StmtProfile, mean), Py_READONLY,
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

PyType_Spec agentdb_StmtProfile_spec = {
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
    agentdb_StmtProfile *pr = PyObject_New(agentdb_StmtProfile, agentdb_pool_st(p)->StmtProfileType);
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
double agentdb_pool_estimate(agentdb_Pool *p, agentdb_StmtProfile *pr)
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
    return !agentdb_pool_link(c)->solo && !agentdb_pool_link(c)->reserved && agentdb_connection_accepts(c);
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
    return !p->closing && agentdb_pool_count(p) < p->pool_size + p->max_overflow;
}

static int waiter_is_exclusive(agentdb_Waiter *w)
{
    return !w->shortcut || w->solo;
}

/* Waiters that need a connection of their own (acquire(), a shortcut that changes
   the session) when the pool cannot grow: stop queueing shortcuts on that many
   shared connections, the ones expected to clear first, so that they drain and go
   to those waiters instead of serving shortcuts forever. */
void agentdb_pool_reserve(agentdb_Pool *p)
{
    if (pool_may_grow(p) || PyList_GET_SIZE(p->shared) == 0) {
        return;
    }
    Py_ssize_t need = -(p->opening + p->pinging);
    for (agentdb_Waiter *w = p->whead; w != NULL; w = w->next) {
        need += waiter_is_exclusive(w);
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(p->shared); i++) {
        need -= agentdb_pool_link((agentdb_Connection *)PyList_GET_ITEM(p->shared, i))->reserved;
    }
    while (need-- > 0) {
        double wait;
        agentdb_Connection *c = pool_pick_shared(p, &wait);
        if (c == NULL) {
            return;
        }
        agentdb_pool_link(c)->reserved = 1;
    }
}


/* fetch/fetchrow/fetchval/execute(query, *values, timeout=None[, column=0]). */
static PyObject *pool_shortcut(agentdb_Pool *p, const char *method, int mode,
                               PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                               unsigned keywords)
{
    agentdb_state *st = agentdb_pool_st(p);
    agentdb_kwargs kw;
    PyObject *query = NULL, *rest = NULL, *fut = NULL;
    if (agentdb_parse_kwargs(method, args, nargs, kwnames, keywords, &kw) < 0 ||
        agentdb_pool_check_open(p, st) < 0 ||
        agentdb_parse_query(method, args, nargs, &query, &rest) < 0) {
        return NULL;
    }
    double timeout = kw.timeout;
    int column = kw.column;
    agentdb_StmtProfile *pr = pool_profile(p, query);
    if (pr == NULL || agentdb_sql_refuse(st, pr->flags) < 0) {
        goto error;
    }
    int solo = (pr->flags & (AGENTDB_SQL_SESSION | AGENTDB_SQL_BEGIN)) != 0;
    int kind = nargs == 1 && mode == AGENTDB_MODE_STATUS ? OPK_SIMPLE : OPK_QUERY;
    p->n_shortcuts++;
    p->n_isolated += solo;
    agentdb_Connection *c = NULL;
    if (p->nwaiters == 0) {
        c = agentdb_pool_pop_idle(p);
        if (c != NULL && agentdb_pool_share(p, c, solo) < 0) {
            Py_DECREF(c);
            goto error;
        }
    }
    if (c == NULL && !solo && agentdb_pool_count(p) >= p->pool_size && p->opening <= p->nwaiters) {
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
        int rc = agentdb_connection_submit(c, fut, kind, mode, query, rest, column, timeout,
                                           (PyObject *)pr, agentdb_pool_estimate(p, pr));
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
        agentdb_Waiter *w = agentdb_pool_add_waiter(p, fut, p->pool_timeout);
        if (w == NULL) {
            goto error;
        }
        w->shortcut = 1;
        w->solo = solo;
        w->mode = mode;
        w->column = column;
        w->sql = Py_NewRef(query);
        w->args = Py_NewRef(rest);
        w->profile = Py_NewRef((PyObject *)pr);
        w->timeout = timeout;
        agentdb_pool_grow(p);
        agentdb_pool_reserve(p);
    }
    Py_DECREF(rest);
    return fut;
error:
    Py_XDECREF(rest);
    Py_XDECREF(fut);
    return NULL;
}

PyObject *agentdb_Pool_fetch(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames)
{
    return pool_shortcut((agentdb_Pool *)self, "fetch", AGENTDB_MODE_ALL, args, nargs, kwnames,
                         AGENTDB_KW_TIMEOUT);
}

PyObject *agentdb_Pool_fetchrow(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    return pool_shortcut((agentdb_Pool *)self, "fetchrow", AGENTDB_MODE_ROW, args, nargs, kwnames,
                         AGENTDB_KW_TIMEOUT);
}

PyObject *agentdb_Pool_fetchval(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    return pool_shortcut((agentdb_Pool *)self, "fetchval", AGENTDB_MODE_VAL, args, nargs, kwnames,
                         AGENTDB_KW_TIMEOUT | AGENTDB_KW_COLUMN);
}

PyObject *agentdb_Pool_execute(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    return pool_shortcut((agentdb_Pool *)self, "execute", AGENTDB_MODE_STATUS, args, nargs, kwnames,
                         AGENTDB_KW_TIMEOUT);
}
