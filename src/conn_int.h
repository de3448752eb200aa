/* conn_int.h: what the files of a connection share (connection.c, pipeline.c,
   results.c, rows.c, stmtcache.c, conn_io.c, cancel.c, connect.c, notify.c, session.c,
   copystream.c, dsn.c): the prepared statement type and the functions each file offers
   the others.  Nothing outside those files includes it. */
#ifndef AGENTDB_CONN_INT_H
#define AGENTDB_CONN_INT_H

#include "connection.h"
#include "errors.h"
#include "record.h"
#include "sqlclass.h"

/* A prepared statement of a connection's cache (stmtcache.c), in a capsule. */
typedef struct {
    char name[32];
    int nparams;
    Oid *ptypes;
    int ncols;
    int binary;                  /* results requested in binary format */
    agentdb_decode_fn *decoders; /* one per column, for `binary` */
    int json_text;               /* the connection's json_text when they were picked */
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
int agentdb_parse_timeout_kw(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                             double *timeout);

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

/* results.c */
void agentdb_conn_read_results(agentdb_Connection *c);

/* rows.c */
int agentdb_pick_decoders(const PGresult *res, int ncols, int allow_binary, int json_text,
                          int *binary, agentdb_decode_fn **out);
int agentdb_op_take_rows(agentdb_Connection *c, agentdb_Op *op, const PGresult *res,
                         int chunk);

/* stmtcache.c */
void agentdb_stmt_free(PyObject *capsule);
PyObject *agentdb_stmt_from_describe(agentdb_state *st, const char *name, const PGresult *res,
                                     int json_text);
int agentdb_stmt_lookup(agentdb_Connection *c, agentdb_Op *op);
int agentdb_stmt_is_stale(agentdb_state *st, PyObject *exc);
void agentdb_stmt_evict(agentdb_Connection *c);
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

/* session.c */
PyObject *agentdb_Connection_is_in_transaction(PyObject *self, PyObject *Py_UNUSED(ignored));
PyObject *agentdb_Connection_get_transaction_status(PyObject *self, PyObject *Py_UNUSED(ig));
PyObject *agentdb_Connection__reset_session(PyObject *self, PyObject *const *args,
                                            Py_ssize_t nargs, PyObject *kwnames);

/* copystream.c */
void agentdb_copy_in_continue(agentdb_Connection *c, agentdb_Op *op);
PyObject *agentdb_Connection__copy(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames);
PyObject *agentdb_Connection__copy_hold(PyObject *self, PyObject *const *args,
                                        Py_ssize_t nargs, PyObject *kwnames);
PyObject *agentdb_Connection__copy_send(PyObject *self, PyObject *const *args,
                                        Py_ssize_t nargs);

#endif /* AGENTDB_CONN_INT_H */
