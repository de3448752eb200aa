/* conn_int.h: what the files of a connection share (connection.c, pipeline.c,
   results.c, rows.c, stmtcache.c, conn_io.c, cancel.c, connect.c, notify.c, session.c,
   copystream.c, prepared.c, dsn.c): the prepared statement type and the functions each
   file offers the others.  Nothing outside those files includes it. */
#ifndef AGENTDB_CONN_INT_H
#define AGENTDB_CONN_INT_H

#include "codecs.h"
#include "connection.h"
#include "args.h"
#include "errors.h"
#include "record.h"
#include "sqlclass.h"

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
    int uncached;    /* AGENTDB_MODE_UNCACHED: no named statement, no cache */
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
    /* COPY_IN: bytes to send (the chunk in hand, when streamed); COPY_OUT: list of the
       received chunks, or the callable each chunk is given to (streamed) */
    PyObject *copy_data;
    Py_ssize_t copy_off; /* COPY_IN: bytes sent so far */
    /* COPY_IN streamed (_copy_feed): more chunks will come; copy_fed, the future of the
       chunk in hand, completes when it has all gone into libpq's buffer */
    int copy_more;
    PyObject *copy_fed;
    char *copy_abort; /* COPY_IN streamed: end it with this error (PQputCopyEnd) */
    int held; /* a COPY whose statement and payload are not known yet (_copy_hold):
                 it keeps its place in the FIFO and nothing after it is sent */
    /* Its arguments are being encoded, which runs Python code (op_send_exec): what that
       code does (closing the connection, cancelling this statement) must not free it;
       `orphaned`: the connection closed meanwhile (it was completed, and unlinked). */
    int encoding, orphaned;
    agentdb_op_done_fn done;
    /* Sent ahead of the statement in the same phase (one sync): BEGIN, for a PEP 249
       adapter.  If it fails the statement does not run.  `prefix_pending`: the results
       being read are still the prefix's; `begin_ok`: it succeeded. */
    PyObject *prefix;
    int prefix_pending, begin_ok;
    long long rowcount; /* AGENTDB_MODE_DBAPI: the command tag's row count, or -1 */
    int ddl;            /* AGENTDB_MODE_DBAPI: CREATE/ALTER/DROP of a non-temporary object */
};

struct agentdb_Connection {
    PyObject_HEAD
    agentdb_state *st; /* cached: the type may be a Python subclass */
    PGconn *pg;
    int state;     /* CONN_* */
    int state_before_close;
    agentdb_fdwatch watch; /* libpq's socket under the loop (a dup of it: loop.h) */
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
    agentdb_typeopts types; /* json as text or not, the extension types' OIDs (codecs.h) */
    int utf8_id;            /* libpq's number for the UTF8 encoding */
    /* AGENTDB_SQL_SESSION | AGENTDB_SQL_PREPARE of the statements queued since the
       session was last reset: whether the next user needs a reset. */
    unsigned session_flags;
    unsigned long long lease; /* bumped each time its pool takes it back */
    unsigned long long session_resets; /* session resets queued: the session's epoch */
    PyObject *transactions;   /* list: the stack of open Transaction objects */
    PGcancel *cancel;
    int cancel_pending;    /* cancel requests not yet delivered: hold the next statement */
    PyObject *cancel_timer; /* bounds them */
    agentdb_PoolLink link; /* the pool's, kept here for it (pool.h) */
    PyObject *listeners;       /* dict: channel -> list of callbacks (LISTEN/NOTIFY) */
    PyObject *notice_handlers; /* list of callbacks for NOTICE/WARNING messages */
    PyObject *termination_listeners; /* list: add_termination_listener()'s, or NULL */
    PyObject *weakreflist;
};

/* A prepared statement of a connection's cache (stmtcache.c), in a capsule. */
typedef struct {
    char name[32];
    int nparams;
    Oid *ptypes;
    int ncols;
    int binary;                  /* results requested in binary format */
    agentdb_decode_fn *decoders; /* one per column, for `binary` */
    unsigned types_gen;          /* the connection's types.gen when they were picked */
    PyObject *desc;              /* RecordDesc, or NULL without columns */
} agentdb_Stmt;

#define AGENTDB_STMT_CAPSULE "agentdb.stmt"

static inline agentdb_Stmt *agentdb_stmt_get(PyObject *capsule)
{
    return (agentdb_Stmt *)PyCapsule_GetPointer(capsule, AGENTDB_STMT_CAPSULE);
}

static inline agentdb_state *agentdb_conn_st(agentdb_Connection *c)
{
    return c->st;
}

static inline int agentdb_op_in_flight(const agentdb_Op *op)
{
    return op->st == OPST_PHASE1 || op->st == OPST_PHASE2 || op->st == OPST_SIMPLE;
}

/* connection.c */
void agentdb_conn_close_lost(agentdb_Connection *c, const char *msg);
void agentdb_conn_lost(agentdb_Connection *c, const char *context);
int agentdb_conn_check_loop(agentdb_Connection *c, agentdb_state *st);

/* pipeline.c */
void agentdb_op_free(agentdb_state *st, agentdb_Op *op);
void agentdb_op_deliver(agentdb_Connection *c, agentdb_Op *op);
void agentdb_conn_uncount(agentdb_Connection *c, agentdb_Op *op);
int agentdb_conn_flush(agentdb_Connection *c);
void agentdb_op_pop_deliver(agentdb_Connection *c);
int agentdb_op_set_error(agentdb_Op *op, PyObject *exc);
void agentdb_op_take_error(agentdb_Op *op);
const char *agentdb_sql_utf8(PyObject *sql);
void agentdb_op_ask_chunks(agentdb_Connection *c, agentdb_Op *op);
void agentdb_op_drop(agentdb_Connection *c, agentdb_Op *op);
void agentdb_conn_on_kick(PyObject *self, PyObject *arg);
void agentdb_conn_process(agentdb_Connection *c);
agentdb_Op *agentdb_op_new(agentdb_Connection *c, int kind, int mode, PyObject *sql,
                           PyObject *args);
int agentdb_conn_check_ready(agentdb_Connection *c);
int agentdb_conn_enqueue(agentdb_Connection *c, agentdb_Op *op, double timeout);
/* Queue an OPK_QUERY whose `prefix` (a str: BEGIN, checked by the caller) goes ahead of
   it in the same phase; 0 => queued, -1 => error set. */
int agentdb_conn_submit_prefixed(agentdb_Connection *c, PyObject *fut, int mode, PyObject *sql,
                                 PyObject *args, double timeout, PyObject *prefix);

/* results.c */
void agentdb_conn_read_results(agentdb_Connection *c);

/* rows.c */
int agentdb_pick_decoders(const PGresult *res, int ncols, int allow_binary,
                          const agentdb_typeopts *types, int *binary, agentdb_decode_fn **out);
int agentdb_op_take_rows(agentdb_Connection *c, agentdb_Op *op, const PGresult *res,
                         int chunk);

/* prepared.c */
PyObject *agentdb_stmt_description(PyObject *capsule);
PyObject *agentdb_Connection__describe(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                       PyObject *kwnames);
PyObject *agentdb_Connection__query_uncached(PyObject *self, PyObject *const *args,
                                             Py_ssize_t nargs, PyObject *kwnames);

/* stmtcache.c */
void agentdb_stmt_free(PyObject *capsule);
PyObject *agentdb_stmt_from_describe(agentdb_state *st, const char *name, const PGresult *res,
                                     const agentdb_typeopts *types);
int agentdb_stmt_lookup(agentdb_Connection *c, agentdb_Op *op);
int agentdb_stmt_is_stale(agentdb_state *st, PyObject *exc);
void agentdb_stmt_evict(agentdb_Connection *c);
void agentdb_stmt_forget_all(agentdb_Connection *c);
void agentdb_stmt_pooler_hint(PyObject *exc);
PyObject *agentdb_Connection_clear_statement_cache(PyObject *self, PyObject *Py_UNUSED(ig));
PyObject *agentdb_Connection__statement_count(PyObject *self, PyObject *Py_UNUSED(ig));

/* conn_io.c */
void agentdb_conn_unwatch(agentdb_Connection *c);
int agentdb_conn_watch_read(agentdb_Connection *c, int sock);
int agentdb_conn_watch_write(agentdb_Connection *c, int sock, int on);
void agentdb_conn_on_read(PyObject *self, PyObject *arg);
void agentdb_conn_on_write(PyObject *self, PyObject *arg);
int agentdb_fd_readable(int fd);
void agentdb_conn_on_watchdog(PyObject *self, PyObject *arg);

/* cancel.c */
void agentdb_conn_request_cancel(agentdb_Connection *c);
void agentdb_conn_cancel_abandoned(agentdb_Connection *c);
void agentdb_conn_abandon(agentdb_Connection *c, agentdb_Op *op);
void agentdb_conn_on_timer(PyObject *self, PyObject *arg);

/* connect.c */
void agentdb_conn_connect_step(agentdb_Connection *c);
PyObject *agentdb_Connection__connect(PyObject *self, PyObject *args);

/* notify.c */
void agentdb_conn_drain_notifies(agentdb_Connection *c);
void agentdb_notice_receive(void *arg, const PGresult *res);
PyObject *agentdb_Connection__listeners(PyObject *self, PyObject *Py_UNUSED(ig));
PyObject *agentdb_Connection__notice_handlers(PyObject *self, PyObject *Py_UNUSED(ig));
PyObject *agentdb_Connection__termination_listeners(PyObject *self, PyObject *Py_UNUSED(ig));
void agentdb_conn_fire_termination(agentdb_Connection *c);

/* session.c */
PyObject *agentdb_Connection_is_in_transaction(PyObject *self, PyObject *Py_UNUSED(ignored));
PyObject *agentdb_Connection_get_transaction_status(PyObject *self, PyObject *Py_UNUSED(ig));
PyObject *agentdb_Connection__reset_session(PyObject *self, PyObject *const *args,
                                            Py_ssize_t nargs, PyObject *kwnames);

/* copystream.c */
void agentdb_copy_in_continue(agentdb_Connection *c, agentdb_Op *op);
/* A COPY TO STDOUT's chunk for op: kept, or given to its callable. 0 => ok, -1 => error. */
int agentdb_copy_out_chunk(agentdb_Op *op, const char *buf, int n);
PyObject *agentdb_Connection__copy_feed(PyObject *self, PyObject *const *args,
                                        Py_ssize_t nargs);
PyObject *agentdb_Connection__copy_binary(PyObject *self, PyObject *const *args,
                                          Py_ssize_t nargs);
PyObject *agentdb_Connection__copy(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames);
PyObject *agentdb_Connection__copy_hold(PyObject *self, PyObject *const *args,
                                        Py_ssize_t nargs, PyObject *kwnames);
PyObject *agentdb_Connection__copy_send(PyObject *self, PyObject *const *args,
                                        Py_ssize_t nargs);

#endif /* AGENTDB_CONN_INT_H */
