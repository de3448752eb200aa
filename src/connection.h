/* connection.h: the Connection as the rest of the core sees it (the pool, the module):
   an opaque type and the functions it offers.  Its own files share conn_int.h. */
#ifndef AGENTDB_CONNECTION_H
#define AGENTDB_CONNECTION_H

#include "agentdb.h"
#include "loop.h"
#include "pool.h"
#include "sqlclass.h"

typedef struct agentdb_Op agentdb_Op;

/* Completion hook of an internal statement (no future): `result` is the
   statement's result, or NULL with the op's error pending. */
typedef void (*agentdb_op_done_fn)(agentdb_Connection *c, agentdb_Op *op, PyObject *result);

/* What a statement's future resolves to. */
enum {
    AGENTDB_MODE_STATUS, /* the command tag: "INSERT 0 1" */
    AGENTDB_MODE_ALL,    /* list of Record */
    AGENTDB_MODE_ROW,    /* first Record or None */
    AGENTDB_MODE_VAL,    /* a column of the first row or None */
    AGENTDB_MODE_RAW,    /* (rows, names | None, type oids | None, command tag) */
    AGENTDB_MODE_NONE,   /* None */
    AGENTDB_MODE_DESCRIBE, /* (parameter type oids, RecordDesc | None): prepared, not run */
    /* A PEP 249 adapter's: (rows, description | None, rowcount, ddl) */
    AGENTDB_MODE_DBAPI,
};
/* OR'ed into a submit's `mode`: the statement is never prepared by name nor cached, its
   arguments typed as without a cache (server-side cursors' DECLARE and FETCH, whose texts
   name a cursor each: they would only churn the statement cache). */
#define AGENTDB_MODE_UNCACHED 0x100

/* OPK_PLAIN: one statement without arguments or preparation (transaction
   control, DDL, internal statements); OPK_SIMPLE: the simple protocol, for
   several statements in one string; OPK_BATCH: internal statements without
   arguments (op->batch), all under one sync (the session reset); OPK_CLOSE: a Close of
   each prepared statement named in op->args, under one sync (libpq 17+, stmtcache.c). */
enum { OPK_QUERY, OPK_SIMPLE, OPK_MANY, OPK_PLAIN, OPK_BATCH, OPK_CLOSE };
int agentdb_connection_check(agentdb_state *st, PyObject *obj);
int agentdb_connection_alive(agentdb_Connection *c);
/* Queue an internal statement (no arguments, no preparation) whose completion calls
   `done` (may be NULL); `sqlflags`: its AGENTDB_SQL_* (AGENTDB_SQL_END for ROLLBACK). */
int agentdb_connection_internal(agentdb_Connection *c, const char *sql, double timeout,
                                agentdb_op_done_fn done, unsigned sqlflags);
/* `est` of a statement whose text the pool has not timed yet. */
#define AGENTDB_EST_UNKNOWN (-1.0)
/* Queue a statement for a future that already exists (pool shortcuts).  `profile`
   (an agentdb_StmtProfile or NULL) gives its flags and learns its duration; `est`
   is its expected duration in seconds, AGENTDB_EST_UNKNOWN, or 0 (nobody weighs it). */
int agentdb_connection_submit(agentdb_Connection *c, PyObject *fut, int kind, int mode,
                              PyObject *sql, PyObject *args, int column, double timeout,
                              PyObject *profile, double est);
/* -1 with an error set for a statement the core refuses (one that changes the
   client encoding), else 0. */
int agentdb_sql_refuse(agentdb_state *st, unsigned flags);
/* Close now: fail pending statements with `exc` (or InterfaceError), PQfinish. */
void agentdb_connection_close_now(agentdb_Connection *c, PyObject *exc);
int agentdb_connection_txn_idle(agentdb_Connection *c);
/* The transaction status the connection will have once every statement queued so
   far has run: PQTRANS_IDLE, PQTRANS_INTRANS or PQTRANS_INERROR (a guess from the
   statements' text while some are in flight; exact when none is). */
int agentdb_connection_txn_expected(agentdb_Connection *c);
/* Forget what its last user left on the Python side: the transaction stack,
   listeners and notice handlers (UNLISTEN * queued when channels were listened
   to and `unlisten`); the lease is bumped. */
void agentdb_connection_forget_user(agentdb_Connection *c, int unlisten);
/* Queue what puts the session back as it was after connect, pipelined ahead of
   whatever is queued next: ROLLBACK when `rollback`, then the session reset
   statements (what DISCARD ALL does, the statement cache kept) when `session`.
   A failure closes the connection: nobody may use a session that could not be
   reset.  0 => queued, -1 => error set. */
int agentdb_connection_queue_reset(agentdb_Connection *c, int rollback, int session,
                                   double timeout);
/* 1 when every statement the server is running or has been sent is abandoned:
   it takes no new statements until they are gone. */
int agentdb_connection_draining(agentdb_Connection *c);
/* The expected time, in seconds, before a statement queued now would start: from the
   durations the pool has seen for the statements ahead of it.  `seen`: the last moment
   the loop is known to have read its sockets (the running statement was unfinished
   then); the time since is not counted against the running statement, since it may be
   the client, not the server, that was slow.  The running statement counts as held
   up once it ran twice its usual time plus `slack`. */
double agentdb_connection_expected_wait(agentdb_Connection *c, double now, double seen,
                                        double unknown_est, double slack);

/* The pool's link on the connection (pool.h); never NULL. */
agentdb_PoolLink *agentdb_connection_link(agentdb_Connection *c);
/* Statements queued and in flight. */
Py_ssize_t agentdb_connection_pending(agentdb_Connection *c);
/* Whether its user changed the session since the last reset (SET, LISTEN, PREPARE...). */
int agentdb_connection_session_dirty(agentdb_Connection *c);
/* Read now what the server sent an idle connection, before the loop reports the socket
   readable (a pool's pre-ping as it hands the connection out): 1 => something was read
   (the connection may be closed now: a terminated backend's FATAL and EOF), 0 => nothing
   was waiting. */
int agentdb_connection_read_pending(agentdb_Connection *c);
/* Open, and not holding new statements back (agentdb_connection_draining). */
int agentdb_connection_accepts(agentdb_Connection *c);

PyObject *agentdb_parse_dsn_py(PyObject *module, PyObject *dsn);

#endif /* AGENTDB_CONNECTION_H */
