/* session.c: the session's transaction status as the statements issued so far leave
   it, and the reset that puts a session back as it was after connect. */
#include "conn_int.h"

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
        if (op->prefix != NULL) {
            t = PQTRANS_INTRANS; /* its BEGIN, then what the statement itself does */
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

/* Whether a transaction is open once the statements issued so far have run: a task
   that issued BEGIN is in a transaction from then on, also while BEGIN is in flight. */
PyObject *agentdb_Connection_is_in_transaction(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    int t = agentdb_connection_txn_expected((agentdb_Connection *)self);
    return PyBool_FromLong(t == PQTRANS_INTRANS || t == PQTRANS_INERROR);
}

PyObject *agentdb_Connection_get_transaction_status(PyObject *self, PyObject *Py_UNUSED(ig))
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
        PyObject *exc = msg ? agentdb_error_new(agentdb_conn_st(c)->ConnectionLostError,
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
    if (agentdb_conn_check_ready(c) < 0) {
        return -1;
    }
    PyObject *text = PyUnicode_FromString("-- agentdb: session reset");
    if (text == NULL) {
        return -1;
    }
    agentdb_Op *op = agentdb_op_new(c, OPK_BATCH, AGENTDB_MODE_NONE, text, NULL);
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
    c->session_resets++; /* what was set in the session before is gone */
    return agentdb_conn_enqueue(c, op, timeout);
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
PyObject *agentdb_Connection__reset_session(PyObject *self, PyObject *const *args,
                                           Py_ssize_t nargs, PyObject *kwnames)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    agentdb_state *st = agentdb_conn_st(c);
    agentdb_kwargs kw;
    if (nargs != 0) {
        PyErr_SetString(PyExc_TypeError, "_reset_session(*, timeout=None)");
        return NULL;
    }
    if (agentdb_parse_kwargs("_reset_session", args, nargs, kwnames, AGENTDB_KW_TIMEOUT, &kw) <
            0 ||
        agentdb_conn_check_ready(c) < 0 ||
        agentdb_conn_check_loop(c, st) < 0) {
        return NULL;
    }
    PyObject *fut = agentdb_future_new(st, c->loop, (PyObject *)c);
    if (fut == NULL) {
        return NULL;
    }
    if (queue_session_reset(c, kw.timeout, NULL, fut) < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    return fut;
}
