/* stmtcache.c: a connection's prepared statements, cached by SQL text (LRU), and
   what a stale one means (prepared again, or a hint about poolers). */
#include "conn_int.h"

#include <stdio.h>
#include <string.h>

void agentdb_stmt_free(PyObject *capsule)
{
    agentdb_Stmt *s = PyCapsule_GetPointer(capsule, AGENTDB_STMT_CAPSULE);
    if (s == NULL) {
        PyErr_Clear();
        return;
    }
    PyMem_Free(s->ptypes);
    PyMem_Free(s->decoders);
    Py_XDECREF(s->desc);
    PyMem_Free(s);
}

/* A statement capsule from a PQdescribePrepared result. NULL => error set. */
PyObject *agentdb_stmt_from_describe(agentdb_state *st, const char *name, const PGresult *res,
                                    const agentdb_typeopts *types)
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
    PyObject *capsule = PyCapsule_New(s, AGENTDB_STMT_CAPSULE, agentdb_stmt_free);
    if (capsule == NULL) {
        PyMem_Free(s->ptypes);
        PyMem_Free(s);
        return NULL;
    }
    s->types_gen = types->gen;
    if (agentdb_pick_decoders(res, s->ncols, 1, types, &s->binary, &s->decoders) < 0) {
        Py_DECREF(capsule);
        return NULL;
    }
    if (s->ncols > 0 && (s->desc = agentdb_recorddesc_from_result(st, res)) == NULL) {
        Py_DECREF(capsule);
        return NULL;
    }
    return capsule;
}

/* Look the op's SQL up in the statement cache (LRU: a hit moves to the end).
   1 => op->stmt set, 0 => not cached. */
int agentdb_stmt_lookup(agentdb_Connection *c, agentdb_Op *op)
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

int agentdb_stmt_is_stale(agentdb_state *st, PyObject *exc)
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

/* A statement that leaves the cache is closed on the server, so that the server's
   pg_prepared_statements stays as small as the cache.  With libpq 17+: a Close message
   per statement (PQsendClosePrepared), all in one internal op queued at the tail of the
   FIFO: statements sent before it still find theirs, statements after it look the cache
   up when they are sent and prepare their own; Close of a name the server no longer has
   is no error, and its results reach no user.  Before 17: an evicted statement gets a
   DEALLOCATE and clear_statement_cache() a DEALLOCATE ALL; statements forgotten as stale
   or after a user's DEALLOCATE/DISCARD/PREPARE stay on the server until it ends. */
#ifdef LIBPQ_HAS_CLOSE_PREPARED
/* Queue the Close of the statements named in `names` (a list of str). */
static void stmt_close(agentdb_Connection *c, PyObject *names)
{
    if (c->state != CONN_READY || PyList_GET_SIZE(names) == 0) {
        return;
    }
    PyObject *text = PyUnicode_FromString("-- agentdb: close prepared statements");
    PyObject *args = PyList_AsTuple(names);
    agentdb_Op *op = text && args ? agentdb_op_new(c, OPK_CLOSE, AGENTDB_MODE_NONE, text, args)
                                  : NULL;
    Py_XDECREF(text);
    Py_XDECREF(args);
    if (op == NULL || agentdb_conn_enqueue(c, op, 0) < 0) {
        PyErr_Clear(); /* the statements stay on the server: costs memory, not results */
    }
}

/* Append the name of a statement capsule to `names`. */
static void stmt_add_name(PyObject *names, PyObject *capsule)
{
    agentdb_Stmt *s = agentdb_stmt_get(capsule);
    PyObject *name = s != NULL ? PyUnicode_FromString(s->name) : NULL;
    if (name == NULL || PyList_Append(names, name) < 0) {
        PyErr_Clear();
    }
    Py_XDECREF(name);
}
#endif

/* Evict the least recently used statements beyond the cache size, closing them on the
   server (above). */
void agentdb_stmt_evict(agentdb_Connection *c)
{
#ifdef LIBPQ_HAS_CLOSE_PREPARED
    PyObject *names = PyList_New(0);
    if (names == NULL) {
        PyErr_Clear();
    }
#endif
    while (PyDict_GET_SIZE(c->stmts) > c->stmt_cache_size) {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        if (!PyDict_Next(c->stmts, &pos, &key, &value)) {
            break;
        }
#ifdef LIBPQ_HAS_CLOSE_PREPARED
        if (names != NULL) {
            stmt_add_name(names, value);
        }
#else
        agentdb_Stmt *s = agentdb_stmt_get(value);
        char sql[64];
        snprintf(sql, sizeof(sql), "DEALLOCATE %s", s ? s->name : "ALL");
        if (agentdb_connection_internal(c, sql, 0, NULL, 0) < 0) {
            PyErr_Clear();
        }
#endif
        Py_INCREF(key);
        if (PyDict_DelItem(c->stmts, key) < 0) {
            PyErr_Clear();
        }
        Py_DECREF(key);
    }
#ifdef LIBPQ_HAS_CLOSE_PREPARED
    if (names != NULL) {
        stmt_close(c, names);
        Py_DECREF(names);
    }
#endif
}

/* Forget every cached statement (stale plans, a user's DEALLOCATE ALL or DISCARD ALL):
   the statements sent after this prepare their own again; the forgotten ones are closed
   on the server with libpq 17+ (above). */
void agentdb_stmt_forget_all(agentdb_Connection *c)
{
    if (PyDict_GET_SIZE(c->stmts) == 0) {
        return;
    }
#ifdef LIBPQ_HAS_CLOSE_PREPARED
    PyObject *names = PyList_New(0);
    if (names != NULL) {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(c->stmts, &pos, &key, &value)) {
            stmt_add_name(names, value);
        }
    }
    PyDict_Clear(c->stmts);
    if (names == NULL) {
        PyErr_Clear();
        return;
    }
    stmt_close(c, names);
    Py_DECREF(names);
#else
    PyDict_Clear(c->stmts);
#endif
}

/* A named prepared statement that "does not exist" (26000) or "already
   exists" (42P05) means a pooler moved us between server connections: say
   what to do about it. */
void agentdb_stmt_pooler_hint(PyObject *exc)
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

/* clear_statement_cache(): forget every cached prepared statement, closing them on the
   server in order (libpq 17+: a Close each; before: one DEALLOCATE ALL, which drops the
   user's own PREPAREd statements too).  For code that changed the schema inside a
   transaction: the next statements are prepared again instead of failing with "cached
   plan must not change result type". */
PyObject *agentdb_Connection_clear_statement_cache(PyObject *self, PyObject *Py_UNUSED(ig))
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    if (PyDict_GET_SIZE(c->stmts) == 0) {
        Py_RETURN_NONE;
    }
#ifdef LIBPQ_HAS_CLOSE_PREPARED
    agentdb_stmt_forget_all(c);
#else
    PyDict_Clear(c->stmts);
    if (c->state == CONN_READY &&
        agentdb_connection_internal(c, "DEALLOCATE ALL", 0, NULL, 0) < 0) {
        return NULL;
    }
#endif
    Py_RETURN_NONE;
}

PyObject *agentdb_Connection__statement_count(PyObject *self, PyObject *Py_UNUSED(ig))
{
    return PyLong_FromSsize_t(PyDict_GET_SIZE(((agentdb_Connection *)self)->stmts));
}
