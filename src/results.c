/* results.c: a statement's results read from libpq: each PGresult into the op's
   outcome, a phase's end at its sync (the transaction status it leaves, the statement
   cache, the retry of a stale statement), and the op's final value. */
#include "conn_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The next word of `*p` (after blanks) is `w`, case-insensitively, followed by a blank:
   1 and *p moved past it, else 0. */
static int take_word(const char **p, const char *w)
{
    const char *s = *p;
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') {
        s++;
    }
    size_t n = strlen(w);
    if (strncasecmp(s, w, n) != 0 ||
        !(s[n] == ' ' || s[n] == '\t' || s[n] == '\n' || s[n] == '\r')) {
        return 0;
    }
    *p = s + n;
    return 1;
}

/* CREATE [GLOBAL | LOCAL] {TEMP | TEMPORARY} ...: a temporary object, which changes no
   plan of another session (it is not DDL for the statement caches). */
static int creates_temp(PyObject *sql)
{
    const char *s = PyUnicode_AsUTF8(sql);
    if (s == NULL) {
        PyErr_Clear();
        return 0;
    }
    if (!take_word(&s, "CREATE")) {
        return 0;
    }
    if (!take_word(&s, "GLOBAL")) {
        (void)take_word(&s, "LOCAL");
    }
    return take_word(&s, "TEMP") || take_word(&s, "TEMPORARY");
}

/* AGENTDB_MODE_DBAPI: the row count of the command tag (PQcmdTuples: INSERT, UPDATE,
   DELETE, MERGE, SELECT, FETCH, MOVE, COPY) and whether it was DDL (CREATE, ALTER, DROP
   of anything but a temporary object). */
static void op_take_tag(agentdb_Op *op, const PGresult *res)
{
    const char *n = PQcmdTuples((PGresult *)res);
    op->rowcount = *n ? strtoll(n, NULL, 10) : -1;
    const char *tag = PQcmdStatus((PGresult *)res);
    op->ddl = (strncmp(tag, "CREATE", 6) == 0 || strncmp(tag, "ALTER", 5) == 0 ||
               strncmp(tag, "DROP", 4) == 0) &&
              !creates_temp(op->sql);
}

/* A result of the op's prefix (BEGIN): noted, never the op's value. */
static void op_take_prefix_result(agentdb_Connection *c, agentdb_Op *op, PGresult *res)
{
    ExecStatusType status = PQresultStatus(res);
    if (status == PGRES_COMMAND_OK) {
        op->begin_ok = 1;
    }
    else if (status != PGRES_PIPELINE_SYNC && status != PGRES_PIPELINE_ABORTED) {
        PyObject *exc = agentdb_error_from_result(agentdb_conn_st(c), res);
        if (exc == NULL) {
            agentdb_op_take_error(op);
        }
        else {
            agentdb_op_set_error(op, exc);
        }
    }
}

/* One PGresult for the head op. */
static void op_take_result(agentdb_Connection *c, agentdb_Op *op, PGresult *res)
{
    agentdb_state *st = agentdb_conn_st(c);
    ExecStatusType status = PQresultStatus(res);
    if (op->prefix_pending) {
        op_take_prefix_result(c, op, res);
        return;
    }
    switch (status) {
#ifdef LIBPQ_HAS_CHUNK_MODE
    case PGRES_TUPLES_CHUNK:
        op->chunk_tried = 1;
        if (op->step == STEP_EXEC && !op->abandoned && op->error == NULL &&
            op->kind == OPK_QUERY &&
            (op->mode == AGENTDB_MODE_ALL || op->mode == AGENTDB_MODE_RAW ||
             op->mode == AGENTDB_MODE_DBAPI) &&
            agentdb_op_take_rows(c, op, res, 1) < 0) {
            agentdb_op_take_error(op);
        }
        break;
#endif
    case PGRES_TUPLES_OK:
        op->chunk_tried = 1; /* too late to ask (or asked and done) */
        /* OPK_PLAIN with rows: Connection._fetchrow_unprepared */
        if (op->step == STEP_EXEC && !op->abandoned &&
            (op->kind == OPK_QUERY || op->kind == OPK_PLAIN ||
             (op->kind == OPK_MANY && op->mode == AGENTDB_MODE_ALL)) &&
            op->mode != AGENTDB_MODE_STATUS && op->mode != AGENTDB_MODE_NONE &&
            op->error == NULL) {
            /* fetchmany(): each execution's rows gather in op->rows, as chunks do */
            if (agentdb_op_take_rows(c, op, res, op->kind == OPK_MANY) < 0) {
                agentdb_op_take_error(op);
            }
        }
        /* fall through */
    case PGRES_COMMAND_OK:
    case PGRES_EMPTY_QUERY:
        if (op->step == STEP_DESCRIBE && status == PGRES_COMMAND_OK) {
            PyObject *capsule =
                agentdb_stmt_from_describe(st, PyUnicode_AsUTF8(op->status), res, &c->types);
            if (capsule == NULL) {
                agentdb_op_take_error(op);
            }
            else {
                Py_XSETREF(op->stmt, capsule);
            }
        }
        else if (op->step == STEP_EXEC && op->kind != OPK_MANY) {
            if (op->mode == AGENTDB_MODE_DBAPI) {
                op_take_tag(op, res); /* its value is rows and numbers, not the tag */
                break;
            }
            Py_XSETREF(op->status, PyUnicode_FromString(PQcmdStatus(res)));
            if (op->status == NULL) {
                agentdb_op_take_error(op);
            }
        }
        break;
    case PGRES_PIPELINE_SYNC:
    case PGRES_PIPELINE_ABORTED:
        break;
    case PGRES_COPY_IN:
        if (op->copy_mode == COPY_IN && !op->abandoned) {
            c->copy_in = 1;
            agentdb_copy_in_continue(c, op);
            break;
        }
        PQputCopyEnd(c->pg, "agentdb: use copy_records_to_table() or copy_to_table()");
        agentdb_op_set_error(op, agentdb_error_new(
                             st->NotSupportedError,
                             "COPY FROM STDIN needs copy_records_to_table() or copy_to_table()",
                             NULL));
        agentdb_conn_flush(c);
        break;
    case PGRES_COPY_OUT:
        c->copy_out_discard = 1; /* read (and kept by copy_from_*) in agentdb_conn_process */
        if (op->copy_mode != COPY_OUT) {
            agentdb_op_set_error(op, agentdb_error_new(
                                 st->NotSupportedError,
                                 "COPY TO STDOUT needs copy_from_query() or copy_from_table()",
                                 NULL));
        }
        break;
    default: {
        PyObject *exc = agentdb_error_from_result(st, res);
        if (exc == NULL) {
            agentdb_op_take_error(op);
        }
        else {
            agentdb_op_set_error(op, exc);
        }
        break;
    }
    }
}

/* The bytes of a list of bytes chunks (COPY TO STDOUT data), in one allocation. */
static PyObject *join_chunks(PyObject *chunks)
{
    Py_ssize_t n = PyList_GET_SIZE(chunks), size = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        size += PyBytes_GET_SIZE(PyList_GET_ITEM(chunks, i));
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL) {
        return NULL;
    }
    char *dst = PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *chunk = PyList_GET_ITEM(chunks, i);
        memcpy(dst, PyBytes_AS_STRING(chunk), (size_t)PyBytes_GET_SIZE(chunk));
        dst += PyBytes_GET_SIZE(chunk);
    }
    return out;
}

/* The op's final result, by mode, once its last result has been read. */
static void op_finalize(agentdb_Op *op)
{
    if (op->error != NULL) {
        return;
    }
    if (op->copy_mode == COPY_OUT && op->copy_data != NULL && PyList_Check(op->copy_data)) {
        PyObject *data = join_chunks(op->copy_data);
        if (data == NULL) {
            agentdb_op_take_error(op);
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
            agentdb_op_take_error(op);
        }
        Py_XSETREF(op->result, t);
    }
    else if (op->mode == AGENTDB_MODE_DBAPI) {
        /* (rows, RecordDesc | None) from agentdb_op_take_rows, or nothing without rows */
        PyObject *rows = NULL, *descr = NULL;
        if (op->result != NULL) {
            PyObject *desc = PyTuple_GET_ITEM(op->result, 1);
            rows = Py_NewRef(PyTuple_GET_ITEM(op->result, 0));
            descr = desc == Py_None
                        ? Py_NewRef(Py_None)
                        : agentdb_recorddesc_description((agentdb_RecordDesc *)desc);
        }
        else {
            rows = PyList_New(0);
            descr = Py_NewRef(Py_None);
        }
        PyObject *t = rows && descr ? Py_BuildValue("(OOLO)", rows, descr, op->rowcount,
                                                    op->ddl ? Py_True : Py_False)
                                    : NULL;
        Py_XDECREF(rows);
        Py_XDECREF(descr);
        if (t == NULL) {
            agentdb_op_take_error(op);
        }
        Py_XSETREF(op->result, t);
    }
    else if (op->mode == AGENTDB_MODE_RAW) {
        PyObject *rows = PyList_New(0);
        op->result = rows ? Py_BuildValue("(NOOO)", rows, Py_None, Py_None,
                                          op->status ? op->status : Py_None)
                          : NULL;
        if (op->result == NULL) {
            agentdb_op_take_error(op);
        }
    }
    else if (op->kind == OPK_MANY && op->mode == AGENTDB_MODE_ALL && op->rows != NULL) {
        op->result = op->rows; /* fetchmany(): every execution's rows */
        op->rows = NULL;
    }
    else if (op->result == NULL) {
        /* A statement without rows asked for rows. */
        op->result = op->mode == AGENTDB_MODE_ALL ? PyList_New(0) : Py_NewRef(Py_None);
        if (op->result == NULL) {
            agentdb_op_take_error(op);
        }
    }
}

/* A shortcut's statement ran: its duration, from the moment the server turned to it,
   goes to the pool that schedules by it. */
static void op_measure(agentdb_Connection *c, agentdb_Op *op)
{
    if (op->profile == NULL || c->link.pool == NULL || op->abandoned || op->started_at <= 0) {
        return;
    }
    agentdb_pool_measured(c->link.pool, op->profile, agentdb_monotonic() - op->started_at,
                          op->sent_as_head);
}

/* The transaction status after `op`'s phase, from the status before it: libpq tells it
   only when nothing else is in flight (it says ACTIVE otherwise), so while statements
   are pipelined it follows from what the statement is and whether it failed. */
static int txn_after(int before, const agentdb_Op *op, int executed)
{
    if (executed && op->begin_ok) {
        before = PQTRANS_INTRANS; /* its prefix, BEGIN, ran */
    }
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
    agentdb_state *st = agentdb_conn_st(c);
    int t = PQtransactionStatus(c->pg);
    c->txn_status = t != PQTRANS_ACTIVE ? t : txn_after(c->txn_status, op, op->st == OPST_PHASE2);
    if (PQclientEncoding(c->pg) != c->utf8_id) {
        /* set_config('client_encoding', ...) or a function did it: text would no longer
           be UTF-8 both ways.  (SET client_encoding is refused before it is sent.) */
        agentdb_conn_close_lost(c, "the session's client_encoding is no longer UTF8 (changed by "
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
            agentdb_stmt_evict(c);
        }
        if (op->error != NULL || op->abandoned) {
            agentdb_op_pop_deliver(c);
            return;
        }
        op->st = OPST_READY2; /* conn_kick sends it next: it is the head */
        return;
    }
    if (op->error != NULL && op->stmt != NULL && !op->retried && !op->abandoned &&
        (op->next == NULL || !agentdb_op_in_flight(op->next)) &&
        PQtransactionStatus(c->pg) == PQTRANS_IDLE && agentdb_stmt_is_stale(st, op->error)) {
        /* The cached plan went stale (schema change, DISCARD ALL): forget the
           cache and, outside a transaction and with nothing sent after it,
           prepare again transparently. */
        agentdb_stmt_forget_all(c);
        op->retried = 1;
        op->begin_ok = 0;
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
    if (op->error != NULL && op->stmt != NULL && agentdb_stmt_is_stale(st, op->error)) {
        agentdb_stmt_forget_all(c);
    }
    if (op->error != NULL && c->stmt_cache_size > 0) {
        agentdb_stmt_pooler_hint(op->error);
    }
    op_finalize(op);
    agentdb_op_pop_deliver(c);
}

static inline void result_clear(agentdb_Connection *c, PGresult *res)
{
    if (res != NULL) {
        AGENTDB_COUNT(c->st->live_pgresults, -1);
        PQclear(res);
    }
}

/* Read and dispatch the results already received, without blocking. */
void agentdb_conn_read_results(agentdb_Connection *c)
{
    PGconn *pg = c->pg;
    while (c->state == CONN_READY) {
        agentdb_Op *op = c->head;
        if (op == NULL || !agentdb_op_in_flight(op)) {
            break;
        }
        if (c->copy_in) {
            break; /* the payload is still going out (agentdb_conn_on_write) */
        }
        if (c->copy_out_discard) {
            char *buf = NULL;
            int n;
            while ((n = PQgetCopyData(pg, &buf, 1)) > 0) {
                if (op->copy_mode == COPY_OUT && op->copy_data != NULL &&
                    agentdb_copy_out_chunk(op, buf, n) < 0) {
                    agentdb_op_take_error(op);
                }
                PQfreemem(buf);
            }
            if (n == 0) {
                break; /* wait for more */
            }
            c->copy_out_discard = 0;
        }
        agentdb_op_ask_chunks(c, op);
        if (PQisBusy(pg)) {
            break;
        }
        PGresult *res = PQgetResult(pg);
        if (res != NULL) {
            AGENTDB_COUNT(c->st->live_pgresults, 1);
        }
        if (op->st == OPST_SIMPLE) {
            if (res == NULL) {
                c->txn_status = PQtransactionStatus(pg);
                c->simple_mode = 0;
                if (!PQenterPipelineMode(pg)) {
                    agentdb_conn_lost(c, "could not enter pipeline mode");
                    return;
                }
                op_finalize(op);
                agentdb_op_pop_deliver(c);
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
            op->prefix_pending = 0; /* the next results are the statement's */
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
