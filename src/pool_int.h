/* pool_int.h: what the files of the pool share (pool.c, pool_conns.c, pool_shortcut.c):
   the Pool and waiter structs and the functions each file offers the others.  Nothing
   outside those files includes it. */
#ifndef AGENTDB_POOL_INT_H
#define AGENTDB_POOL_INT_H

#include "connection.h"
#include "args.h"
#include "errors.h"
#include "pool.h"

/* How the session is reset when a connection comes back (create_pool(reset=)). */
enum {
    RESET_SESSION,     /* default: rollback, and the session reset when it was changed */
    RESET_TRANSACTION, /* rollback only: session state stays (SQLAlchemy's semantics) */
    RESET_CALLABLE,    /* rollback, then the user's coroutine function */
};

/* A released connection's user-supplied reset (RESET_CALLABLE). */
enum { USER_RESET_NONE, USER_RESET_RUNNING, USER_RESET_DONE };

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
    double expire_before; /* expire_connections(): connections opened before it are replaced */
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

static inline agentdb_state *agentdb_pool_st(agentdb_Pool *p)
{
    return p->st;
}

/* The pool's link on connection `c` (pool.h). */
static inline agentdb_PoolLink *agentdb_pool_link(agentdb_Connection *c)
{
    return agentdb_connection_link(c);
}


/* pool.c */
int agentdb_pool_check_open(agentdb_Pool *p, agentdb_state *st);

/* pool_conns.c */
Py_ssize_t agentdb_pool_count(agentdb_Pool *p);
int agentdb_list_remove(PyObject *list, PyObject *item);
void agentdb_waiter_free(agentdb_state *st, agentdb_Waiter *w);
agentdb_Waiter *agentdb_waiter_pop(agentdb_Pool *p);
agentdb_Waiter *agentdb_waiter_unlink(agentdb_Pool *p, int (*match)(agentdb_Waiter *, void *),
                                      void *arg);
int agentdb_waiter_match_fut(agentdb_Waiter *w, void *arg);
void agentdb_pool_close_conn(agentdb_Connection *c);
void agentdb_pool_check_drained(agentdb_Pool *p);
void agentdb_pool_on_grow_timer(PyObject *self, PyObject *arg);
void agentdb_pool_grow(agentdb_Pool *p);
int agentdb_pool_adopt(agentdb_Pool *p, agentdb_Connection *c);
void agentdb_pool_on_opened(PyObject *self, PyObject *task);
agentdb_Connection *agentdb_pool_pop_idle(agentdb_Pool *p);
int agentdb_pool_share(agentdb_Pool *p, agentdb_Connection *c, int solo);
void agentdb_pool_make_available(agentdb_Pool *p, agentdb_Connection *c);
void agentdb_pool_on_user_reset_done(PyObject *self, PyObject *task);
void agentdb_pool_on_timer(PyObject *self, PyObject *arg);
void agentdb_pool_on_maintenance(PyObject *self, PyObject *arg);
agentdb_Waiter *agentdb_pool_add_waiter(agentdb_Pool *p, PyObject *fut, double timeout);
void agentdb_pool_fail_waiters(agentdb_Pool *p, const char *msg);

/* pool_shortcut.c */
extern PyType_Spec agentdb_StmtProfile_spec;
double agentdb_pool_estimate(agentdb_Pool *p, agentdb_StmtProfile *pr);
void agentdb_pool_reserve(agentdb_Pool *p);
PyObject *agentdb_Pool_fetch(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames);
PyObject *agentdb_Pool_fetchrow(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames);
PyObject *agentdb_Pool_fetchval(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames);
PyObject *agentdb_Pool_execute(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames);

#endif /* AGENTDB_POOL_INT_H */
