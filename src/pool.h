/* pool.h: what the pool and its connections know of each other: the link a pool keeps
   on each connection, the statement profiles of shortcuts, and the hooks a connection
   calls (pool.c). */
#ifndef AGENTDB_POOL_H
#define AGENTDB_POOL_H

#include "agentdb.h"

typedef struct agentdb_Connection agentdb_Connection;

/* Where a pooled connection is (pool.c owns these transitions). */
enum {
    POOLST_NONE,      /* not in a pool */
    POOLST_IDLE,      /* in the pool's idle list */
    POOLST_IN_USE,    /* checked out with acquire() */
    POOLST_SHARED,    /* running pool shortcut statements */
    POOLST_RESETTING, /* released; draining or rolling back before it is idle */
    POOLST_OPENING,   /* being handed out right after connect */
};

/* What a pool keeps on each connection it holds.  The connection carries it for the
   pool (agentdb_connection_link) and reads only `pool` (to call the hooks below),
   `created_at` and `last_used` (it sets them). */
typedef struct {
    PyObject *pool;  /* the Pool (strong reference), or NULL */
    int state;       /* POOLST_* */
    int closing;     /* the pool itself is closing it */
    int solo;        /* shared, but running a session-changing shortcut alone */
    int reserved;    /* shared, draining for a waiter: no new shortcuts */
    int user_reset;  /* the state of create_pool(reset=callable)'s coroutine for it */
    double created_at, last_used;
} agentdb_PoolLink;

/* What the pool knows of one SQL text run through its shortcuts. */
typedef struct {
    PyObject_HEAD
    unsigned flags;     /* agentdb_sql_classify() of the text */
    unsigned long runs; /* completed runs measured */
    double mean;        /* their moving average duration, seconds (0 before the first) */
} agentdb_StmtProfile;

/* Hooks a connection calls on its pool. */
/* The connection's FIFO drained (it has no statement left). */
void agentdb_pool_conn_drained(PyObject *pool, agentdb_Connection *c);
/* The connection closed or broke. */
void agentdb_pool_conn_closed(PyObject *pool, agentdb_Connection *c);
/* A statement's awaiter gave up (timeout, cancellation); `on_server` when
   it had reached the server (then it is cancelled there or left to finish). */
void agentdb_pool_count_abandoned(PyObject *pool, int on_server);
/* The loop read one of the pool's sockets at `now`. */
void agentdb_pool_note_read(PyObject *pool, double now);
/* A shortcut's statement (of `profile`) took `seconds` from the moment the server
   turned to it; `round_trip`: it went out with nothing ahead of it, so the time
   includes a round trip. */
void agentdb_pool_measured(PyObject *pool, PyObject *profile, double seconds,
                           int round_trip);
/* The connection object is being destroyed while checked out. */
void agentdb_pool_conn_lost_by_gc(PyObject *pool, agentdb_Connection *c);

#endif /* AGENTDB_POOL_H */
