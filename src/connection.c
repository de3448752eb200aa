/* connection.c: Connection, one nonblocking PGconn and its FIFO of statements. */
#include "connection.h"

#include <stdint.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "errors.h"
#include "structmember.h"
#include "record.h"
#include "sqlclass.h"

/* Rows per chunk in chunked rows mode (libpq 17+): large enough that libpq's cost per
   result vanishes, small enough that decoding starts while the server is still sending. */
#define AGENTDB_CHUNK_ROWS 256

/* ------------------------------------------------------------------------ */
/* Prepared statements (cached per connection, keyed by SQL text). */

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

static const char STMT_CAPSULE[] = "agentdb.stmt";

static void stmt_free(PyObject *capsule)
{
    agentdb_Stmt *s = PyCapsule_GetPointer(capsule, STMT_CAPSULE);
    if (s == NULL) {
        PyErr_Clear();
        return;
    }
    PyMem_Free(s->ptypes);
    PyMem_Free(s->decoders);
    Py_XDECREF(s->desc);
    PyMem_Free(s);
}

static inline agentdb_Stmt *stmt_get(PyObject *capsule)
{
    return (agentdb_Stmt *)PyCapsule_GetPointer(capsule, STMT_CAPSULE);
}

/* Fill the decoders of a statement or a result from its column types.
   Binary is used only when every column has a binary decoder (libpq asks for
   one format for all columns).  0 => ok, -1 => error set. */
static int pick_decoders(const PGresult *res, int ncols, int allow_binary, int json_text,
                         int *binary, agentdb_decode_fn **out)
{
    agentdb_decode_fn *d = PyMem_Calloc(ncols > 0 ? ncols : 1, sizeof(*d));
    if (d == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int bin = allow_binary;
    for (int i = 0; bin && i < ncols; i++) {
        if ((d[i] = agentdb_decoder_opts(PQftype(res, i), 1, json_text)) == NULL) {
            bin = 0;
        }
    }
    if (!bin) {
        for (int i = 0; i < ncols; i++) {
            d[i] = agentdb_decoder_opts(PQftype(res, i), 0, json_text);
        }
    }
    *binary = bin;
    *out = d;
    return 0;
}

/* A statement capsule from a PQdescribePrepared result. NULL => error set. */
static PyObject *stmt_from_describe(agentdb_state *st, const char *name, const PGresult *res,
                                    int json_text)
{
    agentdb_Stmt *s = PyMem_Calloc(1, sizeof(*s));
    if (s == NULL) {
        return PyErr_NoMemory();
    }
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->nparams = PQnparams(res);
    s->ptypes = PyMem_Calloc(s->nparams > 0 ? s->nparams : 1, sizeof(Oid));
    if (s->ptypes == NULL) {
        PyMem_Free(s);
        return PyErr_NoMemory();
    }
    for (int i = 0; i < s->nparams; i++) {
        s->ptypes[i] = PQparamtype(res, i);
    }
    s->ncols = PQnfields(res);
    PyObject *capsule = PyCapsule_New(s, STMT_CAPSULE, stmt_free);
    if (capsule == NULL) {
        PyMem_Free(s->ptypes);
        PyMem_Free(s);
        return NULL;
    }
    s->json_text = json_text;
    if (pick_decoders(res, s->ncols, 1, json_text, &s->binary, &s->decoders) < 0) {
        Py_DECREF(capsule);
        return NULL;
    }
    if (s->ncols > 0 && (s->desc = agentdb_recorddesc_from_result(st, res)) == NULL) {
        Py_DECREF(capsule);
        return NULL;
    }
    return capsule;
}

/* ------------------------------------------------------------------------ */
/* Helpers */

static inline agentdb_state *conn_state(agentdb_Connection *c)
{
    return c->st;
}

int agentdb_connection_check(agentdb_state *st, PyObject *obj)
{
    return PyObject_TypeCheck(obj, st->ConnectionType);
}

int agentdb_connection_alive(agentdb_Connection *c)
{
    return c->state == CONN_READY && c->pg != NULL && PQstatus(c->pg) == CONNECTION_OK;
}

int agentdb_connection_txn_idle(agentdb_Connection *c)
{
    return c->pg != NULL && PQtransactionStatus(c->pg) == PQTRANS_IDLE;
}

int agentdb_connection_txn_expected(agentdb_Connection *c)
{
    if (c->pg == NULL || c->state != CONN_READY) {
        return PQTRANS_IDLE;
    }
    /* libpq says ACTIVE while statements are in flight: start from the status as of
       the last sync, then apply what the statements not yet synced do. */
    int t = PQtransactionStatus(c->pg);
    if (t == PQTRANS_ACTIVE) {
        t = c->txn_status;
    }
    for (agentdb_Op *op = c->head; op != NULL; op = op->next) {
        if (op->st == OPST_FAILED) {
            continue; /* never reaches the server */
        }
        if (op->sqlflags & AGENTDB_SQL_BEGIN) {
            t = PQTRANS_INTRANS;
        }
        else if (op->sqlflags & AGENTDB_SQL_END) {
            t = PQTRANS_IDLE;
        }
    }
    return t;
}

/* The loop polls a dup() of libpq's socket that we own, never libpq's own
   descriptor.  libpq closes its socket whenever the connection breaks, and
   uvloop closes its poll handle one iteration after remove_reader(): if the
   number were reused by a new connection's socket in between, the deferred
   close would silently unregister the new one.  Our duplicate keeps the number
   taken until after the loop has let go of it (closed on the next iteration). */
static int conn_watch_fd(agentdb_Connection *c, int sock)
{
    if (c->watch_fd >= 0 && c->watch_src == sock) {
        return c->watch_fd;
    }
    int fd = fcntl(sock, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    c->watch_fd = fd;
    c->watch_src = sock;
    return fd;
}

static void conn_release_watch_fd(agentdb_Connection *c)
{
    int fd = c->watch_fd;
    if (fd < 0) {
        return;
    }
    c->watch_fd = c->watch_src = -1;
    PyObject *r = NULL;
    if (c->loop != NULL) {
        r = PyObject_CallMethod(c->loop, "call_soon", "Oi", conn_state(c)->os_close, fd);
    }
    if (r == NULL) {
        PyErr_Clear();
        close(fd); /* no running loop: nothing can reuse it under a poll handle */
    }
    Py_XDECREF(r);
}

static void conn_unwatch(agentdb_Connection *c)
{
    if (c->pid != 0 && c->pid != (long)getpid()) {
        /* A forked child: its loop shares the parent's epoll instance, and
           unregistering here would unregister the parent's socket. Forget. */
        c->reader_fd = c->writer_fd = -1;
        c->watch_fd = c->watch_src = -1;
        return;
    }
    PyObject *exc = PyErr_GetRaisedException();
    if (c->loop != NULL && c->reader_fd >= 0) {
        PyObject *r = PyObject_CallMethod(c->loop, "remove_reader", "i", c->reader_fd);
        if (r == NULL) {
            PyErr_Clear();
        }
        Py_XDECREF(r);
    }
    if (c->loop != NULL && c->writer_fd >= 0) {
        PyObject *r = PyObject_CallMethod(c->loop, "remove_writer", "i", c->writer_fd);
        if (r == NULL) {
            PyErr_Clear();
        }
        Py_XDECREF(r);
    }
    c->reader_fd = c->writer_fd = -1;
    conn_release_watch_fd(c);
    PyErr_SetRaisedException(exc);
}

static int conn_watch_read(agentdb_Connection *c, int sock)
{
    int fd = conn_watch_fd(c, sock);
    if (fd < 0) {
        return -1;
    }
    if (c->reader_fd == fd) {
        return 0;
    }
    PyObject *r = PyObject_CallMethod(c->loop, "add_reader", "iO", fd, c->cb_read);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    c->reader_fd = fd;
    return 0;
}

static int conn_watch_write(agentdb_Connection *c, int sock, int on)
{
    if (on && c->writer_fd < 0) {
        int fd = conn_watch_fd(c, sock);
        if (fd < 0) {
            return -1;
        }
        PyObject *r = PyObject_CallMethod(c->loop, "add_writer", "iO", fd, c->cb_write);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
        c->writer_fd = fd;
    }
    else if (!on && c->writer_fd >= 0) {
        PyObject *r = PyObject_CallMethod(c->loop, "remove_writer", "i", c->writer_fd);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
        c->writer_fd = -1;
    }
    return 0;
}

static void op_free(agentdb_state *st, agentdb_Op *op)
{
    agentdb_timer_cancel(st, &op->timer);
    Py_XDECREF(op->fut);
    Py_XDECREF(op->sql);
    Py_XDECREF(op->args);
    Py_XDECREF(op->stmt);
    Py_XDECREF(op->result);
    Py_XDECREF(op->rows);
    Py_XDECREF(op->error);
    Py_XDECREF(op->status);
    Py_XDECREF(op->copy_data);
    Py_XDECREF(op->profile);
    PyMem_Free(op);
}

/* Deliver an op's outcome: its future, or its internal hook. */
static void op_deliver(agentdb_Connection *c, agentdb_Op *op)
{
    agentdb_state *st = conn_state(c);
    PyObject *exc = PyErr_GetRaisedException();
    if (op->done != NULL) {
        op->done(c, op, op->error ? NULL : (op->result ? op->result : Py_None));
    }
    else if (op->fut != NULL && !op->abandoned) {
        int rc = op->error ? agentdb_future_set_exception(st, op->fut, op->error)
                           : agentdb_future_set_result(st, op->fut,
                                                       op->result ? op->result : Py_None);
        if (rc < 0) {
            PyErr_WriteUnraisable(op->fut);
        }
    }
    PyErr_SetRaisedException(exc);
}

static PyObject *timeout_error(double timeout)
{
    return PyObject_CallFunction(PyExc_TimeoutError, "s",
                                 timeout > 0 ? "the statement timed out" : "timed out");
}

/* ------------------------------------------------------------------------ */
/* Closing */

/* `op` left the FIFO: its expected duration no longer counts. */
static void conn_uncount(agentdb_Connection *c, agentdb_Op *op)
{
    if (op->est == AGENTDB_EST_UNKNOWN) {
        c->n_unknown--;
    }
    else {
        c->est_sum -= op->est;
    }
    if (c->nops == 0 || c->est_sum < 0) {
        c->est_sum = 0; /* nothing left, or rounding */
    }
}

static void conn_fail_ops(agentdb_Connection *c, PyObject *exc)
{
    agentdb_state *st = conn_state(c);
    while (c->head != NULL) {
        agentdb_Op *op = c->head;
        c->head = op->next;
        c->nops--;
        if (op->error == NULL) {
            Py_INCREF(exc);
            op->error = exc;
        }
        op_deliver(c, op);
        if (op->encoding) {
            op->orphaned = 1; /* op_send_exec frees it once its encoder returns */
        }
        else {
            op_free(st, op);
        }
    }
    c->tail = NULL;
    c->nops = 0;
    c->est_sum = 0;
    c->n_unknown = 0;
}

static void conn_release_pg(agentdb_Connection *c)
{
    if (c->cancel != NULL) {
        PQfreeCancel(c->cancel);
        c->cancel = NULL;
    }
    if (c->pg != NULL) {
        /* A forked child must not send Terminate on its parent's session. */
        if (c->pid == (long)getpid()) {
            PQfinish(c->pg);
        }
        c->pg = NULL;
        conn_state(c)->live_pgconns--;
    }
}

/* Close now, completing every pending statement and the connect future with
   `exc` (a new InterfaceError when NULL).  Idempotent. */
static int op_in_flight(const agentdb_Op *op);
static void conn_request_cancel(agentdb_Connection *c);

void agentdb_connection_close_now(agentdb_Connection *c, PyObject *exc)
{
    agentdb_state *st = conn_state(c);
    if (c->state == CONN_CLOSED) {
        return;
    }
    PyObject *saved = PyErr_GetRaisedException();
    c->state_before_close = c->state;
    c->state = CONN_CLOSED;
    Py_XINCREF(exc);
    if (exc == NULL) {
        exc = agentdb_error_new(st->InterfaceError, "the connection is closed", "08003");
        if (exc == NULL) {
            PyErr_Clear();
            exc = Py_NewRef(Py_None);
        }
    }
    if (c->state_before_close == CONN_READY && c->head != NULL && op_in_flight(c->head) &&
        c->pg != NULL && c->pid == (long)getpid()) {
        /* A statement still runs on the server: cancel it there, or it keeps
           its locks and CPU until it ends (the server notices a closed socket
           only when it next writes). Fire and forget, off the loop thread. */
        conn_request_cancel(c);
    }
    conn_unwatch(c);
    agentdb_timer_cancel(st, &c->connect_timer);
    agentdb_timer_cancel(st, &c->cancel_timer);
    agentdb_timer_cancel(st, &c->watchdog);
    c->cancel_pending = 0;
    conn_release_pg(c);
    c->simple_mode = 0;
    c->copy_in = 0;
    c->copy_out_discard = 0;
    if (c->connect_fut != NULL) {
        PyObject *fut = c->connect_fut;
        c->connect_fut = NULL;
        if (agentdb_future_set_exception(st, fut, exc) < 0) {
            PyErr_WriteUnraisable(fut);
        }
        Py_DECREF(fut);
    }
    Py_CLEAR(c->connect_fut_done);
    conn_fail_ops(c, exc);
    Py_DECREF(exc);
    agentdb_iohandle_detach(c->io);
    if (c->pool != NULL) {
        agentdb_pool_conn_closed(c->pool, c);
    }
    PyErr_SetRaisedException(saved);
}

/* The server or the network failed us: everything pending gets a
   ConnectionLostError carrying libpq's message. */
/* Close with a ConnectionLostError of our own message (no libpq text). */
static void conn_close_lost(agentdb_Connection *c, const char *msg)
{
    PyObject *exc = agentdb_error_new(conn_state(c)->ConnectionLostError, msg, "08006");
    if (exc == NULL) {
        PyErr_Clear();
    }
    agentdb_connection_close_now(c, exc);
    Py_XDECREF(exc);
}

static void conn_lost(agentdb_Connection *c, const char *context)
{
    agentdb_state *st = conn_state(c);
    PyObject *saved = PyErr_GetRaisedException();
    PyObject *exc = NULL;
    if (c->pg != NULL) {
        exc = agentdb_error_from_conn(st, c->pg, st->ConnectionLostError, context, c->secret);
    }
    if (exc == NULL) {
        PyErr_Clear();
        exc = agentdb_error_new(st->ConnectionLostError, context, "08006");
        if (exc == NULL) {
            PyErr_Clear();
        }
    }
    agentdb_connection_close_now(c, exc);
    Py_XDECREF(exc);
    PyErr_SetRaisedException(saved);
}

/* ------------------------------------------------------------------------ */
/* Sending.
   The connection stays in libpq's pipeline mode: every statement is its
   commands plus a sync, so statements queued by several tasks travel
   together, and an error aborts only its own statement (outside an explicit
   transaction).  A statement whose SQL is not in the cache first sends
   Parse + Describe + Sync and nothing after it goes out until that answer is
   back, because its parameters are encoded for the described types.  A
   multi-statement execute() (simple protocol) leaves pipeline mode once the
   pipeline is empty and enters it again after. */

static int conn_flush(agentdb_Connection *c)
{
    /* libpq's nonblocking contract: after queueing, PQflush until it returns 0;
       while it returns 1, wait for write readiness and keep reading, since the
       server may be blocked sending to us (the reader stays registered). */
    int r = PQflush(c->pg);
    if (r < 0) {
        conn_lost(c, "could not send to the server");
        return -1;
    }
    if (conn_watch_write(c, PQsocket(c->pg), r == 1) < 0) {
        PyErr_WriteUnraisable((PyObject *)c);
    }
    return 0;
}

static int op_in_flight(const agentdb_Op *op)
{
    return op->st == OPST_PHASE1 || op->st == OPST_PHASE2 || op->st == OPST_SIMPLE;
}

static void conn_kick(agentdb_Connection *c);
static void conn_settle_heads(agentdb_Connection *c);
static void conn_process(agentdb_Connection *c);
static void conn_cancel_abandoned(agentdb_Connection *c);

/* Unlink the head op, deliver its outcome and free it. */
static void op_pop_deliver(agentdb_Connection *c)
{
    agentdb_state *st = conn_state(c);
    agentdb_Op *op = c->head;
    c->head = op->next;
    if (c->head == NULL) {
        c->tail = NULL;
    }
    else if (c->head->st == OPST_PHASE2 && c->head->started_at == 0) {
        c->head->started_at = agentdb_monotonic(); /* the server turns to it now */
    }
    c->nops--;
    conn_uncount(c, op);
    op_deliver(c, op);
    op_free(st, op);
}

static int op_set_error(agentdb_Op *op, PyObject *exc)
{
    if (op->error == NULL) {
        op->error = exc;
    }
    else {
        Py_DECREF(exc);
    }
    return 0;
}

/* Record the pending Python exception as the op's error. */
static void op_take_error(agentdb_Op *op)
{
    PyObject *exc = PyErr_GetRaisedException();
    if (exc != NULL) {
        op_set_error(op, exc);
    }
}

static const char *sql_utf8(PyObject *sql)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(sql, &n);
    if (s != NULL && (Py_ssize_t)strlen(s) != n) {
        PyErr_SetString(PyExc_ValueError, "the SQL text contains a NUL character");
        return NULL;
    }
    return s;
}

static int pipeline_sync(PGconn *pg)
{
#ifdef LIBPQ_HAS_SEND_PIPELINE_SYNC
    return PQsendPipelineSync(pg); /* libpq >= 17: no flush; we flush once per batch */
#else
    return PQpipelineSync(pg); /* flushes each time (libpq <= 16) */
#endif
}

/* libpq refused to queue a command: the connection is unusable. */
static int send_failed(agentdb_Connection *c)
{
    conn_lost(c, "could not queue a statement");
    return -1;
}

/* Look the op's SQL up in the statement cache (LRU: a hit moves to the end).
   1 => op->stmt set, 0 => not cached. */
static int op_lookup_stmt(agentdb_Connection *c, agentdb_Op *op)
{
    if (c->stmt_cache_size <= 0) {
        return 0;
    }
    PyObject *capsule = PyDict_GetItemWithError(c->stmts, op->sql); /* borrowed */
    if (capsule == NULL) {
        PyErr_Clear();
        return 0;
    }
    Py_INCREF(capsule);
    Py_XSETREF(op->stmt, capsule);
    if (PyDict_DelItem(c->stmts, op->sql) < 0 ||
        PyDict_SetItem(c->stmts, op->sql, capsule) < 0) {
        PyErr_Clear();
    }
    return 1;
}

/* Phase 1: Parse + Describe + Sync.  0 => sent, -1 => the connection died. */
static int op_send_describe(agentdb_Connection *c, agentdb_Op *op)
{
    char name[32] = "";
    const char *sql = sql_utf8(op->sql);
    if (sql == NULL) {
        op_take_error(op);
        op->st = OPST_FAILED;
        return 0;
    }
    /* Without a cache (PgBouncer) only the unnamed statement is used. */
    if (c->stmt_cache_size > 0) {
        snprintf(name, sizeof(name), "__adb_%lx_%lu", c->stmt_tag, ++c->stmt_counter);
    }
    Py_XSETREF(op->status, PyUnicode_FromString(name)); /* the name, until described */
    if (op->status == NULL) {
        op_take_error(op);
        op->st = OPST_FAILED;
        return 0;
    }
    if (!PQsendPrepare(c->pg, name, sql, 0, NULL) || !PQsendDescribePrepared(c->pg, name) ||
        !pipeline_sync(c->pg)) {
        return send_failed(c);
    }
    op->st = OPST_PHASE1;
    op->step = STEP_PREPARE;
    op->phase_cmds = 2;
    return 0;
}

/* Phase 2: the statement itself + Sync.  0 => sent (or failed before sending:
   op->st == OPST_FAILED), -1 => the connection died. */
/* Rows in chunks as they arrive (libpq 17+), so that decoding overlaps the server's
   sending instead of waiting for the whole result.  libpq accepts it only while the op's
   Execute is its current command and none of its rows has been parsed yet: right after
   the send when nothing is ahead of it, else once the previous statement's results are read
   (conn_read_results asks again on every pass until rows come; then it is too late and
   the result comes whole).  Only for fetch()-style ops: a single row gains nothing. */
static void op_ask_chunks(agentdb_Connection *c, agentdb_Op *op)
{
#ifdef LIBPQ_HAS_CHUNK_MODE
    /* Only at the head of the FIFO: libpq applies the mode to its current command, which
       is this op's Execute only when every statement sent before it is finished. */
    if (op == c->head && !op->chunk_tried && op->step == STEP_EXEC &&
        op->st != OPST_SIMPLE && op->kind == OPK_QUERY &&
        (op->mode == AGENTDB_MODE_ALL || op->mode == AGENTDB_MODE_RAW)) {
        op->chunk_tried = PQsetChunkedRowsMode(c->pg, AGENTDB_CHUNK_ROWS);
    }
#else
    (void)c;
    (void)op;
#endif
}

/* Bookkeeping once an op's statement is on its way. */
static void op_sent(agentdb_Connection *c, agentdb_Op *op)
{
    if (op == c->head) {
        op->started_at = agentdb_monotonic(); /* nothing ahead: the server starts it now */
        op->sent_as_head = 1;
    }
    if (op->sqlflags & AGENTDB_SQL_PREPARE) {
        /* DEALLOCATE ALL or DISCARD ALL may drop our statements: statements sent after
           it prepare their own again. */
        PyDict_Clear(c->stmts);
    }
}

/* Encode the arguments of an OPK_QUERY (one set) or OPK_MANY (a set per row: every row
   before any is sent, so a bad row sends nothing) into ps[0..*n).  The encoders run
   Python code (a value's __index__, __str__, a json hook), which may close the
   connection or cancel this very statement: the op is marked meanwhile, so that neither
   frees it (conn_fail_ops, conn_abandon).  0 => encoded; -1 => failed (the op's error
   is set; nothing to free). */
static int op_encode(agentdb_Connection *c, agentdb_Op *op, agentdb_Stmt *s,
                     agentdb_params **out, Py_ssize_t *n)
{
    agentdb_state *st = conn_state(c);
    int many = op->kind == OPK_MANY;
    *n = many ? PyTuple_GET_SIZE(op->args) : 1; /* a tuple: nothing can shrink it */
    agentdb_params *ps = PyMem_Calloc(*n > 0 ? *n : 1, sizeof(*ps));
    if (ps == NULL) {
        PyErr_NoMemory();
        op_take_error(op);
        return -1;
    }
    Py_ssize_t done = 0;
    op->encoding = 1;
    for (; done < *n; done++) {
        PyObject *args = many ? PyTuple_GET_ITEM(op->args, done) : op->args;
        if (agentdb_params_encode(st, &ps[done], args, s ? s->ptypes : NULL,
                                  s ? s->nparams : 0) < 0) {
            op_take_error(op);
            break;
        }
    }
    op->encoding = 0;
    if (done != *n) {
        for (Py_ssize_t i = 0; i < done; i++) {
            agentdb_params_free(&ps[i]);
        }
        PyMem_Free(ps);
        return -1;
    }
    *out = ps;
    return 0;
}

static void params_free_all(agentdb_params *ps, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        agentdb_params_free(&ps[i]);
    }
    PyMem_Free(ps);
}

/* Unlink `op` from the FIFO (wherever it is) and free it. */
static void op_drop(agentdb_Connection *c, agentdb_Op *op)
{
    agentdb_Op **pp = &c->head, *prev = NULL;
    while (*pp != NULL && *pp != op) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp == op) {
        *pp = op->next;
        if (c->tail == op) {
            c->tail = prev;
        }
        c->nops--;
        conn_uncount(c, op);
    }
    op_free(conn_state(c), op);
}

/* Send the op's statement + Sync.  0 => sent (or failed before sending: op->st ==
   OPST_FAILED); 1 => the op is gone (cancelled while its arguments were encoded);
   -1 => the connection is closed. */
static int op_send_exec(agentdb_Connection *c, agentdb_Op *op)
{
    agentdb_state *st = conn_state(c);
    agentdb_Stmt *s = op->stmt ? stmt_get(op->stmt) : NULL;
    int ok = 1, ncmds = 1;
    agentdb_params *ps = NULL;
    Py_ssize_t n = 0;
    const char *sql = sql_utf8(op->sql);
    if (sql == NULL) {
        op_take_error(op);
        op->st = OPST_FAILED;
        return 0;
    }
    if (op->kind == OPK_QUERY || op->kind == OPK_MANY) {
        int rc = op_encode(c, op, s, &ps, &n);
        if (op->orphaned) { /* the connection closed under the encoder */
            if (rc == 0) {
                params_free_all(ps, n);
            }
            op_free(st, op);
            return -1;
        }
        if (op->abandoned) { /* its awaiter gave up meanwhile: never sent */
            if (rc == 0) {
                params_free_all(ps, n);
            }
            op_drop(c, op);
            return 1;
        }
        if (rc < 0) {
            op->st = OPST_FAILED;
            return 0;
        }
    }
    PGconn *pg = c->pg; /* read after the encoders ran */
    if (op->kind == OPK_PLAIN) {
        ok = PQsendQueryParams(pg, sql, 0, NULL, NULL, NULL, NULL, 0);
    }
    else if (op->kind == OPK_BATCH) {
        for (int i = 0; ok && i < op->nbatch; i++) {
            ok = PQsendQueryParams(pg, op->batch[i], 0, NULL, NULL, NULL, NULL, 0);
        }
        ncmds = op->nbatch;
    }
    else if (op->kind == OPK_QUERY) {
        agentdb_params *p = &ps[0];
        ok = s ? PQsendQueryPrepared(pg, s->name, p->n, p->values, p->lengths, p->formats,
                                     s->binary)
               : PQsendQueryParams(pg, sql, p->n, p->types, p->values, p->lengths, p->formats,
                                   0);
        params_free_all(ps, n);
    }
    else { /* OPK_MANY: every row, one sync: one implicit transaction (atomic) */
        for (Py_ssize_t i = 0; ok && i < n; i++) {
            ok = PQsendQueryPrepared(pg, s->name, ps[i].n, ps[i].values, ps[i].lengths,
                                     ps[i].formats, 0);
        }
        params_free_all(ps, n);
        ncmds = (int)n;
    }
    if (!ok || !pipeline_sync(pg)) {
        return send_failed(c);
    }
    op->st = OPST_PHASE2;
    op->step = STEP_EXEC;
    op->phase_cmds = ncmds;
    op_sent(c, op);
    op_ask_chunks(c, op);
    return 0;
}

/* A multi-statement execute(): the simple protocol, outside pipeline mode. */
static int op_send_simple(agentdb_Connection *c, agentdb_Op *op)
{
    const char *sql = sql_utf8(op->sql);
    if (sql == NULL) {
        op_take_error(op);
        op->st = OPST_FAILED;
        return 0;
    }
    if (!PQexitPipelineMode(c->pg)) {
        return send_failed(c);
    }
    c->simple_mode = 1;
    if (!PQsendQuery(c->pg, sql)) {
        return send_failed(c);
    }
    op->st = OPST_SIMPLE;
    op->step = STEP_EXEC;
    op_sent(c, op);
    return 0;
}

static void set_cork(agentdb_Connection *c, int on)
{
    /* Statements queued in one loop iteration leave in as few segments as
       possible (libpq <= 16 flushes at every sync).  Only TCP has a cork. */
    int fd = PQsocket(c->pg);
    if (fd >= 0) {
        (void)setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
    }
}

/* Send every queued statement that may go now, in order. */
static void conn_kick(agentdb_Connection *c)
{
    if (c->state != CONN_READY || c->cancel_pending || c->simple_mode ||
        agentdb_connection_draining(c)) {
        return; /* a cancel may still hit whatever would be sent now */
    }
    int sent = 0, corked = 0, before_in_flight = 0, r = 0;
restart:
    before_in_flight = 0;
    for (agentdb_Op *op = c->head; op != NULL; op = op->next) {
        if (op->st == OPST_PHASE2 || op->st == OPST_FAILED) {
            before_in_flight |= op->st == OPST_PHASE2;
            continue;
        }
        if (op->st != OPST_QUEUED && op->st != OPST_READY2) {
            break; /* a describe in flight is a barrier */
        }
        if (op->held) {
            break; /* statements after a held COPY wait for it */
        }
        if (op->abandoned) {
            continue; /* finished by conn_settle_heads */
        }
        if (op->st == OPST_QUEUED && op->kind == OPK_SIMPLE) {
            if (before_in_flight || op != c->head) {
                break; /* waits for the pipeline to drain */
            }
            r = op_send_simple(c, op);
            sent++;
            break;
        }
        if (sent == 1 && !corked) {
            set_cork(c, 1);
            corked = 1;
        }
        if (op->st == OPST_QUEUED && op->kind != OPK_PLAIN &&
            (op->kind == OPK_MANY || c->stmt_cache_size > 0) && !op_lookup_stmt(c, op)) {
            r = op_send_describe(c, op);
            sent++;
            break;
        }
        r = op_send_exec(c, op);
        if (r < 0) {
            return;
        }
        if (r == 1) {
            goto restart; /* it is gone: go over the FIFO again */
        }
        sent++;
        before_in_flight |= op->st == OPST_PHASE2;
    }
    if (r < 0) {
        return;
    }
    if (corked) {
        set_cork(c, 0);
    }
    if (sent) {
        conn_flush(c);
    }
}

static void conn_on_kick(PyObject *self, PyObject *arg)
{
    (void)arg;
    agentdb_Connection *c = (agentdb_Connection *)self;
    c->kick_scheduled = 0;
    conn_process(c);
}

/* Finish the ops at the head that have nothing in flight (failed before
   sending, abandoned between describe and execute) and send what may go. */
static void conn_settle_heads(agentdb_Connection *c)
{
    for (;;) {
        while (c->state == CONN_READY && c->head != NULL &&
               (c->head->st == OPST_FAILED ||
                (c->head->st == OPST_READY2 && c->head->abandoned))) {
            op_pop_deliver(c);
        }
        if (c->state != CONN_READY) {
            return;
        }
        conn_kick(c);
        if (c->state != CONN_READY) {
            return;
        }
        if (c->head == NULL || !(c->head->st == OPST_FAILED ||
                                 (c->head->st == OPST_READY2 && c->head->abandoned))) {
            break;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Receiving */


static PyObject *decode_row(agentdb_state *st, const PGresult *res, int row, int ncols,
                            PyObject *desc, agentdb_decode_fn *dec, int only_col)
{
    if (only_col >= 0) {
        if (PQgetisnull(res, row, only_col)) {
            Py_RETURN_NONE;
        }
        return dec[only_col](st, PQgetvalue(res, row, only_col),
                             PQgetlength(res, row, only_col), PQftype(res, only_col));
    }
    PyObject *rec = agentdb_record_new(st, desc, ncols);
    if (rec == NULL) {
        return NULL;
    }
    for (int i = 0; i < ncols; i++) {
        PyObject *v;
        if (PQgetisnull(res, row, i)) {
            v = Py_NewRef(Py_None);
        }
        else {
            v = dec[i](st, PQgetvalue(res, row, i), PQgetlength(res, row, i), PQftype(res, i));
            if (v == NULL) {
                for (int j = i; j < ncols; j++) {
                    AGENTDB_RECORD_SET(rec, j, Py_NewRef(Py_None));
                }
                Py_DECREF(rec);
                return NULL;
            }
        }
        AGENTDB_RECORD_SET(rec, i, v);
    }
    agentdb_record_done(st, rec);
    return rec;
}

/* Appends the rows of `res` to the list *rows (made when NULL: the whole result, or the
   first chunk of one). */
static int decode_rows_into(agentdb_state *st, const PGresult *res, int ncols, PyObject *desc,
                            agentdb_decode_fn *dec, PyObject **rows)
{
    int ntuples = PQntuples(res);
    int fresh = *rows == NULL;
    if (fresh && (*rows = PyList_New(ntuples)) == NULL) {
        return -1;
    }
    /* Every object made here stays alive until the rows are returned, so collections
       triggered by these allocations would only traverse them to find no garbage
       (half the CPU of a 10k-row fetch with json values).  Collect at most once, after:
       the allocation count still stands when the collector is enabled again. */
    int gc_was_enabled = ntuples > 1 ? PyGC_Disable() : 0;
    int rc = 0;
    for (int r = 0; r < ntuples && rc == 0; r++) {
        PyObject *rec = decode_row(st, res, r, ncols, desc, dec, -1);
        if (rec == NULL) {
            rc = -1;
        }
        else if (fresh) {
            PyList_SET_ITEM(*rows, r, rec);
        }
        else {
            rc = PyList_Append(*rows, rec);
            Py_DECREF(rec);
        }
    }
    if (gc_was_enabled) {
        PyGC_Enable();
    }
    if (rc < 0 && fresh) {
        Py_CLEAR(*rows); /* a new list with unset slots must not escape */
    }
    return rc;
}

/* Turn a PGRES_TUPLES_OK (or, in chunked rows mode, PGRES_TUPLES_CHUNK) result into
   the op's result, by mode.  Chunks only come for AGENTDB_MODE_ALL/RAW: their rows
   gather in op->rows until the final, empty PGRES_TUPLES_OK. */
static int op_take_rows(agentdb_Connection *c, agentdb_Op *op, const PGresult *res, int chunk)
{
    agentdb_state *st = conn_state(c);
    int ncols = PQnfields(res), ntuples = PQntuples(res);
    agentdb_Stmt *s = op->stmt ? stmt_get(op->stmt) : NULL;
    PyObject *desc = NULL, *out = NULL;
    agentdb_decode_fn *dec = NULL, *own_dec = NULL;
    int binary = PQbinaryTuples(res);

    if (s != NULL && s->ncols == ncols && s->binary == binary && s->json_text == c->json_text &&
        (ncols == 0 || s->desc)) {
        desc = Py_XNewRef(s->desc);
        dec = s->decoders;
    }
    else {
        int bin;
        if (pick_decoders(res, ncols, binary, c->json_text, &bin, &own_dec) < 0) {
            return -1;
        }
        if (bin != binary) {
            /* Binary rows of a type we cannot decode: cannot happen when we
               asked for binary only with every decoder present. */
            PyMem_Free(own_dec);
            PyErr_SetString(st->InterfaceError, "binary result of an unsupported type");
            return -1;
        }
        dec = own_dec;
        if (op->mode != AGENTDB_MODE_VAL && ncols > 0 &&
            (desc = agentdb_recorddesc_from_result(st, res)) == NULL) {
            goto error;
        }
    }

    switch (op->mode) {
    case AGENTDB_MODE_VAL:
        if (op->column >= ncols) {
            PyErr_Format(st->InterfaceError, "column %d does not exist (the result has %d)",
                         op->column, ncols);
            goto error;
        }
        out = ntuples > 0 ? decode_row(st, res, 0, ncols, desc, dec, op->column)
                          : Py_NewRef(Py_None);
        break;
    case AGENTDB_MODE_ROW:
        out = ntuples > 0 && ncols > 0 ? decode_row(st, res, 0, ncols, desc, dec, -1)
                                       : Py_NewRef(Py_None);
        break;
    case AGENTDB_MODE_ALL:
    case AGENTDB_MODE_RAW: {
        if (decode_rows_into(st, res, ncols, desc, dec, &op->rows) < 0) {
            goto error;
        }
        if (chunk) {
            Py_XDECREF(desc);
            PyMem_Free(own_dec);
            return 0; /* more rows to come */
        }
        out = op->rows;
        op->rows = NULL;
        if (op->mode == AGENTDB_MODE_RAW) {
            agentdb_RecordDesc *d = (agentdb_RecordDesc *)desc;
            PyObject *t = Py_BuildValue("(NOO)", out, d ? d->names : Py_None,
                                        d ? d->types : Py_None);
            out = t;
        }
        break;
    }
    default:
        out = NULL;
        break;
    }
    if (out == NULL && PyErr_Occurred()) {
        goto error;
    }
    Py_XSETREF(op->result, out);
    Py_XDECREF(desc);
    PyMem_Free(own_dec);
    return 0;
error:
    Py_XDECREF(desc);
    PyMem_Free(own_dec);
    return -1;
}

/* Stream the op's COPY FROM STDIN payload; on a full buffer, wait for write
   readiness (conn_on_write resumes here).  Ends the COPY when all is sent. */
static void conn_copy_in_continue(agentdb_Connection *c, agentdb_Op *op)
{
    const char *buf = PyBytes_AS_STRING(op->copy_data);
    Py_ssize_t len = PyBytes_GET_SIZE(op->copy_data);
    while (op->copy_off < len) {
        Py_ssize_t chunk = len - op->copy_off > 65536 ? 65536 : len - op->copy_off;
        int r = PQputCopyData(c->pg, buf + op->copy_off, (int)chunk);
        if (r == 0) {
            conn_flush(c); /* full: wait for write readiness */
            if (conn_watch_write(c, PQsocket(c->pg), 1) < 0) {
                PyErr_WriteUnraisable((PyObject *)c);
            }
            return;
        }
        if (r < 0) {
            conn_lost(c, "COPY failed");
            return;
        }
        op->copy_off += chunk;
    }
    int r = PQputCopyEnd(c->pg, NULL);
    if (r == 0) {
        conn_flush(c);
        return; /* retried on write readiness */
    }
    if (r < 0) {
        conn_lost(c, "COPY failed");
        return;
    }
    c->copy_in = 0;
    conn_flush(c);
}

/* One PGresult for the head op. */
static void op_take_result(agentdb_Connection *c, agentdb_Op *op, PGresult *res)
{
    agentdb_state *st = conn_state(c);
    ExecStatusType status = PQresultStatus(res);
    switch (status) {
#ifdef LIBPQ_HAS_CHUNK_MODE
    case PGRES_TUPLES_CHUNK:
        op->chunk_tried = 1;
        if (op->step == STEP_EXEC && !op->abandoned && op->error == NULL &&
            op->kind == OPK_QUERY &&
            (op->mode == AGENTDB_MODE_ALL || op->mode == AGENTDB_MODE_RAW) &&
            op_take_rows(c, op, res, 1) < 0) {
            op_take_error(op);
        }
        break;
#endif
    case PGRES_TUPLES_OK:
        op->chunk_tried = 1; /* too late to ask (or asked and done) */
        if (op->step == STEP_EXEC && !op->abandoned && op->kind == OPK_QUERY &&
            op->mode != AGENTDB_MODE_STATUS && op->mode != AGENTDB_MODE_NONE &&
            op->error == NULL) {
            if (op_take_rows(c, op, res, 0) < 0) {
                op_take_error(op);
            }
        }
        /* fall through */
    case PGRES_COMMAND_OK:
    case PGRES_EMPTY_QUERY:
        if (op->step == STEP_DESCRIBE && status == PGRES_COMMAND_OK) {
            PyObject *capsule =
                stmt_from_describe(st, PyUnicode_AsUTF8(op->status), res, c->json_text);
            if (capsule == NULL) {
                op_take_error(op);
            }
            else {
                Py_XSETREF(op->stmt, capsule);
            }
        }
        else if (op->step == STEP_EXEC && op->kind != OPK_MANY) {
            Py_XSETREF(op->status, PyUnicode_FromString(PQcmdStatus(res)));
            if (op->status == NULL) {
                op_take_error(op);
            }
        }
        break;
    case PGRES_PIPELINE_SYNC:
    case PGRES_PIPELINE_ABORTED:
        break;
    case PGRES_COPY_IN:
        if (op->copy_mode == COPY_IN && !op->abandoned) {
            c->copy_in = 1;
            conn_copy_in_continue(c, op);
            break;
        }
        PQputCopyEnd(c->pg, "agentdb: use copy_records_to_table() or copy_to_table()");
        op_set_error(op, agentdb_error_new(
                             st->NotSupportedError,
                             "COPY FROM STDIN needs copy_records_to_table() or copy_to_table()",
                             NULL));
        conn_flush(c);
        break;
    case PGRES_COPY_OUT:
        c->copy_out_discard = 1; /* read (and kept by copy_from_*) in conn_process */
        if (op->copy_mode != COPY_OUT) {
            op_set_error(op, agentdb_error_new(
                                 st->NotSupportedError,
                                 "COPY TO STDOUT needs copy_from_query() or copy_from_table()",
                                 NULL));
        }
        break;
    default: {
        PyObject *exc = agentdb_error_from_result(st, res);
        if (exc == NULL) {
            op_take_error(op);
        }
        else {
            op_set_error(op, exc);
        }
        break;
    }
    }
}

static int is_stale_statement_error(agentdb_state *st, PyObject *exc)
{
    (void)st;
    PyObject *code = PyObject_GetAttrString(exc, "sqlstate");
    if (code == NULL) {
        PyErr_Clear();
        return 0;
    }
    int stale = 0;
    if (PyUnicode_Check(code)) {
        const char *s = PyUnicode_AsUTF8(code);
        if (s != NULL && strcmp(s, "26000") == 0) {
            stale = 1; /* prepared statement does not exist (DISCARD ALL, a pooler) */
        }
        else if (s != NULL && strcmp(s, "0A000") == 0) {
            PyObject *msg = PyObject_Str(exc);
            const char *m = msg ? PyUnicode_AsUTF8(msg) : NULL;
            stale = m != NULL && strstr(m, "cached plan must not change result type") != NULL;
            Py_XDECREF(msg);
        }
    }
    PyErr_Clear();
    Py_DECREF(code);
    return stale;
}

/* Evict the least recently used statements beyond the cache size, closing
   them on the server with an internal DEALLOCATE queued at the tail. */
static void conn_evict_statements(agentdb_Connection *c)
{
    while (PyDict_GET_SIZE(c->stmts) > c->stmt_cache_size) {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        if (!PyDict_Next(c->stmts, &pos, &key, &value)) {
            break;
        }
        agentdb_Stmt *s = stmt_get(value);
        char sql[64];
        snprintf(sql, sizeof(sql), "DEALLOCATE %s", s ? s->name : "ALL");
        Py_INCREF(key);
        if (PyDict_DelItem(c->stmts, key) < 0) {
            PyErr_Clear();
        }
        Py_DECREF(key);
        if (agentdb_connection_internal(c, sql, 0, NULL, 0) < 0) {
            PyErr_Clear();
        }
    }
}

/* The op's final result, by mode, once its last result has been read. */
static void op_finalize(agentdb_Op *op)
{
    if (op->error != NULL) {
        return;
    }
    if (op->copy_mode == COPY_OUT && op->copy_data != NULL) {
        PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
        PyObject *data = empty ? _PyBytes_Join(empty, op->copy_data) : NULL;
        Py_XDECREF(empty);
        if (data == NULL) {
            op_take_error(op);
        }
        Py_XSETREF(op->result, data);
        return;
    }
    if (op->mode == AGENTDB_MODE_STATUS || op->mode == AGENTDB_MODE_NONE) {
        Py_XSETREF(op->result, op->mode == AGENTDB_MODE_STATUS && op->status
                                   ? Py_NewRef(op->status)
                                   : Py_NewRef(Py_None));
    }
    else if (op->mode == AGENTDB_MODE_RAW && op->result != NULL) {
        /* (rows, names, types) + (status,) */
        PyObject *t = Py_BuildValue("(OOOO)", PyTuple_GET_ITEM(op->result, 0),
                                    PyTuple_GET_ITEM(op->result, 1),
                                    PyTuple_GET_ITEM(op->result, 2),
                                    op->status ? op->status : Py_None);
        if (t == NULL) {
            op_take_error(op);
        }
        Py_XSETREF(op->result, t);
    }
    else if (op->mode == AGENTDB_MODE_RAW) {
        PyObject *rows = PyList_New(0);
        op->result = rows ? Py_BuildValue("(NOOO)", rows, Py_None, Py_None,
                                          op->status ? op->status : Py_None)
                          : NULL;
        if (op->result == NULL) {
            op_take_error(op);
        }
    }
    else if (op->result == NULL) {
        /* A statement without rows asked for rows. */
        op->result = op->mode == AGENTDB_MODE_ALL ? PyList_New(0) : Py_NewRef(Py_None);
        if (op->result == NULL) {
            op_take_error(op);
        }
    }
}

/* A named prepared statement that "does not exist" (26000) or "already
   exists" (42P05) means a pooler moved us between server connections: say
   what to do about it. */
static void add_pooler_hint(PyObject *exc)
{
    PyObject *code = PyObject_GetAttrString(exc, "sqlstate");
    const char *s = code != NULL && PyUnicode_Check(code) ? PyUnicode_AsUTF8(code) : NULL;
    if (s != NULL && (strcmp(s, "26000") == 0 || strcmp(s, "42P05") == 0)) {
        PyObject *hint = PyUnicode_FromString(
            "agentdb caches prepared statements per connection; a pooler in transaction or "
            "statement mode (PgBouncer) moves clients between server connections. Connect "
            "with statement_cache_size=0 behind such a pooler.");
        if (hint == NULL || PyObject_SetAttrString(exc, "hint", hint) < 0) {
            PyErr_Clear();
        }
        Py_XDECREF(hint);
    }
    PyErr_Clear();
    Py_XDECREF(code);
}

/* A shortcut's statement ran: its duration, from the moment the server turned to it,
   goes to the pool that schedules by it. */
static void op_measure(agentdb_Connection *c, agentdb_Op *op)
{
    if (op->profile == NULL || c->pool == NULL || op->abandoned || op->started_at <= 0) {
        return;
    }
    agentdb_pool_measured(c->pool, op->profile, agentdb_monotonic() - op->started_at,
                          op->sent_as_head);
}

/* The transaction status after `op`'s phase, from the status before it: libpq tells it
   only when nothing else is in flight (it says ACTIVE otherwise), so while statements
   are pipelined it follows from what the statement is and whether it failed. */
static int txn_after(int before, const agentdb_Op *op, int executed)
{
    if (executed && op->error == NULL && (op->sqlflags & AGENTDB_SQL_BEGIN)) {
        return PQTRANS_INTRANS;
    }
    if (executed && (op->sqlflags & AGENTDB_SQL_END)) {
        return PQTRANS_IDLE; /* a failed COMMIT rolls back: the block ends either way */
    }
    if (op->error != NULL && before == PQTRANS_INTRANS) {
        return PQTRANS_INERROR;
    }
    return before;
}

/* The head op's sync arrived: its phase is complete. */
static void op_phase_done(agentdb_Connection *c, agentdb_Op *op)
{
    agentdb_state *st = conn_state(c);
    int t = PQtransactionStatus(c->pg);
    c->txn_status = t != PQTRANS_ACTIVE ? t : txn_after(c->txn_status, op, op->st == OPST_PHASE2);
    if (PQclientEncoding(c->pg) != c->utf8_id) {
        /* set_config('client_encoding', ...) or a function did it: text would no longer
           be UTF-8 both ways.  (SET client_encoding is refused before it is sent.) */
        conn_close_lost(c, "the session's client_encoding is no longer UTF8 (changed by "
                           "set_config() or a function?); agentdb talks UTF-8 with the "
                           "server, so the connection was closed");
        return;
    }
    if (op->st == OPST_PHASE2) {
        op_measure(c, op);
    }
    if (op->st == OPST_PHASE1) {
        if (op->error == NULL && op->stmt != NULL && c->stmt_cache_size > 0) {
            if (PyDict_SetItem(c->stmts, op->sql, op->stmt) < 0) {
                PyErr_Clear();
            }
            conn_evict_statements(c);
        }
        if (op->error != NULL || op->abandoned) {
            op_pop_deliver(c);
            return;
        }
        op->st = OPST_READY2; /* conn_kick sends it next: it is the head */
        return;
    }
    if (op->error != NULL && op->stmt != NULL && !op->retried && !op->abandoned &&
        (op->next == NULL || !op_in_flight(op->next)) &&
        PQtransactionStatus(c->pg) == PQTRANS_IDLE && is_stale_statement_error(st, op->error)) {
        /* The cached plan went stale (schema change, DISCARD ALL): forget the
           cache and, outside a transaction and with nothing sent after it,
           prepare again transparently. */
        PyDict_Clear(c->stmts);
        op->retried = 1;
        Py_CLEAR(op->error);
        Py_CLEAR(op->stmt);
        Py_CLEAR(op->result);
        Py_CLEAR(op->rows);
        op->chunk_tried = 0;
        op->started_at = 0;
        op->sent_as_head = 0;
        op->st = OPST_QUEUED;
        return;
    }
    if (op->error != NULL && op->stmt != NULL && is_stale_statement_error(st, op->error)) {
        PyDict_Clear(c->stmts);
    }
    if (op->error != NULL && c->stmt_cache_size > 0) {
        add_pooler_hint(op->error);
    }
    op_finalize(op);
    op_pop_deliver(c);
}

static inline void result_clear(agentdb_Connection *c, PGresult *res)
{
    if (res != NULL) {
        c->st->live_pgresults--;
        PQclear(res);
    }
}

/* Read and dispatch the results already received, without blocking. */
static void conn_read_results(agentdb_Connection *c)
{
    PGconn *pg = c->pg;
    while (c->state == CONN_READY) {
        agentdb_Op *op = c->head;
        if (op == NULL || !op_in_flight(op)) {
            break;
        }
        if (c->copy_in) {
            break; /* the payload is still going out (conn_on_write) */
        }
        if (c->copy_out_discard) {
            char *buf = NULL;
            int n;
            while ((n = PQgetCopyData(pg, &buf, 1)) > 0) {
                if (op->copy_mode == COPY_OUT && op->copy_data != NULL) {
                    PyObject *chunk = PyBytes_FromStringAndSize(buf, n);
                    if (chunk == NULL || PyList_Append(op->copy_data, chunk) < 0) {
                        op_take_error(op);
                    }
                    Py_XDECREF(chunk);
                }
                PQfreemem(buf);
            }
            if (n == 0) {
                break; /* wait for more */
            }
            c->copy_out_discard = 0;
        }
        op_ask_chunks(c, op);
        if (PQisBusy(pg)) {
            break;
        }
        PGresult *res = PQgetResult(pg);
        if (res != NULL) {
            c->st->live_pgresults++;
        }
        if (op->st == OPST_SIMPLE) {
            if (res == NULL) {
                c->txn_status = PQtransactionStatus(pg);
                c->simple_mode = 0;
                if (!PQenterPipelineMode(pg)) {
                    conn_lost(c, "could not enter pipeline mode");
                    return;
                }
                op_finalize(op);
                op_pop_deliver(c);
                continue;
            }
            op_take_result(c, op, res);
            result_clear(c, res);
            continue;
        }
        if (res == NULL) {
            /* The end of one command's results. */
            if (op->phase_cmds <= 0) {
                break;
            }
            op->phase_cmds--;
            if (op->step == STEP_PREPARE) {
                op->step = STEP_DESCRIBE;
            }
            continue;
        }
        if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
            result_clear(c, res);
            op_phase_done(c, op);
            continue;
        }
        op_take_result(c, op, res);
        result_clear(c, res);
    }
}

/* Everything the connection can do now without blocking: read the results
   libpq holds, finish ops, send what may go; then, when the FIFO is empty,
   tell the pool.  Every path that changes the FIFO ends here.  Reentrant
   calls (a completion hook queueing a statement) just ask the running one to
   go round again: results already buffered by libpq are never left unread
   waiting for a socket event that will not come. */
static void conn_process(agentdb_Connection *c)
{
    if (c->processing) {
        c->process_again = 1;
        return;
    }
    c->processing = 1;
    do {
        c->process_again = 0;
        conn_read_results(c);
        if (c->state != CONN_READY) {
            break;
        }
        agentdb_Op *head = c->head;
        conn_settle_heads(c);
        if (c->state == CONN_READY && c->head != head && c->head != NULL &&
            op_in_flight(c->head) && !c->copy_in && !PQisBusy(c->pg)) {
            c->process_again = 1; /* a result is already here for the new head */
        }
        conn_cancel_abandoned(c);
    } while (c->process_again && c->state == CONN_READY);
    c->processing = 0;
    if (c->state == CONN_READY && c->nops == 0 && c->pool != NULL) {
        agentdb_pool_conn_drained(c->pool, c);
    }
}

/* Deliver NOTIFY messages to the listeners of their channel, each call
   scheduled on the loop (callback(conn, pid, channel, payload)): a listener
   that raises reaches the loop's exception handler, not our read path. */
static void conn_drain_notifies(agentdb_Connection *c)
{
    agentdb_state *st = conn_state(c);
    PGnotify *n;
    while ((n = PQnotifies(c->pg)) != NULL) {
        PyObject *callbacks = NULL;
        if (c->listeners != NULL && PyDict_GET_SIZE(c->listeners) > 0) {
            callbacks = PyDict_GetItemString(c->listeners, n->relname); /* borrowed */
        }
        if (callbacks != NULL && PyList_GET_SIZE(callbacks) > 0) {
            PyObject *cbs = PyList_GetSlice(callbacks, 0, PyList_GET_SIZE(callbacks));
            for (Py_ssize_t i = 0; cbs != NULL && i < PyList_GET_SIZE(cbs); i++) {
                PyObject *h = PyObject_CallMethod(c->loop, "call_soon", "OOiss",
                                                  PyList_GET_ITEM(cbs, i), (PyObject *)c,
                                                  n->be_pid, n->relname, n->extra);
                if (h == NULL) {
                    PyErr_WriteUnraisable((PyObject *)c);
                }
                Py_XDECREF(h);
            }
            Py_XDECREF(cbs);
        }
        PQfreemem(n);
    }
    (void)st;
}

/* ------------------------------------------------------------------------ */
/* Connecting */

static void conn_connect_fail(agentdb_Connection *c, const char *context)
{
    agentdb_state *st = conn_state(c);
    PyObject *exc = agentdb_error_from_conn(st, c->pg, st->OperationalError, context, c->secret);
    if (exc == NULL) {
        PyErr_Clear();
    }
    agentdb_connection_close_now(c, exc);
    Py_XDECREF(exc);
}

/* One step of PQconnectPoll; re-registers for whatever it asks next.  The
   socket can change between steps (one per host tried), and libpq may have
   closed the old one: unregister before polling, register after. */
static void conn_connect_step(agentdb_Connection *c)
{
    agentdb_state *st = conn_state(c);
    conn_unwatch(c);
    PostgresPollingStatusType ps = PQconnectPoll(c->pg);
    int fd = PQsocket(c->pg);
    switch (ps) {
    case PGRES_POLLING_READING:
        if (conn_watch_read(c, fd) < 0) {
            goto py_error;
        }
        return;
    case PGRES_POLLING_WRITING:
        if (conn_watch_write(c, fd, 1) < 0) {
            goto py_error;
        }
        return;
    case PGRES_POLLING_OK:
        break;
    default:
        conn_connect_fail(c, NULL);
        return;
    }
    /* Connected. */
    agentdb_timer_cancel(st, &c->connect_timer);
    if (PQsetnonblocking(c->pg, 1) != 0) {
        conn_connect_fail(c, "could not set nonblocking mode");
        return;
    }
    if (!PQenterPipelineMode(c->pg)) {
        conn_connect_fail(c, "could not enter pipeline mode");
        return;
    }
    c->cancel = PQgetCancel(c->pg);
    c->utf8_id = pg_char_to_encoding("UTF8");
    c->state = CONN_READY;
    c->created_at = c->last_used = agentdb_monotonic();
    /* One reader for the connection's whole life: results, notices, and EOF
       of an idle connection (liveness without a round trip). */
    if (conn_watch_read(c, fd) < 0) {
        goto py_error;
    }
    if (c->connect_fut != NULL) {
        PyObject *fut = c->connect_fut;
        c->connect_fut = NULL;
        Py_XSETREF(c->connect_fut_done, fut); /* our reference moves there */
        if (agentdb_future_set_result(st, fut, (PyObject *)c) < 0) {
            PyErr_WriteUnraisable(fut);
        }
    }
    return;
py_error: {
    PyObject *exc = PyErr_GetRaisedException();
    agentdb_connection_close_now(c, exc);
    Py_XDECREF(exc);
}
}

/* ------------------------------------------------------------------------ */
/* Loop callbacks (through the IOHandle) */

static void conn_on_read(PyObject *self, PyObject *arg)
{
    (void)arg;
    agentdb_Connection *c = (agentdb_Connection *)self;
    if (c->state == CONN_CONNECTING) {
        conn_connect_step(c);
        return;
    }
    if (c->state != CONN_READY) {
        conn_unwatch(c);
        return;
    }
    c->reads++;
    if (c->pool != NULL) {
        agentdb_pool_note_read(c->pool, agentdb_monotonic());
    }
    if (!PQconsumeInput(c->pg)) {
        conn_lost(c, NULL);
        return;
    }
    conn_drain_notifies(c);
    if (c->writer_fd >= 0 && conn_flush(c) < 0) {
        return;
    }
    conn_process(c);
    if (c->state == CONN_READY && PQstatus(c->pg) != CONNECTION_OK) {
        conn_lost(c, NULL);
    }
}

static void conn_on_write(PyObject *self, PyObject *arg)
{
    (void)arg;
    agentdb_Connection *c = (agentdb_Connection *)self;
    if (c->state == CONN_CONNECTING) {
        conn_connect_step(c);
        return;
    }
    if (c->state != CONN_READY) {
        conn_unwatch(c);
        return;
    }
    if (conn_flush(c) == 0 && c->copy_in && c->head != NULL) {
        conn_copy_in_continue(c, c->head);
        conn_process(c);
    }
}

/* A cancel request runs on a thread of its own: PQcancel blocks (libpq < 17)
   and the loop never blocks.  When it is done the thread tells the loop
   (call_soon_threadsafe), and only then may the connection send its next
   statement: a cancel that arrived late would otherwise cancel that one. */
typedef struct {
    PGcancel *cancel;
    PyObject *loop;
    PyObject *done_cb;
} cancel_job;

static void cancel_thread(void *arg)
{
    cancel_job *job = arg;
    char errbuf[256];
    PQcancel(job->cancel, errbuf, sizeof(errbuf));
    PQfreeCancel(job->cancel);
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *r = PyObject_CallMethod(job->loop, "call_soon_threadsafe", "O", job->done_cb);
    if (r == NULL) {
        PyErr_Clear(); /* the loop is closed: nobody waits any more */
    }
    Py_XDECREF(r);
    Py_DECREF(job->loop);
    Py_DECREF(job->done_cb);
    PyMem_RawFree(job);
    PyGILState_Release(gil);
}

static void conn_on_cancel_done(PyObject *self, PyObject *arg)
{
    (void)arg;
    agentdb_Connection *c = (agentdb_Connection *)self;
    if (c->cancel_pending > 0 && --c->cancel_pending == 0) {
        agentdb_timer_cancel(conn_state(c), &c->cancel_timer);
        conn_process(c);
    }
}

static void conn_request_cancel(agentdb_Connection *c)
{
    agentdb_state *st = conn_state(c);
    if (c->pg == NULL) {
        return;
    }
    cancel_job *job = PyMem_RawCalloc(1, sizeof(*job));
    if (job == NULL) {
        return;
    }
    job->cancel = PQgetCancel(c->pg);
    /* The connection's own handle, detached when the connection goes away:
       a cancel that completes after that calls nothing. */
    if (c->cb_cancel_done == NULL) {
        c->cb_cancel_done = agentdb_iohandle_new(st, (PyObject *)c, conn_on_cancel_done);
    }
    job->done_cb = Py_XNewRef(c->cb_cancel_done);
    if (job->cancel == NULL || job->done_cb == NULL) {
        goto fail;
    }
    if (c->cancel_timer == NULL) {
        /* Bounded: a cancel that cannot get through closes the connection. */
        c->cancel_timer = agentdb_call_later(st, c->loop, c->cancel_grace, c->cb_timer,
                                             st->cancel_timer_id);
        if (c->cancel_timer == NULL) {
            PyErr_Clear();
        }
    }
    job->loop = Py_NewRef(c->loop);
    c->cancel_pending++;
    if (PyThread_start_new_thread(cancel_thread, job) == PYTHREAD_INVALID_THREAD_ID) {
        c->cancel_pending--;
        Py_DECREF(job->loop);
        goto fail;
    }
    return;
fail:
    PyErr_Clear();
    if (job->cancel) {
        PQfreeCancel(job->cancel);
    }
    Py_XDECREF(job->done_cb);
    PyMem_RawFree(job);
}

int agentdb_connection_draining(agentdb_Connection *c)
{
    int any = 0;
    for (agentdb_Op *op = c->head; op != NULL; op = op->next) {
        if (op->st == OPST_FAILED) {
            continue; /* finished at the head, never on the server */
        }
        if (!op_in_flight(op)) {
            break; /* queued (or described, not sent): nothing of it runs */
        }
        if (!op->abandoned) {
            return 0;
        }
        any = 1;
    }
    return any;
}

/* Every statement in flight is abandoned: cancel the one the server runs (the head),
   and again as the head advances, one cancel at a time.  A cancel request hits
   whatever the server runs when it arrives; nothing but abandoned statements can be
   running then, since the connection sends nothing new meanwhile (conn_kick) nor
   until the last cancel has been delivered (cancel_pending).  A cancelled statement
   that does not end within cancel_grace closes the connection (conn_on_timer). */
static void conn_cancel_abandoned(agentdb_Connection *c)
{
    agentdb_state *st = conn_state(c);
    agentdb_Op *op = c->head;
    if (c->state != CONN_READY || op == NULL || !op_in_flight(op) || op->cancel_sent ||
        c->cancel_pending > 0 || !agentdb_connection_draining(c)) {
        return;
    }
    op->cancel_sent = 1;
    conn_request_cancel(c);
    agentdb_timer_cancel(st, &op->timer);
    PyObject *id = PyLong_FromUnsignedLongLong(op->id);
    if (id != NULL) {
        op->timer = agentdb_call_later(st, c->loop, c->cancel_grace, c->cb_timer, id);
        Py_DECREF(id);
    }
    if (op->timer == NULL) {
        PyErr_Clear();
    }
}

/* The awaiter of `op` is gone (future cancelled or deadline passed): its result
   is discarded.  A statement not sent is dropped; one the server has is cancelled
   there once every statement in flight is abandoned (conn_cancel_abandoned). */
static void conn_abandon(agentdb_Connection *c, agentdb_Op *op)
{
    agentdb_state *st = conn_state(c);
    op->abandoned = 1;
    agentdb_timer_cancel(st, &op->timer);
    if (c->pool != NULL && op->fut != NULL) {
        agentdb_pool_count_abandoned(c->pool, op_in_flight(op));
    }
    if (op->encoding) {
        return; /* op_send_exec drops it once its encoder returns */
    }
    if (op->st == OPST_QUEUED || (op->st == OPST_FAILED && op != c->head)) {
        op_drop(c, op);
        conn_process(c);
        return;
    }
    if (!op_in_flight(op)) {
        conn_process(c); /* READY2 or FAILED at the head: finished there */
        return;
    }
    conn_cancel_abandoned(c);
}

static int fd_readable(int fd)
{
    if (fd < 0) {
        return -1;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0);
}

/* The watchdog, every second while statements are pending: when the socket
   has data and no read happened since the last tick, the loop stopped telling
   us (seen on uvloop when a server restart closes many sockets at once):
   register the reader again and read now, so no statement waits forever. */
static void conn_on_watchdog(PyObject *self, PyObject *arg)
{
    (void)arg;
    agentdb_Connection *c = (agentdb_Connection *)self;
    agentdb_state *st = conn_state(c);
    Py_CLEAR(c->watchdog);
    if (c->state != CONN_READY || c->nops == 0 || c->pg == NULL) {
        return;
    }
    if (c->reads == c->reads_seen && fd_readable(PQsocket(c->pg)) > 0) {
        c->stalls++;
        if (c->reader_fd >= 0) {
            PyObject *r = PyObject_CallMethod(c->loop, "remove_reader", "i", c->reader_fd);
            Py_XDECREF(r);
            PyErr_Clear();
            c->reader_fd = -1;
        }
        if (conn_watch_read(c, PQsocket(c->pg)) < 0) {
            PyErr_WriteUnraisable(self);
        }
        conn_on_read(self, Py_None);
        if (c->state != CONN_READY) {
            return;
        }
    }
    c->reads_seen = c->reads;
    if (c->nops > 0) {
        c->watchdog = agentdb_call_later(st, c->loop, 1.0, c->cb_watchdog, Py_None);
        if (c->watchdog == NULL) {
            PyErr_Clear();
        }
    }
}

static void conn_on_timer(PyObject *self, PyObject *arg)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    agentdb_state *st = conn_state(c);
    unsigned long long id = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return;
    }
    if (id == (unsigned long long)-1) {
        /* A cancel request did not complete within cancel_grace. */
        Py_CLEAR(c->cancel_timer);
        if (c->cancel_pending > 0) {
            conn_close_lost(c, "a cancel request could not reach the server in time; the "
                               "connection was closed");
        }
        return;
    }
    if (id == 0) {
        /* The connect deadline. */
        Py_CLEAR(c->connect_timer);
        if (c->state == CONN_CONNECTING) {
            PyObject *exc = PyObject_CallFunction(PyExc_TimeoutError, "s",
                                                  "timed out connecting to the server");
            if (exc == NULL) {
                PyErr_Clear();
            }
            agentdb_connection_close_now(c, exc);
            Py_XDECREF(exc);
        }
        return;
    }
    for (agentdb_Op *op = c->head; op != NULL; op = op->next) {
        if (op->id != id) {
            continue;
        }
        Py_CLEAR(op->timer);
        if (op->cancel_sent) {
            /* The server did not act on the cancel in time: the link is dead. */
            conn_close_lost(c, "the server did not answer a cancelled statement in time; "
                               "the connection was closed");
            return;
        }
        if (op->fut != NULL) {
            PyObject *exc = timeout_error(op->timeout);
            if (exc == NULL || agentdb_future_set_exception(st, op->fut, exc) < 0) {
                PyErr_WriteUnraisable(op->fut);
            }
            Py_XDECREF(exc);
        }
        else if (op->done != NULL && op->error == NULL) {
            /* An internal statement (a reset, a ping) that did not finish in time
               failed, whatever its late answer says. */
            op->error = timeout_error(op->timeout);
            if (op->error == NULL) {
                PyErr_Clear();
            }
        }
        conn_abandon(c, op);
        return;
    }
}

/* ------------------------------------------------------------------------ */
/* Queueing */

static agentdb_Op *op_new(agentdb_Connection *c, int kind, int mode, PyObject *sql,
                          PyObject *args)
{
    agentdb_Op *op = PyMem_Calloc(1, sizeof(*op));
    if (op == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    op->id = ++c->next_op_id;
    op->kind = kind;
    op->mode = mode;
    op->sql = Py_NewRef(sql);
    op->args = Py_XNewRef(args);
    return op;
}

static int conn_check_ready(agentdb_Connection *c)
{
    agentdb_state *st = conn_state(c);
    if (c->state != CONN_READY) {
        PyErr_SetString(st->InterfaceError,
                        c->state == CONN_CLOSED ? "the connection is closed"
                                                : "the connection is not open yet");
        return -1;
    }
    return 0;
}

/* Expected durations of statements no pool estimated (seconds): the core's own
   (resets, pings, DEALLOCATE) take about a round trip; a user's statement on a
   connection of its own is never weighed, any value serves. */
#define INTERNAL_STATEMENT_SECONDS 0.0005
#define UNWEIGHED_STATEMENT_SECONDS 0.001

double agentdb_connection_expected_wait(agentdb_Connection *c, double now, double seen,
                                        double unknown_est, double slack)
{
    agentdb_Op *op = c->head;
    double wait = c->est_sum + (double)c->n_unknown * unknown_est;
    if (op != NULL && op->started_at > 0) {
        double est = op->est == AGENTDB_EST_UNKNOWN ? unknown_est : op->est;
        /* The head runs: what remains of it.  Past twice its usual time it is held up
           by something (a lock, a bad plan): expect it to run as long again.  With no
           read at all since it started, nothing says the client was late: now counts. */
        double ran = (seen >= op->started_at ? seen : now) - op->started_at;
        double left = ran > 2 * est + slack ? ran : est - ran;
        wait += (left > 0 ? left : 0) - est;
    }
    return wait > 0 ? wait : 0;
}

/* Append op (taking ownership) and start it if the connection is free. */
static int conn_enqueue(agentdb_Connection *c, agentdb_Op *op, double timeout)
{
    agentdb_state *st = conn_state(c);
    if (timeout <= 0) {
        timeout = c->command_timeout;
    }
    op->timeout = timeout;
    if (timeout > 0) {
        PyObject *id = PyLong_FromUnsignedLongLong(op->id);
        if (id == NULL) {
            op_free(st, op);
            return -1;
        }
        op->timer = agentdb_call_later(st, c->loop, timeout, c->cb_timer, id);
        Py_DECREF(id);
        if (op->timer == NULL) {
            op_free(st, op);
            return -1;
        }
    }
    if (c->tail != NULL) {
        c->tail->next = op;
    }
    else {
        c->head = op;
    }
    c->tail = op;
    c->nops++;
    if (op->est == 0) {
        op->est = op->fut == NULL ? INTERNAL_STATEMENT_SECONDS : UNWEIGHED_STATEMENT_SECONDS;
    }
    if (op->est == AGENTDB_EST_UNKNOWN) {
        c->n_unknown++;
    }
    else {
        c->est_sum += op->est;
    }
    c->last_used = agentdb_monotonic();
    Py_CLEAR(c->connect_fut_done); /* in use: whoever connected it has it */
    if (c->watchdog == NULL && c->cb_watchdog != NULL) {
        c->reads_seen = c->reads;
        c->watchdog = agentdb_call_later(st, c->loop, 1.0, c->cb_watchdog, Py_None);
        if (c->watchdog == NULL) {
            PyErr_Clear();
        }
    }
    if (c->head == op) {
        conn_process(c); /* alone: it leaves now, no batching delay */
    }
    else if (!c->kick_scheduled) {
        /* Others are in flight: send everything queued in this loop iteration
           together, on the next one. */
        PyObject *h = PyObject_CallMethodOneArg(c->loop, st->str_call_soon, c->cb_kick);
        if (h == NULL) {
            return -1;
        }
        Py_DECREF(h);
        c->kick_scheduled = 1;
    }
    return 0;
}

int agentdb_connection_internal(agentdb_Connection *c, const char *sql, double timeout,
                                agentdb_op_done_fn done, unsigned sqlflags)
{
    if (conn_check_ready(c) < 0) {
        return -1;
    }
    PyObject *text = PyUnicode_FromString(sql);
    if (text == NULL) {
        return -1;
    }
    agentdb_Op *op = op_new(c, OPK_PLAIN, AGENTDB_MODE_STATUS, text, NULL);
    Py_DECREF(text);
    if (op == NULL) {
        return -1;
    }
    op->done = done;
    op->sqlflags = sqlflags;
    return conn_enqueue(c, op, timeout);
}

/* 1 when `sql` is certainly one statement that the extended protocol can
   run in a pipeline: no ';' at all (a ';' inside a literal just takes the
   simple protocol, which is also correct) and not COPY (not pipelined). */
static int is_single_statement(PyObject *sql)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(sql, &n);
    if (s == NULL) {
        PyErr_Clear();
        return 0;
    }
    if (memchr(s, ';', (size_t)n) != NULL) {
        return 0;
    }
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') {
        s++;
    }
    return !(strncasecmp(s, "COPY", 4) == 0);
}

int agentdb_sql_refuse(agentdb_state *st, unsigned flags)
{
    if (flags & AGENTDB_SQL_ENCODING) {
        PyErr_SetString(st->InterfaceError,
                        "agentdb talks UTF-8 with the server: client_encoding cannot be "
                        "changed (SET client_encoding / SET NAMES); the server converts text "
                        "to and from the database's encoding");
        return -1;
    }
    return 0;
}

/* The AGENTDB_SQL_* flags of a user's statement; a statement that would change the
   client encoding is refused (-1, error set). */
static int sql_flags(agentdb_state *st, PyObject *sql, PyObject *profile, unsigned *flags)
{
    if (profile != NULL) {
        *flags = ((agentdb_StmtProfile *)profile)->flags;
    }
    else {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(sql, &n);
        if (s == NULL) {
            return -1;
        }
        *flags = agentdb_sql_classify(s, n);
    }
    return agentdb_sql_refuse(st, *flags);
}

int agentdb_connection_submit(agentdb_Connection *c, PyObject *fut, int kind, int mode,
                              PyObject *sql, PyObject *args, int column, double timeout,
                              PyObject *profile, double est)
{
    agentdb_state *st = conn_state(c);
    unsigned flags;
    if (conn_check_ready(c) < 0) {
        return -1;
    }
    if (!PyUnicode_Check(sql)) {
        PyErr_Format(PyExc_TypeError, "the query must be a str, not %.100s",
                     Py_TYPE(sql)->tp_name);
        return -1;
    }
    if (sql_flags(st, sql, profile, &flags) < 0) {
        return -1;
    }
    if (kind == OPK_SIMPLE && (args == NULL || PyTuple_GET_SIZE(args) == 0) &&
        is_single_statement(sql)) {
        kind = OPK_PLAIN; /* pipelined like the rest, extended protocol */
    }
    else if (kind == OPK_SIMPLE && args != NULL && PyTuple_GET_SIZE(args) > 0) {
        kind = OPK_QUERY;
    }
    agentdb_Op *op = op_new(c, kind, mode, sql, args);
    if (op == NULL) {
        return -1;
    }
    op->column = column;
    op->sqlflags = flags;
    op->profile = Py_XNewRef(profile);
    op->est = est;
    c->session_flags |= flags & (AGENTDB_SQL_SESSION | AGENTDB_SQL_PREPARE);
    op->fut = Py_NewRef(fut);
    if (PyObject_SetAttr(fut, st->str_owner, (PyObject *)c) < 0) {
        op_free(st, op);
        return -1;
    }
    return conn_enqueue(c, op, timeout);
}

/* ------------------------------------------------------------------------ */
/* Python methods */

/* Parse (query, *args, timeout=None[, column=0]) of a FASTCALL method. */
static int parse_query_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                            PyObject **sql, PyObject **rest, double *timeout, int *column,
                            int allow_column)
{
    *timeout = 0;
    if (column) {
        *column = 0;
    }
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "a query is required");
        return -1;
    }
    *sql = args[0];
    if (!PyUnicode_Check(*sql)) {
        PyErr_Format(PyExc_TypeError, "the query must be a str, not %.100s",
                     Py_TYPE(*sql)->tp_name);
        return -1;
    }
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        PyObject *val = args[nargs + i];
        if (PyUnicode_CompareWithASCIIString(key, "timeout") == 0) {
            if (val != Py_None) {
                *timeout = PyFloat_AsDouble(val);
                if (*timeout == -1.0 && PyErr_Occurred()) {
                    return -1;
                }
                if (*timeout <= 0) {
                    PyErr_SetString(PyExc_ValueError, "timeout must be a positive number");
                    return -1;
                }
            }
        }
        else if (allow_column && PyUnicode_CompareWithASCIIString(key, "column") == 0) {
            long col = PyLong_AsLong(val);
            if (col == -1 && PyErr_Occurred()) {
                return -1;
            }
            if (col < 0 || col > 1600) {
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

static int conn_check_loop(agentdb_Connection *c, agentdb_state *st)
{
    PyObject *loop = agentdb_running_loop(st);
    if (loop == NULL) {
        return -1;
    }
    int same = loop == c->loop;
    Py_DECREF(loop);
    if (!same) {
        PyErr_SetString(st->InterfaceError,
                        "this connection belongs to another event loop (was it created "
                        "in a different test or thread? create it on the loop that uses it)");
        return -1;
    }
    return 0;
}

static PyObject *conn_query(agentdb_Connection *c, int kind, int mode, PyObject *const *args,
                            Py_ssize_t nargs, PyObject *kwnames, int allow_column)
{
    agentdb_state *st = conn_state(c);
    PyObject *sql = NULL, *rest = NULL, *fut = NULL;
    double timeout;
    int column = 0;
    if (conn_check_ready(c) < 0 || conn_check_loop(c, st) < 0) {
        return NULL;
    }
    if (parse_query_args(args, nargs, kwnames, &sql, &rest, &timeout, &column,
                         allow_column) < 0) {
        return NULL;
    }
    fut = agentdb_future_new(st, c->loop, NULL);
    if (fut == NULL) {
        goto error;
    }
    if (agentdb_connection_submit(c, fut, kind, mode, sql, rest, column, timeout, NULL, 0) < 0) {
        goto error;
    }
    Py_DECREF(rest);
    return fut;
error:
    Py_XDECREF(rest);
    Py_XDECREF(fut);
    return NULL;
}

static PyObject *Connection_execute(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                    PyObject *kwnames)
{
    return conn_query((agentdb_Connection *)self, OPK_SIMPLE, AGENTDB_MODE_STATUS, args, nargs,
                      kwnames, 0);
}

static PyObject *Connection_fetch(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames)
{
    return conn_query((agentdb_Connection *)self, OPK_QUERY, AGENTDB_MODE_ALL, args, nargs,
                      kwnames, 0);
}

static PyObject *Connection_fetchrow(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames)
{
    return conn_query((agentdb_Connection *)self, OPK_QUERY, AGENTDB_MODE_ROW, args, nargs,
                      kwnames, 0);
}

static PyObject *Connection_fetchval(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames)
{
    return conn_query((agentdb_Connection *)self, OPK_QUERY, AGENTDB_MODE_VAL, args, nargs,
                      kwnames, 1);
}

/* The only keyword of the fixed-argument methods: timeout=None (seconds;
   None or <= 0: the connection's command_timeout). 0 => ok, -1 => error set. */
static int parse_timeout_kw(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                            double *timeout)
{
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    *timeout = 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        if (PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, i), "timeout") != 0) {
            PyErr_Format(PyExc_TypeError, "unexpected keyword argument '%U'",
                         PyTuple_GET_ITEM(kwnames, i));
            return -1;
        }
        if (args[nargs + i] != Py_None) {
            *timeout = PyFloat_AsDouble(args[nargs + i]);
            if (*timeout == -1.0 && PyErr_Occurred()) {
                return -1;
            }
        }
    }
    return 0;
}

/* _query(sql, args: tuple, timeout=None) -> (rows, names, types, status):
   one await per statement for the SQLAlchemy adapter. */
static PyObject *Connection__query(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    agentdb_state *st = conn_state(c);
    double timeout = 0;
    if (nargs != 2 || !PyUnicode_Check(args[0]) || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "_query(sql: str, args: tuple, timeout=None)");
        return NULL;
    }
    if (parse_timeout_kw(args, nargs, kwnames, &timeout) < 0) {
        return NULL;
    }
    if (conn_check_ready(c) < 0 || conn_check_loop(c, st) < 0) {
        return NULL;
    }
    PyObject *fut = agentdb_future_new(st, c->loop, NULL);
    if (fut == NULL) {
        return NULL;
    }
    if (agentdb_connection_submit(c, fut, OPK_QUERY, AGENTDB_MODE_RAW, args[0], args[1], 0,
                                  timeout, NULL, 0) < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    return fut;
}

/* _copy(sql, data: bytes | None, timeout=None) -> Future: COPY ... FROM STDIN
   sending `data` (-> command tag), or COPY ... TO STDOUT (data None -> bytes). */
static PyObject *Connection__copy(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    agentdb_state *st = conn_state(c);
    double timeout = 0;
    if (nargs != 2 || !PyUnicode_Check(args[0]) ||
        (args[1] != Py_None && !PyBytes_Check(args[1]))) {
        PyErr_SetString(PyExc_TypeError, "_copy(sql: str, data: bytes | None, timeout=None)");
        return NULL;
    }
    if (parse_timeout_kw(args, nargs, kwnames, &timeout) < 0) {
        return NULL;
    }
    if (conn_check_ready(c) < 0 || conn_check_loop(c, st) < 0) {
        return NULL;
    }
    PyObject *fut = agentdb_future_new(st, c->loop, (PyObject *)c);
    if (fut == NULL) {
        return NULL;
    }
    agentdb_Op *op = op_new(c, OPK_SIMPLE, AGENTDB_MODE_STATUS, args[0], NULL);
    if (op == NULL) {
        Py_DECREF(fut);
        return NULL;
    }
    op->fut = Py_NewRef(fut);
    if (args[1] != Py_None) {
        op->copy_mode = COPY_IN;
        op->copy_data = Py_NewRef(args[1]);
    }
    else {
        op->copy_mode = COPY_OUT;
        op->copy_data = PyList_New(0);
        if (op->copy_data == NULL) {
            op_free(st, op);
            Py_DECREF(fut);
            return NULL;
        }
    }
    if (conn_enqueue(c, op, timeout) < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    return fut;
}

/* _copy_hold(timeout=None) -> Future: a COPY ... FROM STDIN queued now, in the order of
   the call, whose statement and payload come later from _copy_send() (they depend on the
   answer to a statement queued before it).  Statements queued after it wait for it.
   Cancelling the future (or its timeout) drops it. */
static PyObject *Connection__copy_hold(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                       PyObject *kwnames)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    agentdb_state *st = conn_state(c);
    double timeout = 0;
    if (nargs != 0) {
        PyErr_SetString(PyExc_TypeError, "_copy_hold(*, timeout=None)");
        return NULL;
    }
    if (parse_timeout_kw(args, nargs, kwnames, &timeout) < 0) {
        return NULL;
    }
    if (conn_check_ready(c) < 0 || conn_check_loop(c, st) < 0) {
        return NULL;
    }
    PyObject *sql = PyUnicode_FromStringAndSize(NULL, 0);
    if (sql == NULL) {
        return NULL;
    }
    PyObject *fut = agentdb_future_new(st, c->loop, (PyObject *)c);
    if (fut == NULL) {
        Py_DECREF(sql);
        return NULL;
    }
    agentdb_Op *op = op_new(c, OPK_SIMPLE, AGENTDB_MODE_STATUS, sql, NULL);
    Py_DECREF(sql);
    if (op == NULL) {
        Py_DECREF(fut);
        return NULL;
    }
    op->fut = Py_NewRef(fut);
    op->copy_mode = COPY_IN;
    op->held = 1;
    if (conn_enqueue(c, op, timeout) < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    return fut;
}

/* _copy_send(fut, sql: str | None, data: bytes | None) -> None: the statement and payload
   of the COPY _copy_hold() returned `fut` for; it goes out in its turn.  sql None drops
   it unsent (`fut` is then never completed).  Nothing happens when it is gone already
   (cancelled, timed out, the connection closed): `fut` holds that outcome. */
static PyObject *Connection__copy_send(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    if (nargs != 3 || (args[1] != Py_None && !PyUnicode_Check(args[1])) ||
        (args[1] != Py_None && !PyBytes_Check(args[2]))) {
        PyErr_SetString(PyExc_TypeError,
                        "_copy_send(fut, sql: str | None, data: bytes | None)");
        return NULL;
    }
    agentdb_Op *op = c->head;
    while (op != NULL && !(op->fut == args[0] && op->held && !op->abandoned)) {
        op = op->next;
    }
    if (op == NULL) {
        Py_RETURN_NONE;
    }
    if (args[1] == Py_None) {
        op_drop(c, op);
    }
    else {
        Py_SETREF(op->sql, Py_NewRef(args[1]));
        Py_XSETREF(op->copy_data, Py_NewRef(args[2]));
        op->held = 0;
    }
    conn_process(c);
    Py_RETURN_NONE;
}

static PyObject *Connection_executemany(PyObject *self, PyObject *const *args,
                                        Py_ssize_t nargs, PyObject *kwnames)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    agentdb_state *st = conn_state(c);
    double timeout = 0;
    if (nargs != 2 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError,
                        "executemany(query: str, args: iterable of sequences, timeout=None)");
        return NULL;
    }
    if (parse_timeout_kw(args, nargs, kwnames, &timeout) < 0) {
        return NULL;
    }
    if (conn_check_ready(c) < 0 || conn_check_loop(c, st) < 0) {
        return NULL;
    }
    /* A tuple of the rows: no code of the user's can change it while they are encoded. */
    PyObject *rows = PySequence_Tuple(args[1]);
    if (rows == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(rows); i++) {
        PyObject *row = PyTuple_GET_ITEM(rows, i);
        if (!PyTuple_Check(row) && !PyList_Check(row)) {
            PyErr_Format(st->InterfaceError ? st->InterfaceError : PyExc_TypeError,
                         "executemany: row %zd is a %.100s, not a tuple or list", i,
                         Py_TYPE(row)->tp_name);
            Py_DECREF(rows);
            return NULL;
        }
    }
    PyObject *fut = agentdb_future_new(st, c->loop, NULL);
    if (fut == NULL) {
        Py_DECREF(rows);
        return NULL;
    }
    int rc = agentdb_connection_submit(c, fut, OPK_MANY, AGENTDB_MODE_NONE, args[0], rows, 0,
                                       timeout, NULL, 0);
    Py_DECREF(rows);
    if (rc < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    return fut;
}

/* libpq's notice receiver: NOTICE/WARNING messages go to the connection's
   notice handlers (callback(conn, message) scheduled on the loop, message an
   exception instance carrying .sqlstate, .severity, ...), never to stderr.
   Without handlers they are dropped: a flood costs nothing. */
static void notice_receive(void *arg, const PGresult *res)
{
    agentdb_Connection *c = arg;
    if (c->notice_handlers == NULL || PyList_GET_SIZE(c->notice_handlers) == 0 ||
        c->loop == NULL) {
        return;
    }
    PyObject *saved = PyErr_GetRaisedException();
    PyObject *msg = agentdb_error_from_result(conn_state(c), res);
    PyObject *cbs = PyList_GetSlice(c->notice_handlers, 0, PyList_GET_SIZE(c->notice_handlers));
    for (Py_ssize_t i = 0; msg != NULL && cbs != NULL && i < PyList_GET_SIZE(cbs); i++) {
        PyObject *h = PyObject_CallMethod(c->loop, "call_soon", "OOO", PyList_GET_ITEM(cbs, i),
                                          (PyObject *)c, msg);
        Py_XDECREF(h);
        if (h == NULL) {
            break;
        }
    }
    if (PyErr_Occurred()) {
        PyErr_WriteUnraisable((PyObject *)c);
    }
    Py_XDECREF(cbs);
    Py_XDECREF(msg);
    PyErr_SetRaisedException(saved);
}

/* _connect(keywords: list[str], values: list[str], timeout: float | None,
            secret: str | None) -> Future[Connection] */
static PyObject *Connection__connect(PyObject *self, PyObject *args)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    agentdb_state *st = conn_state(c);
    PyObject *keys, *values, *timeout_obj, *secret;
    const char **kw = NULL, **vals = NULL;
    PyObject *fut = NULL;
    if (!PyArg_ParseTuple(args, "O!O!OO:_connect", &PyList_Type, &keys, &PyList_Type, &values,
                          &timeout_obj, &secret)) {
        return NULL;
    }
    if (c->state != CONN_NEW) {
        PyErr_SetString(st->InterfaceError, "the connection was already opened");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(keys);
    if (PyList_GET_SIZE(values) != n) {
        PyErr_SetString(PyExc_ValueError, "keywords and values differ in length");
        return NULL;
    }
    c->loop = agentdb_running_loop(st);
    if (c->loop == NULL) {
        return NULL;
    }
    if (secret != Py_None) {
        const char *s = PyUnicode_AsUTF8(secret);
        if (s == NULL) {
            return NULL;
        }
        c->secret = PyMem_Malloc(strlen(s) + 1);
        if (c->secret == NULL) {
            return PyErr_NoMemory();
        }
        strcpy(c->secret, s);
    }
    kw = PyMem_Calloc(n + 1, sizeof(char *));
    vals = PyMem_Calloc(n + 1, sizeof(char *));
    if (kw == NULL || vals == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        kw[i] = PyUnicode_AsUTF8(PyList_GET_ITEM(keys, i));
        vals[i] = PyUnicode_AsUTF8(PyList_GET_ITEM(values, i));
        if (kw[i] == NULL || vals[i] == NULL) {
            goto error;
        }
    }
    c->io = agentdb_iohandle_new(st, self, conn_on_read);
    PyObject *wio = agentdb_iohandle_new(st, self, conn_on_write);
    PyObject *tio = agentdb_iohandle_new(st, self, conn_on_timer);
    c->cb_read = c->io ? Py_NewRef(c->io) : NULL;
    c->cb_write = wio;
    c->cb_timer = tio;
    c->cb_kick = agentdb_iohandle_new(st, self, conn_on_kick);
    c->cb_watchdog = agentdb_iohandle_new(st, self, conn_on_watchdog);
    if (c->io == NULL || wio == NULL || tio == NULL || c->cb_kick == NULL ||
        c->cb_watchdog == NULL) {
        goto error;
    }
    fut = agentdb_future_new(st, c->loop, self);
    if (fut == NULL) {
        goto error;
    }
    c->pid = (long)getpid();
    c->pg = PQconnectStartParams(kw, vals, 0);
    if (c->pg == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    st->live_pgconns++;
    /* Notices go nowhere by default rather than to stderr. */
    PQsetNoticeReceiver(c->pg, notice_receive, c);
    c->state = CONN_CONNECTING;
    c->connect_fut = Py_NewRef(fut);
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_connect_fail(c, NULL);
        goto done;
    }
    if (timeout_obj != Py_None) {
        double timeout = PyFloat_AsDouble(timeout_obj);
        if (timeout == -1.0 && PyErr_Occurred()) {
            goto error;
        }
        PyObject *zero = PyLong_FromLong(0);
        if (zero == NULL) {
            goto error;
        }
        c->connect_timer = agentdb_call_later(st, c->loop, timeout, c->cb_timer, zero);
        Py_DECREF(zero);
        if (c->connect_timer == NULL) {
            goto error;
        }
    }
    /* The first poll must wait for the socket to be writable. */
    if (conn_watch_write(c, PQsocket(c->pg), 1) < 0) {
        goto error;
    }
done:
    PyMem_Free(kw);
    PyMem_Free(vals);
    return fut;
error:
    PyMem_Free(kw);
    PyMem_Free(vals);
    if (c->pg != NULL) {
        PyObject *exc = PyErr_GetRaisedException();
        agentdb_connection_close_now(c, NULL);
        PyErr_SetRaisedException(exc);
    }
    Py_XDECREF(fut);
    return NULL;
}

static PyObject *Connection_close(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames)
{
    (void)args;
    (void)nargs;
    (void)kwnames; /* timeout= accepted for compatibility: closing never waits */
    agentdb_Connection *c = (agentdb_Connection *)self;
    agentdb_state *st = conn_state(c);
    /* A pooled connection closed by its user leaves the pool (close_now tells it). */
    agentdb_connection_close_now(c, NULL);
    PyObject *loop = agentdb_running_loop(st);
    if (loop == NULL) {
        return NULL;
    }
    PyObject *fut = agentdb_future_new(st, loop, NULL);
    Py_DECREF(loop);
    if (fut == NULL) {
        return NULL;
    }
    if (agentdb_future_set_result(st, fut, Py_None) < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    return fut;
}

static PyObject *Connection_terminate(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    agentdb_connection_close_now((agentdb_Connection *)self, NULL);
    Py_RETURN_NONE;
}

static PyObject *Connection_is_closed(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    return PyBool_FromLong(c->state == CONN_CLOSED ||
                           (c->pg != NULL && PQstatus(c->pg) == CONNECTION_BAD));
}

/* Whether a transaction is open once the statements issued so far have run: a task
   that issued BEGIN is in a transaction from then on, also while BEGIN is in flight. */
static PyObject *Connection_is_in_transaction(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    int t = agentdb_connection_txn_expected((agentdb_Connection *)self);
    return PyBool_FromLong(t == PQTRANS_INTRANS || t == PQTRANS_INERROR);
}

static PyObject *Connection_get_transaction_status(PyObject *self, PyObject *Py_UNUSED(ig))
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    const char *s = "unknown";
    if (c->pg != NULL && c->state == CONN_READY) {
        switch (PQtransactionStatus(c->pg)) {
        case PQTRANS_IDLE: s = "idle"; break;
        case PQTRANS_ACTIVE: s = "active"; break;
        case PQTRANS_INTRANS: s = "intrans"; break;
        case PQTRANS_INERROR: s = "inerror"; break;
        default: break;
        }
    }
    return PyUnicode_FromString(s);
}

static PyObject *Connection_get_server_version(PyObject *self, PyObject *Py_UNUSED(ig))
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    return PyLong_FromLong(c->pg ? PQserverVersion(c->pg) : 0);
}

static PyObject *Connection_get_backend_pid(PyObject *self, PyObject *Py_UNUSED(ig))
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    return PyLong_FromLong(c->pg ? PQbackendPID(c->pg) : 0);
}

static PyObject *Connection_get_parameter_status(PyObject *self, PyObject *name)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    const char *n = PyUnicode_AsUTF8(name);
    if (n == NULL) {
        return NULL;
    }
    const char *v = c->pg ? PQparameterStatus(c->pg, n) : NULL;
    if (v == NULL) {
        Py_RETURN_NONE;
    }
    return PyUnicode_FromString(v);
}

static PyObject *Connection_ssl_in_use(PyObject *self, PyObject *Py_UNUSED(ig))
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    return PyBool_FromLong(c->pg ? PQsslInUse(c->pg) : 0);
}

static PyObject *Connection__pending(PyObject *self, PyObject *Py_UNUSED(ig))
{
    return PyLong_FromSsize_t(((agentdb_Connection *)self)->nops);
}

/* clear_statement_cache(): forget every cached prepared statement (they are
   closed on the server with one DEALLOCATE ALL, queued in order).  For code
   that changed the schema inside a transaction: the next statements are
   prepared again instead of failing with "cached plan must not change result
   type". */
static PyObject *Connection_clear_statement_cache(PyObject *self, PyObject *Py_UNUSED(ig))
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    if (PyDict_GET_SIZE(c->stmts) == 0) {
        Py_RETURN_NONE;
    }
    PyDict_Clear(c->stmts);
    if (c->state == CONN_READY &&
        agentdb_connection_internal(c, "DEALLOCATE ALL", 0, NULL, 0) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* _listeners() -> dict channel -> list of callbacks (created on demand);
   _notice_handlers() -> list.  agentdb/connection.py builds add_listener(),
   add_log_listener() and friends on them. */
static PyObject *Connection__listeners(PyObject *self, PyObject *Py_UNUSED(ig))
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    if (c->listeners == NULL && (c->listeners = PyDict_New()) == NULL) {
        return NULL;
    }
    return Py_NewRef(c->listeners);
}

static PyObject *Connection__notice_handlers(PyObject *self, PyObject *Py_UNUSED(ig))
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    if (c->notice_handlers == NULL && (c->notice_handlers = PyList_New(0)) == NULL) {
        return NULL;
    }
    return Py_NewRef(c->notice_handlers);
}

void agentdb_connection_forget_user(agentdb_Connection *c, int unlisten)
{
    c->lease++;
    if (c->transactions != NULL && PyList_GET_SIZE(c->transactions) > 0 &&
        PyList_SetSlice(c->transactions, 0, PyList_GET_SIZE(c->transactions), NULL) < 0) {
        PyErr_Clear();
    }
    int had = c->listeners != NULL && PyDict_GET_SIZE(c->listeners) > 0;
    if (c->listeners != NULL) {
        PyDict_Clear(c->listeners);
    }
    if (c->notice_handlers != NULL) {
        Py_ssize_t n = PyList_GET_SIZE(c->notice_handlers);
        if (n > 0 && PyList_SetSlice(c->notice_handlers, 0, n, NULL) < 0) {
            PyErr_Clear();
        }
    }
    /* Notifications for callbacks just forgotten would only be read and dropped. */
    if (had && unlisten && c->state == CONN_READY &&
        agentdb_connection_internal(c, "UNLISTEN *", 0, NULL, 0) < 0) {
        PyErr_Clear();
    }
}

/* ------------------------------------------------------------------------ */
/* The session reset */

/* What DISCARD ALL does but DEALLOCATE ALL and DISCARD PLANS (the statement cache
   stays): each its own statement, all under one sync, so the reset is one segment
   of the pipeline, ahead of its next user's statements.  RESET ROLE and RESET
   SESSION AUTHORIZATION are not part of RESET ALL. */
#define SESSION_RESET_STATEMENTS                                                      \
    "CLOSE ALL", "UNLISTEN *", "SELECT pg_advisory_unlock_all()", "RESET ROLE",       \
        "RESET SESSION AUTHORIZATION", "RESET ALL", "DISCARD SEQUENCES", "DISCARD TEMP"
static const char *const SESSION_RESET[] = {SESSION_RESET_STATEMENTS};
/* The same when the user prepared statements of their own (PREPARE): ours go too. */
static const char *const SESSION_RESET_PREPARED[] = {SESSION_RESET_STATEMENTS,
                                                     "DEALLOCATE ALL"};

/* Completion of a reset statement queued by the pool: a session that could not be
   reset must never reach another user. */
static void reset_done(agentdb_Connection *c, agentdb_Op *op, PyObject *result)
{
    if (c->state != CONN_READY) {
        return;
    }
    if (result == NULL) {
        PyObject *msg = PyUnicode_FromFormat(
            "the session could not be reset for its next user (%s: %S); the connection "
            "was closed (statements sent after the reset may have run)",
            op->error ? Py_TYPE(op->error)->tp_name : "error",
            op->error ? op->error : Py_None);
        PyObject *exc = msg ? agentdb_error_new(conn_state(c)->ConnectionLostError,
                                                PyUnicode_AsUTF8(msg), "08006")
                            : NULL;
        if (exc == NULL) {
            PyErr_Clear();
        }
        agentdb_connection_close_now(c, exc);
        Py_XDECREF(exc);
        Py_XDECREF(msg);
    }
}

/* Queue the session reset statements (one op); `fut` (may be NULL) completes after
   them, `done` (may be NULL) is called. 0 => queued, -1 => error set. */
static int queue_session_reset(agentdb_Connection *c, double timeout, agentdb_op_done_fn done,
                               PyObject *fut)
{
    int prepared = (c->session_flags & AGENTDB_SQL_PREPARE) != 0;
    if (conn_check_ready(c) < 0) {
        return -1;
    }
    PyObject *text = PyUnicode_FromString("-- agentdb: session reset");
    if (text == NULL) {
        return -1;
    }
    agentdb_Op *op = op_new(c, OPK_BATCH, AGENTDB_MODE_NONE, text, NULL);
    Py_DECREF(text);
    if (op == NULL) {
        return -1;
    }
    op->batch = prepared ? SESSION_RESET_PREPARED : SESSION_RESET;
    op->nbatch = prepared ? (int)(sizeof(SESSION_RESET_PREPARED) / sizeof(char *))
                          : (int)(sizeof(SESSION_RESET) / sizeof(char *));
    op->sqlflags = prepared ? AGENTDB_SQL_PREPARE : 0; /* empties the cache when sent */
    op->done = done;
    op->fut = Py_XNewRef(fut);
    c->session_flags = 0;
    return conn_enqueue(c, op, timeout);
}

int agentdb_connection_queue_reset(agentdb_Connection *c, int rollback, int session,
                                   double timeout)
{
    if (rollback &&
        agentdb_connection_internal(c, "ROLLBACK", timeout, reset_done, AGENTDB_SQL_END) < 0) {
        return -1;
    }
    if (session && queue_session_reset(c, timeout, reset_done, NULL) < 0) {
        return -1;
    }
    return 0;
}

/* _reset_session(timeout=None) -> Future[None]: the session reset statements, queued
   now (Connection.reset() rolls back first). */
static PyObject *Connection__reset_session(PyObject *self, PyObject *const *args,
                                           Py_ssize_t nargs, PyObject *kwnames)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    agentdb_state *st = conn_state(c);
    double timeout = 0;
    if (nargs != 0) {
        PyErr_SetString(PyExc_TypeError, "_reset_session(*, timeout=None)");
        return NULL;
    }
    if (parse_timeout_kw(args, nargs, kwnames, &timeout) < 0 || conn_check_ready(c) < 0 ||
        conn_check_loop(c, st) < 0) {
        return NULL;
    }
    PyObject *fut = agentdb_future_new(st, c->loop, (PyObject *)c);
    if (fut == NULL) {
        return NULL;
    }
    if (queue_session_reset(c, timeout, NULL, fut) < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    return fut;
}

/* _debug_state() -> dict: the pipeline's state, for tests and post-mortems. */
static PyObject *Connection__debug_state(PyObject *self, PyObject *Py_UNUSED(ig))
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    PyObject *ops = PyList_New(0);
    if (ops == NULL) {
        return NULL;
    }
    for (agentdb_Op *op = c->head; op != NULL; op = op->next) {
        PyObject *t = Py_BuildValue("{s:i,s:i,s:i,s:i,s:i,s:i,s:O}", "st", op->st, "kind",
                                    op->kind, "step", op->step, "abandoned", op->abandoned,
                                    "cancel_sent", op->cancel_sent, "phase_cmds",
                                    op->phase_cmds, "sql", op->sql);
        if (t == NULL || PyList_Append(ops, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(ops);
            return NULL;
        }
        Py_DECREF(t);
    }
    return Py_BuildValue("{s:N,s:i,s:i,s:i,s:i,s:i,s:i,s:n,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:k}",
                         "ops", ops,
                         "state", c->state, "cancel_pending", c->cancel_pending, "simple_mode",
                         c->simple_mode, "kick_scheduled", c->kick_scheduled, "copy_in",
                         c->copy_in, "pool_state", c->pool_state, "nops", c->nops, "busy",
                         c->pg ? PQisBusy(c->pg) : -1, "writer", c->writer_fd, "reader",
                         c->reader_fd, "socket", c->pg ? PQsocket(c->pg) : -1, "status",
                         c->pg ? (int)PQstatus(c->pg) : -1, "flush", c->pg ? PQflush(c->pg) : -9,
                         "readable", fd_readable(c->pg ? PQsocket(c->pg) : -1), "stalls",
                         c->stalls);
}

static PyObject *Connection__statement_count(PyObject *self, PyObject *Py_UNUSED(ig))
{
    return PyLong_FromSsize_t(PyDict_GET_SIZE(((agentdb_Connection *)self)->stmts));
}

/* _configure(statement_cache_size, command_timeout, cancel_grace[, json_text]) */
static PyObject *Connection__configure(PyObject *self, PyObject *args)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    Py_ssize_t cache;
    double command_timeout, grace;
    int json_text = -1;
    if (!PyArg_ParseTuple(args, "ndd|p:_configure", &cache, &command_timeout, &grace,
                          &json_text)) {
        return NULL;
    }
    if (cache < 0) {
        PyErr_SetString(PyExc_ValueError, "statement_cache_size must be >= 0");
        return NULL;
    }
    c->stmt_cache_size = cache;
    c->command_timeout = command_timeout;
    c->cancel_grace = grace > 0 ? grace : 5.0;
    if (json_text >= 0) {
        c->json_text = json_text; /* statements prepared before keep their decoders unused */
    }
    Py_RETURN_NONE;
}

/* The future of a statement was cancelled: cancel the statement. */
static PyObject *Connection__future_cancelled(PyObject *self, PyObject *fut)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    if (c->connect_fut == fut) {
        /* Cancelled while connecting: close, leak nothing. */
        Py_CLEAR(c->connect_fut);
        agentdb_connection_close_now(c, NULL);
        Py_RETURN_NONE;
    }
    for (agentdb_Op *op = c->head; op != NULL; op = op->next) {
        if (op->fut == fut && !op->abandoned) {
            conn_abandon(c, op);
            break;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *Connection__future_abandoned(PyObject *self, PyObject *fut)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    if (fut == c->connect_fut_done && c->pool == NULL) {
        /* A connect that completed for a task cancelled at the same moment:
           nobody but us will ever close it.  (Held, not just remembered by
           address: a freed future's address may be a later query's.) */
        Py_CLEAR(c->connect_fut_done);
        agentdb_connection_close_now(c, NULL);
    }
    Py_RETURN_NONE;
}

static PyMethodDef Connection_methods[] = {
    {"_connect", Connection__connect, METH_VARARGS, NULL},
    {"_configure", Connection__configure, METH_VARARGS, NULL},
    {"execute", (PyCFunction)(void (*)(void))Connection_execute, METH_FASTCALL | METH_KEYWORDS,
     "execute(query, *args, timeout=None) -> Future[str]: run a statement (several, "
     "without arguments) and return the command tag of the last."},
    {"fetch", (PyCFunction)(void (*)(void))Connection_fetch, METH_FASTCALL | METH_KEYWORDS,
     "fetch(query, *args, timeout=None) -> Future[list[Record]]"},
    {"fetchrow", (PyCFunction)(void (*)(void))Connection_fetchrow,
     METH_FASTCALL | METH_KEYWORDS, "fetchrow(query, *args, timeout=None) -> Future[Record | None]"},
    {"fetchval", (PyCFunction)(void (*)(void))Connection_fetchval,
     METH_FASTCALL | METH_KEYWORDS,
     "fetchval(query, *args, column=0, timeout=None) -> Future[value | None]"},
    {"executemany", (PyCFunction)(void (*)(void))Connection_executemany,
     METH_FASTCALL | METH_KEYWORDS,
     "executemany(query, args, timeout=None) -> Future[None]: one statement per row of "
     "args, in one round trip and one implicit transaction (atomic)."},
    {"_query", (PyCFunction)(void (*)(void))Connection__query, METH_FASTCALL | METH_KEYWORDS,
     NULL},
    {"_copy", (PyCFunction)(void (*)(void))Connection__copy, METH_FASTCALL | METH_KEYWORDS,
     NULL},
    {"_copy_hold", (PyCFunction)(void (*)(void))Connection__copy_hold,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"_copy_send", (PyCFunction)(void (*)(void))Connection__copy_send, METH_FASTCALL, NULL},
    {"close", (PyCFunction)(void (*)(void))Connection_close, METH_FASTCALL | METH_KEYWORDS,
     "close(timeout=None) -> Future[None]: close the connection."},
    {"terminate", Connection_terminate, METH_NOARGS, "Close the connection now."},
    {"is_closed", Connection_is_closed, METH_NOARGS, NULL},
    {"is_in_transaction", Connection_is_in_transaction, METH_NOARGS, NULL},
    {"get_transaction_status", Connection_get_transaction_status, METH_NOARGS,
     "'idle', 'active', 'intrans', 'inerror' or 'unknown'."},
    {"get_server_version", Connection_get_server_version, METH_NOARGS, NULL},
    {"get_backend_pid", Connection_get_backend_pid, METH_NOARGS, NULL},
    {"get_parameter_status", Connection_get_parameter_status, METH_O, NULL},
    {"ssl_in_use", Connection_ssl_in_use, METH_NOARGS, NULL},
    {"_pending", Connection__pending, METH_NOARGS, NULL},
    {"_statement_count", Connection__statement_count, METH_NOARGS, NULL},
    {"_debug_state", Connection__debug_state, METH_NOARGS, NULL},
    {"_listeners", Connection__listeners, METH_NOARGS, NULL},
    {"_reset_session", (PyCFunction)(void (*)(void))Connection__reset_session,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"_notice_handlers", Connection__notice_handlers, METH_NOARGS, NULL},
    {"clear_statement_cache", Connection_clear_statement_cache, METH_NOARGS,
     "Forget every cached prepared statement (after DDL inside a transaction)."},
    {"_future_cancelled", Connection__future_cancelled, METH_O, NULL},
    {"_future_abandoned", Connection__future_abandoned, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

/* ------------------------------------------------------------------------ */
/* Lifecycle */

static PyObject *Connection_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    (void)args;
    (void)kwargs;
    agentdb_Connection *c = (agentdb_Connection *)type->tp_alloc(type, 0);
    if (c == NULL) {
        return NULL;
    }
    c->st = agentdb_state_from_type(type);
    /* Distinct statement names per connection: behind a pooler that moves
       clients between server connections, names never collide. */
    c->stmt_tag = ((unsigned long)(uintptr_t)c >> 4) ^ ((unsigned long)getpid() << 16);
    c->state = CONN_NEW;
    c->reader_fd = c->writer_fd = -1;
    c->watch_fd = c->watch_src = -1;
    c->stmt_cache_size = 100;
    c->cancel_grace = 5.0;
    c->stmts = PyDict_New();
    c->transactions = PyList_New(0);
    if (c->stmts == NULL || c->transactions == NULL) {
        Py_DECREF(c);
        return NULL;
    }
    return (PyObject *)c;
}

static int Connection_traverse(PyObject *self, visitproc visit, void *arg)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(c->loop);
    Py_VISIT(c->connect_fut);
    Py_VISIT(c->connect_fut_done);
    Py_VISIT(c->transactions);
    Py_VISIT(c->stmts);
    Py_VISIT(c->pool);
    Py_VISIT(c->listeners);
    Py_VISIT(c->notice_handlers);
    for (agentdb_Op *op = c->head; op != NULL; op = op->next) {
        Py_VISIT(op->fut);
        Py_VISIT(op->args);
        Py_VISIT(op->result);
        Py_VISIT(op->error);
    }
    return 0;
}

static int Connection_clear(PyObject *self)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    agentdb_connection_close_now(c, NULL);
    Py_CLEAR(c->stmts);
    Py_CLEAR(c->pool);
    Py_CLEAR(c->listeners);
    Py_CLEAR(c->notice_handlers);
    Py_CLEAR(c->transactions);
    Py_CLEAR(c->connect_fut_done);
    return 0;
}

/* PEP 442 finalizer: a connection dropped without close() says so, is closed,
   and is never given back to a pool (its checked-out slot is freed instead). */
static void Connection_finalize(PyObject *self)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    if (c->state != CONN_READY && c->state != CONN_CONNECTING) {
        return;
    }
    PyObject *exc = PyErr_GetRaisedException();
    if (c->pid == (long)getpid() &&
        PyErr_WarnFormat(PyExc_ResourceWarning, 1, "unclosed agentdb connection %R", self) < 0) {
        PyErr_WriteUnraisable(self);
    }
    if (c->pool != NULL && c->pool_state != POOLST_IDLE) {
        agentdb_pool_conn_lost_by_gc(c->pool, c);
    }
    agentdb_connection_close_now(c, NULL);
    PyErr_SetRaisedException(exc);
}

static void Connection_dealloc(PyObject *self)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    PyTypeObject *tp = Py_TYPE(self);
    if (PyObject_CallFinalizerFromDealloc(self) < 0) {
        return; /* resurrected */
    }
    PyObject_GC_UnTrack(self);
    if (c->weakreflist != NULL) {
        PyObject_ClearWeakRefs(self);
    }
    agentdb_connection_close_now(c, NULL);
    agentdb_iohandle_detach(c->io);
    agentdb_iohandle_detach(c->cb_write);
    agentdb_iohandle_detach(c->cb_timer);
    agentdb_iohandle_detach(c->cb_kick);
    agentdb_iohandle_detach(c->cb_cancel_done);
    agentdb_iohandle_detach(c->cb_watchdog);
    Py_CLEAR(c->cb_watchdog);
    Py_CLEAR(c->cb_kick);
    Py_CLEAR(c->cb_cancel_done);
    Py_CLEAR(c->io);
    Py_CLEAR(c->cb_read);
    Py_CLEAR(c->cb_write);
    Py_CLEAR(c->cb_timer);
    Py_CLEAR(c->loop);
    Py_CLEAR(c->stmts);
    Py_CLEAR(c->pool);
    Py_CLEAR(c->listeners);
    Py_CLEAR(c->notice_handlers);
    Py_CLEAR(c->transactions);
    Py_CLEAR(c->connect_fut_done);
    PyMem_Free(c->secret);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *Connection_repr(PyObject *self)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    static const char *names[] = {"new", "connecting", "ready", "closed"};
    if (c->state == CONN_READY && c->pg != NULL) {
        return PyUnicode_FromFormat("<%s %s@%s:%s/%s pid=%d>", Py_TYPE(self)->tp_name,
                                    PQuser(c->pg), PQhost(c->pg), PQport(c->pg), PQdb(c->pg),
                                    PQbackendPID(c->pg));
    }
    return PyUnicode_FromFormat("<%s [%s]>", Py_TYPE(self)->tp_name, names[c->state]);
}

static PyMemberDef Connection_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(agentdb_Connection, weakreflist), READONLY},
    {"_transactions", T_OBJECT_EX, offsetof(agentdb_Connection, transactions), READONLY,
     "The stack of open Transaction objects (emptied when a pool takes it back)."},
    {"_lease", T_ULONGLONG, offsetof(agentdb_Connection, lease), READONLY,
     "How many times a pool took it back: a Transaction notes it when it starts."},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot Connection_slots[] = {
    {Py_tp_new, Connection_new},
    {Py_tp_dealloc, Connection_dealloc},
    {Py_tp_finalize, Connection_finalize},
    {Py_tp_traverse, Connection_traverse},
    {Py_tp_clear, Connection_clear},
    {Py_tp_repr, Connection_repr},
    {Py_tp_methods, Connection_methods},
    {Py_tp_members, Connection_members},
    {Py_tp_doc, "A PostgreSQL connection driven by libpq in nonblocking mode. Open one with "
                "agentdb.connect()."},
    {0, NULL},
};

static PyType_Spec Connection_spec = {
    .name = "agentdb._core.Connection",
    .basicsize = sizeof(agentdb_Connection),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Connection_slots,
};

/* parse_dsn(dsn) -> dict: libpq's own parser (URIs and keyword/value strings). */
PyObject *agentdb_parse_dsn_py(PyObject *module, PyObject *dsn)
{
    agentdb_state *st = agentdb_get_state(module);
    const char *s = PyUnicode_AsUTF8(dsn);
    if (s == NULL) {
        return NULL;
    }
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(s, &err);
    if (opts == NULL) {
        PyObject *msg = err ? PyUnicode_FromString(err) : PyUnicode_FromString("out of memory");
        if (err) {
            PQfreemem(err);
        }
        if (msg == NULL) {
            return NULL;
        }
        /* Strip libpq's trailing newline. */
        PyObject *stripped = PyObject_CallMethod(msg, "strip", NULL);
        Py_DECREF(msg);
        if (stripped == NULL) {
            return NULL;
        }
        PyErr_Format(st->InterfaceError ? st->InterfaceError : PyExc_ValueError,
                     "invalid connection string: %U", stripped);
        Py_DECREF(stripped);
        return NULL;
    }
    PyObject *d = PyDict_New();
    if (d == NULL) {
        PQconninfoFree(opts);
        return NULL;
    }
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL) {
            continue;
        }
        PyObject *v = PyUnicode_FromString(o->val);
        if (v == NULL || PyDict_SetItemString(d, o->keyword, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            PQconninfoFree(opts);
            return NULL;
        }
        Py_DECREF(v);
    }
    PQconninfoFree(opts);
    return d;
}

int agentdb_connection_setup(PyObject *module, agentdb_state *st)
{
    st->ConnectionType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &Connection_spec,
                                                                  NULL);
    if (st->ConnectionType == NULL) {
        return -1;
    }
    return PyModule_AddType(module, st->ConnectionType);
}
