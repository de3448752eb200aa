/* connection.h: Connection, one nonblocking PGconn and its FIFO of statements. */
#ifndef AGENTDB_CONNECTION_H
#define AGENTDB_CONNECTION_H

#include "agentdb.h"
#include "codecs.h"
#include "sqlclass.h"

typedef struct agentdb_Connection agentdb_Connection;
typedef struct agentdb_Op agentdb_Op;

/* Completion hook of an internal statement (no future): `result` is the
   statement's result, or NULL with `op->error` holding the exception. */
typedef void (*agentdb_op_done_fn)(agentdb_Connection *c, agentdb_Op *op, PyObject *result);

/* What a statement's future resolves to. */
enum {
    AGENTDB_MODE_STATUS, /* the command tag: "INSERT 0 1" */
    AGENTDB_MODE_ALL,    /* list of Record */
    AGENTDB_MODE_ROW,    /* first Record or None */
    AGENTDB_MODE_VAL,    /* a column of the first row or None */
    AGENTDB_MODE_RAW,    /* (rows, names | None, type oids | None, command tag) */
    AGENTDB_MODE_NONE,   /* None */
};

/* OPK_PLAIN: one statement without arguments or preparation (transaction
   control, DDL, internal statements); OPK_SIMPLE: the simple protocol, for
   several statements in one string; OPK_BATCH: internal statements without
   arguments (op->batch), all under one sync (the session reset). */
enum { OPK_QUERY, OPK_SIMPLE, OPK_MANY, OPK_PLAIN, OPK_BATCH };
/* Where an op is in the pipeline. */
enum {
    OPST_QUEUED, /* nothing sent */
    OPST_PHASE1, /* Parse + Describe + Sync in flight */
    OPST_READY2, /* described; the statement itself not sent yet */
    OPST_PHASE2, /* the statement + Sync in flight */
    OPST_SIMPLE, /* a simple-protocol query in flight (outside pipeline mode) */
    OPST_FAILED, /* failed before sending (its error is set); finished at the head */
};
enum { STEP_START, STEP_PREPARE, STEP_DESCRIBE, STEP_EXEC };
enum { COPY_NONE, COPY_IN, COPY_OUT };
enum { CONN_NEW, CONN_CONNECTING, CONN_READY, CONN_CLOSED };

/* Where a pooled connection is (pool.c owns these transitions). */
enum {
    POOLST_NONE,      /* not in a pool */
    POOLST_IDLE,      /* in the pool's idle list */
    POOLST_IN_USE,    /* checked out with acquire() */
    POOLST_SHARED,    /* running pool shortcut statements */
    POOLST_RESETTING, /* released; draining or rolling back before it is idle */
    POOLST_OPENING,   /* being handed out right after connect */
};

/* One statement in the connection's FIFO. */
struct agentdb_Op {
    agentdb_Op *next;
    unsigned long long id;
    int kind;      /* OPK_* */
    int mode;      /* AGENTDB_MODE_* */
    int step;      /* STEP_*: what the results being read belong to */
    int st;        /* OPST_* */
    int phase_cmds; /* commands of the phase in flight whose results are not all read */
    int column;    /* fetchval's column */
    int abandoned; /* its awaiter is gone (cancelled, timed out): drop the result */
    int cancel_sent;
    int retried;   /* re-prepared once after a stale cached statement */
    int chunk_tried; /* chunked rows mode was asked for its Execute (libpq 17+) */
    unsigned sqlflags; /* AGENTDB_SQL_* of its text (sqlclass.h); internal ops: as queued */
    double started_at; /* when the server began it (sent, and everything before it done) */
    int sent_as_head;  /* it went out with nothing ahead of it */
    /* Its expected duration, seconds (in c->est_sum); AGENTDB_EST_UNKNOWN for a text
       the pool has not timed yet (counted in c->n_unknown, weighed when asked). */
    double est;
    PyObject *profile; /* the pool's agentdb_StmtProfile of its SQL (shortcuts), or NULL */
    const char *const *batch; /* OPK_BATCH: its statements (static strings) */
    int nbatch;
    PyObject *fut;    /* AgentFuture, or NULL for internal statements */
    PyObject *sql;    /* str */
    PyObject *args;   /* tuple of arguments (OPK_MANY: list of tuples) */
    PyObject *stmt;   /* capsule of the prepared statement in use */
    PyObject *timer;  /* asyncio TimerHandle of its deadline */
    PyObject *result; /* accumulated result */
    PyObject *rows;   /* list: rows of the chunks received so far (chunked rows mode) */
    PyObject *error;  /* the first error */
    PyObject *status; /* command tag */
    double timeout;   /* seconds; <= 0: none */
    int copy_mode;    /* COPY_IN, COPY_OUT or 0 */
    PyObject *copy_data; /* COPY_IN: bytes to send; COPY_OUT: list of received chunks */
    Py_ssize_t copy_off; /* COPY_IN: bytes sent so far */
    int held; /* a COPY whose statement and payload are not known yet (_copy_hold):
                 it keeps its place in the FIFO and nothing after it is sent */
    /* Its arguments are being encoded, which runs Python code (op_send_exec): what that
       code does (closing the connection, cancelling this statement) must not free it;
       `orphaned`: the connection closed meanwhile (it was completed, and unlinked). */
    int encoding, orphaned;
    agentdb_op_done_fn done;
};

struct agentdb_Connection {
    PyObject_HEAD
    agentdb_state *st; /* cached: the type may be a Python subclass */
    PGconn *pg;
    int state;     /* CONN_* */
    int state_before_close;
    int reader_fd; /* -1 when no reader is registered */
    int writer_fd; /* -1 when no writer is registered */
    int watch_fd;  /* our dup() of libpq's socket, what the loop polls (-1: none) */
    int watch_src; /* the libpq socket it duplicates */
    int simple_mode;    /* out of pipeline mode for a simple-protocol query */
    int txn_status;     /* PQtransactionStatus as of the last completed statement */
    int kick_scheduled; /* a send of everything queued is due on the next iteration */
    int processing, process_again; /* conn_process is running / must run once more */
    int copy_out_discard; /* reading COPY TO STDOUT data (kept by copy_from_*) */
    int copy_in;          /* a COPY FROM STDIN payload is still going out */
    long pid;      /* the process that opened it: a forked child never touches it */
    PyObject *loop;
    PyObject *io;  /* IOHandle: what the loop holds instead of us */
    PyObject *cb_read, *cb_write, *cb_timer, *cb_kick, *cb_cancel_done, *cb_watchdog;
    PyObject *watchdog;           /* TimerHandle while statements are pending */
    unsigned long reads, reads_seen, stalls;
    agentdb_Op *head, *tail;
    Py_ssize_t nops;
    double est_sum;       /* the sum of op->est over the FIFO's timed ops */
    Py_ssize_t n_unknown; /* the FIFO's ops of untimed texts */
    unsigned long long next_op_id;
    PyObject *connect_fut;
    PyObject *connect_timer;
    /* The connect future once completed, held until the first statement: a task
       cancelled as the connect completed hands it back (_future_abandoned). */
    PyObject *connect_fut_done;
    char *secret;     /* password, scrubbed from every message */
    PyObject *stmts;  /* dict: sql -> statement capsule, in LRU order */
    Py_ssize_t stmt_cache_size;
    unsigned long stmt_counter;
    unsigned long stmt_tag; /* makes statement names distinct per connection */
    double command_timeout; /* <= 0: none */
    double cancel_grace;    /* seconds a cancelled statement may take before we give up */
    int json_text;          /* json/jsonb come back as str (connect(decode_json=False)) */
    int utf8_id;            /* libpq's number for the UTF8 encoding */
    /* AGENTDB_SQL_SESSION | AGENTDB_SQL_PREPARE of the statements queued since the
       session was last reset: whether the next user needs a reset. */
    unsigned session_flags;
    unsigned long long lease; /* bumped each time its pool takes it back */
    PyObject *transactions;   /* list: the stack of open Transaction objects */
    PGcancel *cancel;
    int cancel_pending;    /* cancel requests not yet delivered: hold the next statement */
    PyObject *cancel_timer; /* bounds them */
    /* pool link (pool.c) */
    PyObject *pool;
    int pool_state;
    int pool_closing;  /* the pool itself is closing it */
    int pool_solo;     /* shared state, but running a session-changing shortcut alone */
    int pool_reserved; /* shared, draining for a waiter: no new shortcuts */
    double created_at, last_used;
    int pool_user_reset; /* the pool's user reset (create_pool(reset=callable)) state */
    PyObject *listeners;       /* dict: channel -> list of callbacks (LISTEN/NOTIFY) */
    PyObject *notice_handlers; /* list of callbacks for NOTICE/WARNING messages */
    PyObject *weakreflist;
};

/* asyncio glue (loop.c). */
double agentdb_monotonic(void);
PyObject *agentdb_future_new(agentdb_state *st, PyObject *loop, PyObject *owner);
/* Complete a future unless it is already done. 0 => ok, -1 => error set. */
int agentdb_future_set_result(agentdb_state *st, PyObject *fut, PyObject *value);
int agentdb_future_set_exception(agentdb_state *st, PyObject *fut, PyObject *exc);
int agentdb_future_done(agentdb_state *st, PyObject *fut);
/* loop.call_later(delay, cb, arg) -> TimerHandle (new ref) or NULL. */
PyObject *agentdb_call_later(agentdb_state *st, PyObject *loop, double delay, PyObject *cb,
                             PyObject *arg);
/* handle.cancel() and Py_CLEAR(*handle); errors are swallowed. */
void agentdb_timer_cancel(agentdb_state *st, PyObject **handle);
/* The running loop (new ref) or NULL with RuntimeError set. */
PyObject *agentdb_running_loop(agentdb_state *st);
/* A callable object that calls fn(target, arg) while target is alive; the loop
   holds it instead of the target so a dropped connection can be collected.
   Its target pointer is borrowed and cleared by agentdb_iohandle_detach. */
typedef void (*agentdb_io_fn)(PyObject *target, PyObject *arg);
PyObject *agentdb_iohandle_new(agentdb_state *st, PyObject *target, agentdb_io_fn fn);
void agentdb_iohandle_detach(PyObject *handle);

/* Connection API used by pool.c. */
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

/* What the pool knows of one SQL text run through its shortcuts. */
typedef struct {
    PyObject_HEAD
    unsigned flags;     /* agentdb_sql_classify() of the text */
    unsigned long runs; /* completed runs measured */
    double mean;        /* their moving average duration, seconds (0 before the first) */
} agentdb_StmtProfile;

/* Pool API used by connection.c (pool.c). */
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

PyObject *agentdb_parse_dsn_py(PyObject *module, PyObject *dsn);

#endif /* AGENTDB_CONNECTION_H */
