/* pipeline.c: a connection's FIFO of statements: queueing them, sending them in
   libpq's pipeline mode (each its commands and a sync), and the loop that reads results,
   finishes ops and sends what may go next (agentdb_conn_process). */
#include "conn_int.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* Rows per chunk in chunked rows mode (libpq 17+): large enough that libpq's cost per
   result vanishes, small enough that decoding starts while the server is still sending. */
#define AGENTDB_CHUNK_ROWS 256

void agentdb_op_free(agentdb_state *st, agentdb_Op *op)
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
    Py_XDECREF(op->copy_fed);
    PyMem_Free(op->copy_abort);
    Py_XDECREF(op->profile);
    Py_XDECREF(op->prefix);
    PyMem_Free(op);
}

/* Deliver an op's outcome: its future, or its internal hook. */
void agentdb_op_deliver(agentdb_Connection *c, agentdb_Op *op)
{
    agentdb_state *st = agentdb_conn_st(c);
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

/* `op` left the FIFO: its expected duration no longer counts. */
void agentdb_conn_uncount(agentdb_Connection *c, agentdb_Op *op)
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

int agentdb_conn_flush(agentdb_Connection *c)
{
    /* libpq's nonblocking contract: after queueing, PQflush until it returns 0;
       while it returns 1, wait for write readiness and keep reading, since the
       server may be blocked sending to us (the reader stays registered). */
    int r = PQflush(c->pg);
    if (r < 0) {
        agentdb_conn_lost(c, "could not send to the server");
        return -1;
    }
    if (agentdb_conn_watch_write(c, PQsocket(c->pg), r == 1) < 0) {
        PyErr_WriteUnraisable((PyObject *)c);
    }
    return 0;
}

/* Unlink the head op, deliver its outcome and free it. */
void agentdb_op_pop_deliver(agentdb_Connection *c)
{
    agentdb_state *st = agentdb_conn_st(c);
    agentdb_Op *op = c->head;
    c->head = op->next;
    if (c->head == NULL) {
        c->tail = NULL;
    }
    else if (c->head->st == OPST_PHASE2 && c->head->started_at == 0) {
        c->head->started_at = agentdb_monotonic(); /* the server turns to it now */
    }
    c->nops--;
    agentdb_conn_uncount(c, op);
    agentdb_op_deliver(c, op);
    agentdb_op_free(st, op);
}

int agentdb_op_set_error(agentdb_Op *op, PyObject *exc)
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
void agentdb_op_take_error(agentdb_Op *op)
{
    PyObject *exc = PyErr_GetRaisedException();
    if (exc != NULL) {
        agentdb_op_set_error(op, exc);
    }
}

const char *agentdb_sql_utf8(PyObject *sql)
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
    agentdb_conn_lost(c, "could not queue a statement");
    return -1;
}

/* Phase 1: Parse + Describe + Sync.  0 => sent, -1 => the connection died. */
static int op_send_describe(agentdb_Connection *c, agentdb_Op *op)
{
    char name[32] = "";
    const char *sql = agentdb_sql_utf8(op->sql);
    if (sql == NULL) {
        agentdb_op_take_error(op);
        op->st = OPST_FAILED;
        return 0;
    }
    /* Without a cache (PgBouncer) only the unnamed statement is used. */
    if (c->stmt_cache_size > 0) {
        snprintf(name, sizeof(name), "__adb_%lx_%lu", c->stmt_tag, ++c->stmt_counter);
    }
    Py_XSETREF(op->status, PyUnicode_FromString(name)); /* the name, until described */
    if (op->status == NULL) {
        agentdb_op_take_error(op);
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
   (agentdb_conn_read_results asks again on every pass until rows come; then it is too late and
   the result comes whole).  Only for fetch()-style ops: a single row gains nothing. */
void agentdb_op_ask_chunks(agentdb_Connection *c, agentdb_Op *op)
{
#ifdef LIBPQ_HAS_CHUNK_MODE
    /* Only at the head of the FIFO: libpq applies the mode to its current command, which
       is this op's Execute only when every statement sent before it is finished. */
    if (op == c->head && !op->chunk_tried && op->step == STEP_EXEC &&
        op->st != OPST_SIMPLE && op->kind == OPK_QUERY && !op->prefix_pending &&
        (op->mode == AGENTDB_MODE_ALL || op->mode == AGENTDB_MODE_RAW ||
         op->mode == AGENTDB_MODE_DBAPI)) {
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
        agentdb_stmt_forget_all(c);
    }
}

/* Encode the arguments of an OPK_QUERY (one set) or OPK_MANY (a set per row: every row
   before any is sent, so a bad row sends nothing) into ps[0..*n).  The encoders run
   Python code (a value's __index__, __str__, a json hook), which may close the
   connection or cancel this very statement: the op is marked meanwhile, so that neither
   frees it (conn_fail_ops, agentdb_conn_abandon).  0 => encoded; -1 => failed (the op's error
   is set; nothing to free). */
static int op_encode(agentdb_Connection *c, agentdb_Op *op, agentdb_Stmt *s,
                     agentdb_params **out, Py_ssize_t *n)
{
    agentdb_state *st = agentdb_conn_st(c);
    int many = op->kind == OPK_MANY;
    *n = many ? PyTuple_GET_SIZE(op->args) : 1; /* a tuple: nothing can shrink it */
    agentdb_params *ps = PyMem_Calloc(*n > 0 ? *n : 1, sizeof(*ps));
    if (ps == NULL) {
        PyErr_NoMemory();
        agentdb_op_take_error(op);
        return -1;
    }
    Py_ssize_t done = 0;
    op->encoding = 1;
    const agentdb_typeopts *prev_types = st->cur_types; /* for src/codecs/custom.c */
    st->cur_types = &c->types;
    for (; done < *n; done++) {
        PyObject *args = many ? PyTuple_GET_ITEM(op->args, done) : op->args;
        if (agentdb_params_encode_for(st, &ps[done], args, s ? s->ptypes : NULL,
                                      s ? s->nparams : 0, &c->types) < 0) {
            agentdb_op_take_error(op);
            break;
        }
    }
    op->encoding = 0;
    st->cur_types = prev_types;
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
void agentdb_op_drop(agentdb_Connection *c, agentdb_Op *op)
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
        agentdb_conn_uncount(c, op);
    }
    agentdb_op_free(agentdb_conn_st(c), op);
}

/* Send the op's statement + Sync.  0 => sent (or failed before sending: op->st ==
   OPST_FAILED); 1 => the op is gone (cancelled while its arguments were encoded);
   -1 => the connection is closed. */
static int op_send_exec(agentdb_Connection *c, agentdb_Op *op)
{
    agentdb_state *st = agentdb_conn_st(c);
    agentdb_Stmt *s = op->stmt ? agentdb_stmt_get(op->stmt) : NULL;
    int ok = 1, ncmds = 1;
    agentdb_params *ps = NULL;
    Py_ssize_t n = 0;
    const char *sql = agentdb_sql_utf8(op->sql);
    if (sql == NULL) {
        agentdb_op_take_error(op);
        op->st = OPST_FAILED;
        return 0;
    }
    if (op->mode == AGENTDB_MODE_DESCRIBE) {
        /* prepare(): described (or found in the cache); nothing runs.  Finished as it
           reaches the head, in order. */
        Py_XSETREF(op->result, agentdb_stmt_description(op->stmt));
        if (op->result == NULL) {
            agentdb_op_take_error(op);
        }
        op->st = OPST_FAILED;
        return 0;
    }
    if (op->kind == OPK_QUERY || op->kind == OPK_MANY) {
        int rc = op_encode(c, op, s, &ps, &n);
        if (op->orphaned) { /* the connection closed under the encoder */
            if (rc == 0) {
                params_free_all(ps, n);
            }
            agentdb_op_free(st, op);
            return -1;
        }
        if (op->abandoned) { /* its awaiter gave up meanwhile: never sent */
            if (rc == 0) {
                params_free_all(ps, n);
            }
            agentdb_op_drop(c, op);
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
#ifdef LIBPQ_HAS_CLOSE_PREPARED
    else if (op->kind == OPK_CLOSE) { /* op->args: a tuple of str, built by stmtcache.c */
        ncmds = (int)PyTuple_GET_SIZE(op->args);
        for (int i = 0; ok && i < ncmds; i++) {
            const char *name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(op->args, i));
            ok = name != NULL && PQsendClosePrepared(pg, name);
        }
        PyErr_Clear();
    }
#endif
    else if (op->kind == OPK_QUERY) {
        agentdb_params *p = &ps[0];
        if (op->prefix != NULL) {
            const char *prefix = PyUnicode_AsUTF8(op->prefix); /* checked when queued */
            ok = prefix != NULL && PQsendQueryParams(pg, prefix, 0, NULL, NULL, NULL, NULL, 0);
            op->prefix_pending = ok;
            ncmds = 2;
        }
        ok = ok && (s ? PQsendQueryPrepared(pg, s->name, p->n, p->values, p->lengths, p->formats,
                                     s->binary)
               : PQsendQueryParams(pg, sql, p->n, p->types, p->values, p->lengths, p->formats,
                                   0));
        params_free_all(ps, n);
    }
    else { /* OPK_MANY: every row, one sync: one implicit transaction (atomic) */
        for (Py_ssize_t i = 0; ok && i < n; i++) {
            ok = PQsendQueryPrepared(pg, s->name, ps[i].n, ps[i].values, ps[i].lengths,
                                     ps[i].formats,
                                     op->mode == AGENTDB_MODE_ALL ? s->binary : 0);
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
    agentdb_op_ask_chunks(c, op);
    return 0;
}

/* A multi-statement execute(): the simple protocol, outside pipeline mode. */
static int op_send_simple(agentdb_Connection *c, agentdb_Op *op)
{
    const char *sql = agentdb_sql_utf8(op->sql);
    if (sql == NULL) {
        agentdb_op_take_error(op);
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
       possible (libpq <= 16 flushes at every sync).  Only TCP has a cork, and only
       Linux calls it TCP_CORK (BSDs: TCP_NOPUSH); elsewhere segments go as they come. */
#if defined(TCP_CORK)
    int fd = PQsocket(c->pg);
    if (fd >= 0) {
        (void)setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
    }
#elif defined(TCP_NOPUSH)
    int fd = PQsocket(c->pg);
    if (fd >= 0) {
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NOPUSH, &on, sizeof(on));
    }
#else
    (void)c;
    (void)on;
#endif
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
        if (op->st == OPST_QUEUED && !op->uncached &&
            (op->kind == OPK_MANY ||
             (op->kind == OPK_QUERY &&
              (op->mode == AGENTDB_MODE_DESCRIBE || c->stmt_cache_size > 0))) &&
            !agentdb_stmt_lookup(c, op)) {
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
        agentdb_conn_flush(c);
    }
}

void agentdb_conn_on_kick(PyObject *self, PyObject *arg)
{
    (void)arg;
    agentdb_Connection *c = (agentdb_Connection *)self;
    c->kick_scheduled = 0;
    agentdb_conn_process(c);
}

/* Finish the ops at the head that have nothing in flight (failed before
   sending, abandoned between describe and execute) and send what may go. */
static void conn_settle_heads(agentdb_Connection *c)
{
    for (;;) {
        while (c->state == CONN_READY && c->head != NULL &&
               (c->head->st == OPST_FAILED ||
                (c->head->st == OPST_READY2 && c->head->abandoned))) {
            agentdb_op_pop_deliver(c);
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

/* Everything the connection can do now without blocking: read the results
   libpq holds, finish ops, send what may go; then, when the FIFO is empty,
   tell the pool.  Every path that changes the FIFO ends here.  Reentrant
   calls (a completion hook queueing a statement) just ask the running one to
   go round again: results already buffered by libpq are never left unread
   waiting for a socket event that will not come. */
void agentdb_conn_process(agentdb_Connection *c)
{
    if (c->processing) {
        c->process_again = 1;
        return;
    }
    c->processing = 1;
    do {
        c->process_again = 0;
        agentdb_conn_read_results(c);
        if (c->state != CONN_READY) {
            break;
        }
        agentdb_Op *head = c->head;
        conn_settle_heads(c);
        if (c->state == CONN_READY && c->head != head && c->head != NULL &&
            agentdb_op_in_flight(c->head) && !c->copy_in && !PQisBusy(c->pg)) {
            c->process_again = 1; /* a result is already here for the new head */
        }
        agentdb_conn_cancel_abandoned(c);
    } while (c->process_again && c->state == CONN_READY);
    c->processing = 0;
    if (c->state == CONN_READY && c->nops == 0 && c->link.pool != NULL) {
        agentdb_pool_conn_drained(c->link.pool, c);
    }
}

agentdb_Op *agentdb_op_new(agentdb_Connection *c, int kind, int mode, PyObject *sql,
                          PyObject *args)
{
    agentdb_Op *op = PyMem_Calloc(1, sizeof(*op));
    if (op == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    op->id = ++c->next_op_id;
    op->rowcount = -1;
    op->kind = kind;
    op->mode = mode;
    op->sql = Py_NewRef(sql);
    op->args = Py_XNewRef(args);
    return op;
}

int agentdb_conn_check_ready(agentdb_Connection *c)
{
    agentdb_state *st = agentdb_conn_st(c);
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
int agentdb_conn_enqueue(agentdb_Connection *c, agentdb_Op *op, double timeout)
{
    agentdb_state *st = agentdb_conn_st(c);
    if (timeout <= 0) {
        timeout = c->command_timeout;
    }
    op->timeout = timeout;
    if (timeout > 0) {
        PyObject *id = PyLong_FromUnsignedLongLong(op->id);
        if (id == NULL) {
            agentdb_op_free(st, op);
            return -1;
        }
        op->timer = agentdb_call_later(st, c->loop, timeout, c->cb_timer, id);
        Py_DECREF(id);
        if (op->timer == NULL) {
            agentdb_op_free(st, op);
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
    c->link.last_used = agentdb_monotonic();
    Py_CLEAR(c->connect_fut_done); /* in use: whoever connected it has it */
    if (c->watchdog == NULL && c->cb_watchdog != NULL) {
        c->reads_seen = c->reads;
        c->watchdog = agentdb_call_later(st, c->loop, 1.0, c->cb_watchdog, Py_None);
        if (c->watchdog == NULL) {
            PyErr_Clear();
        }
    }
    if (c->head == op) {
        agentdb_conn_process(c); /* alone: it leaves now, no batching delay */
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
    if (agentdb_conn_check_ready(c) < 0) {
        return -1;
    }
    PyObject *text = PyUnicode_FromString(sql);
    if (text == NULL) {
        return -1;
    }
    agentdb_Op *op = agentdb_op_new(c, OPK_PLAIN, AGENTDB_MODE_STATUS, text, NULL);
    Py_DECREF(text);
    if (op == NULL) {
        return -1;
    }
    op->done = done;
    op->sqlflags = sqlflags;
    return agentdb_conn_enqueue(c, op, timeout);
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

static int conn_submit(agentdb_Connection *c, PyObject *fut, int kind, int mode, PyObject *sql,
                       PyObject *args, int column, double timeout, PyObject *profile,
                       double est, PyObject *prefix);

int agentdb_connection_submit(agentdb_Connection *c, PyObject *fut, int kind, int mode,
                              PyObject *sql, PyObject *args, int column, double timeout,
                              PyObject *profile, double est)
{
    return conn_submit(c, fut, kind, mode, sql, args, column, timeout, profile, est, NULL);
}

int agentdb_conn_submit_prefixed(agentdb_Connection *c, PyObject *fut, int mode, PyObject *sql,
                                 PyObject *args, double timeout, PyObject *prefix)
{
    return conn_submit(c, fut, OPK_QUERY, mode, sql, args, 0, timeout, NULL, 0, prefix);
}

static int conn_submit(agentdb_Connection *c, PyObject *fut, int kind, int mode, PyObject *sql,
                       PyObject *args, int column, double timeout, PyObject *profile,
                       double est, PyObject *prefix)
{
    agentdb_state *st = agentdb_conn_st(c);
    unsigned flags;
    if (agentdb_conn_check_ready(c) < 0) {
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
    int uncached = (mode & AGENTDB_MODE_UNCACHED) != 0;
    mode &= ~AGENTDB_MODE_UNCACHED;
    if (mode == AGENTDB_MODE_DESCRIBE) {
        flags = 0; /* only described: it changes nothing */
    }
    agentdb_Op *op = agentdb_op_new(c, kind, mode, sql, args);
    if (op == NULL) {
        return -1;
    }
    op->uncached = uncached && kind == OPK_QUERY; /* executemany needs its statement */
    op->column = column;
    op->prefix = Py_XNewRef(prefix);
    op->sqlflags = flags;
    op->profile = Py_XNewRef(profile);
    op->est = est;
    c->session_flags |= flags & (AGENTDB_SQL_SESSION | AGENTDB_SQL_PREPARE);
    op->fut = Py_NewRef(fut);
    if (PyObject_SetAttr(fut, st->str_owner, (PyObject *)c) < 0) {
        agentdb_op_free(st, op);
        return -1;
    }
    return agentdb_conn_enqueue(c, op, timeout);
}
