/* errors.c: the one place that turns libpq/server errors into Python exceptions. */
#include "errors.h"

#include <stdlib.h>
#include <string.h>

#include "errcodes.h"

/* The diagnostic fields an exception carries, in the order of error_fields. */
enum {
    FIELD_SQLSTATE,
    FIELD_SEVERITY,
    FIELD_MESSAGE,
    FIELD_DETAIL,
    FIELD_HINT,
    FIELD_POSITION,
    FIELD_CONTEXT,
    FIELD_SCHEMA_NAME,
    FIELD_TABLE_NAME,
    FIELD_COLUMN_NAME,
    FIELD_CONSTRAINT_NAME,
    FIELD_DATA_TYPE_NAME,
    FIELD_COUNT
};

typedef struct {
    const char *key;  /* key in _error_from_fields()'s dict */
    const char *attr; /* attribute of the exception */
    int code;         /* PG_DIAG_* for PQresultErrorField() */
} error_field;

static const error_field error_fields[FIELD_COUNT] = {
    {"sqlstate", "sqlstate", PG_DIAG_SQLSTATE},
    {"severity", "severity", PG_DIAG_SEVERITY},
    {"message", "server_message", PG_DIAG_MESSAGE_PRIMARY},
    {"detail", "detail", PG_DIAG_MESSAGE_DETAIL},
    {"hint", "hint", PG_DIAG_MESSAGE_HINT},
    {"position", "position", PG_DIAG_STATEMENT_POSITION},
    {"context", "context", PG_DIAG_CONTEXT},
    {"schema_name", "schema_name", PG_DIAG_SCHEMA_NAME},
    {"table_name", "table_name", PG_DIAG_TABLE_NAME},
    {"column_name", "column_name", PG_DIAG_COLUMN_NAME},
    {"constraint_name", "constraint_name", PG_DIAG_CONSTRAINT_NAME},
    {"data_type_name", "data_type_name", PG_DIAG_DATATYPE_NAME},
};

/* Server text in, str out.  Never fails on bad bytes (they become U+FFFD):
   an error report must not turn into a UnicodeDecodeError.  `len` < 0 =>
   strlen(s).  NULL => error set (memory). */
static PyObject *decode_text(const char *s, Py_ssize_t len)
{
    if (len < 0) {
        len = (Py_ssize_t)strlen(s);
    }
    return PyUnicode_DecodeUTF8(s, len, "replace");
}

/* Like decode_text, without trailing whitespace (libpq ends messages with
   "\n").  NULL => error set. */
static PyObject *decode_stripped(const char *s)
{
    Py_ssize_t len = (Py_ssize_t)strlen(s);
    while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' ' ||
                       s[len - 1] == '\t')) {
        len--;
    }
    return decode_text(s, len);
}

/* The PEP 249 class for an AGENTDB_BASE_* index (borrowed). */
static PyObject *base_class(agentdb_state *st, int base)
{
    switch (base) {
    case AGENTDB_BASE_DataError:
        return st->DataError;
    case AGENTDB_BASE_OperationalError:
        return st->OperationalError;
    case AGENTDB_BASE_IntegrityError:
        return st->IntegrityError;
    case AGENTDB_BASE_InternalError:
        return st->InternalError;
    case AGENTDB_BASE_ProgrammingError:
        return st->ProgrammingError;
    case AGENTDB_BASE_NotSupportedError:
        return st->NotSupportedError;
    default:
        return st->DatabaseError;
    }
}

/* The exception class for `sqlstate` (may be NULL), borrowed: the exact
   SQLSTATE class, else the PEP 249 class of its two-letter (then one-letter)
   class, else DatabaseError.  NULL => error set. */
static PyObject *class_for_sqlstate(agentdb_state *st, const char *sqlstate)
{
    if (sqlstate == NULL || sqlstate[0] == '\0') {
        return st->DatabaseError;
    }
    PyObject *key = PyUnicode_FromString(sqlstate);
    if (key == NULL) {
        return NULL;
    }
    PyObject *cls = PyDict_GetItemWithError(st->sqlstate_map, key); /* borrowed */
    Py_DECREF(key);
    if (cls != NULL) {
        return cls;
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    for (size_t len = 2; len >= 1; len--) {
        if (strlen(sqlstate) < len) {
            continue;
        }
        for (const agentdb_errclass *c = agentdb_errclasses; c->prefix != NULL; c++) {
            if (strlen(c->prefix) == len && strncmp(c->prefix, sqlstate, len) == 0) {
                return base_class(st, c->base);
            }
        }
    }
    return st->DatabaseError;
}

/* The .position value: the decimal number in `s`, or None when absent or not
   a number.  NULL => error set. */
static PyObject *position_value(const char *s)
{
    if (s != NULL && s[0] != '\0') {
        char *end = NULL;
        long n = strtol(s, &end, 10);
        if (*end == '\0') {
            return PyLong_FromLong(n);
        }
    }
    Py_RETURN_NONE;
}

/* The one exception builder behind every agentdb_error_* function.

   A new instance of `cls` (NULL => chosen from f[FIELD_SQLSTATE] by
   class_for_sqlstate) whose args are (message,), with every attribute of
   error_fields set from `f` (NULL entries => None; .position parsed as an
   int).  `message` (may be NULL => f[FIELD_MESSAGE], else "unknown error")
   is str(exc).  NULL => error set. */
static PyObject *error_build(agentdb_state *st, PyObject *cls, PyObject *message,
                             const char *const f[FIELD_COUNT])
{
    PyObject *msg = NULL, *exc = NULL, *value = NULL;

    if (cls == NULL) {
        cls = class_for_sqlstate(st, f[FIELD_SQLSTATE]); /* borrowed */
        if (cls == NULL) {
            goto error;
        }
    }
    if (message != NULL) {
        msg = Py_NewRef(message);
    }
    else if (f[FIELD_MESSAGE] != NULL) {
        msg = decode_text(f[FIELD_MESSAGE], -1);
    }
    else {
        msg = PyUnicode_FromString("unknown error");
    }
    if (msg == NULL) {
        goto error;
    }
    exc = PyObject_CallOneArg(cls, msg);
    if (exc == NULL) {
        goto error;
    }
    for (int i = 0; i < FIELD_COUNT; i++) {
        if (i == FIELD_POSITION) {
            value = position_value(f[i]);
        }
        else if (f[i] != NULL) {
            value = decode_text(f[i], -1);
        }
        else {
            value = Py_NewRef(Py_None);
        }
        if (value == NULL || PyObject_SetAttrString(exc, error_fields[i].attr, value) < 0) {
            goto error;
        }
        Py_CLEAR(value);
    }
    Py_DECREF(msg);
    return exc;

error:
    Py_XDECREF(value);
    Py_XDECREF(exc);
    Py_XDECREF(msg);
    return NULL;
}

PyObject *agentdb_error_from_result(agentdb_state *st, const PGresult *res)
{
    const char *f[FIELD_COUNT];
    PyObject *message = NULL, *exc;

    for (int i = 0; i < FIELD_COUNT; i++) {
        f[i] = PQresultErrorField(res, error_fields[i].code);
    }
    /* Errors libpq makes itself (lost connection, out of memory) have no
       fields: fall back to the whole message. */
    if (f[FIELD_MESSAGE] == NULL) {
        const char *whole = PQresultErrorMessage(res);
        message = decode_stripped(whole[0] != '\0' ? whole : "unknown error");
        if (message == NULL) {
            return NULL;
        }
    }
    exc = error_build(st, NULL, message, f);
    Py_XDECREF(message);
    return exc;
}

PyObject *agentdb_error_new(PyObject *cls, const char *msg, const char *sqlstate)
{
    const char *f[FIELD_COUNT] = {NULL};
    PyObject *message, *exc;

    assert(cls != NULL);
    message = decode_text(msg, -1);
    if (message == NULL) {
        return NULL;
    }
    f[FIELD_SQLSTATE] = sqlstate;
    exc = error_build(NULL, cls, message, f);
    Py_DECREF(message);
    return exc;
}

PyObject *agentdb_error_from_conn(agentdb_state *st, PGconn *conn, PyObject *cls,
                                  const char *context, const char *secret)
{
    const char *f[FIELD_COUNT] = {NULL};
    PyObject *raw = NULL, *message = NULL, *pw = NULL, *mask = NULL, *exc = NULL;
    const char *text = conn != NULL ? PQerrorMessage(conn) : "no connection";

    raw = decode_stripped(text[0] != '\0' ? text : "unknown error");
    if (raw == NULL) {
        goto error;
    }
    if (context != NULL && context[0] != '\0') {
        message = PyUnicode_FromFormat("%s: %U", context, raw);
    }
    else {
        message = Py_NewRef(raw);
    }
    if (message == NULL) {
        goto error;
    }
    /* libpq may echo parts of the connection string; never let a password
       reach a log through an exception message. */
    if (secret != NULL && secret[0] != '\0') {
        pw = decode_text(secret, -1);
        mask = PyUnicode_FromString("********");
        if (pw == NULL || mask == NULL) {
            goto error;
        }
        Py_SETREF(message, PyUnicode_Replace(message, pw, mask, -1));
        if (message == NULL) {
            goto error;
        }
    }
    exc = error_build(st, cls, message, f);

error:
    Py_XDECREF(mask);
    Py_XDECREF(pw);
    Py_XDECREF(message);
    Py_XDECREF(raw);
    return exc;
}

PyObject *agentdb_raise(PyObject *cls, const char *fmt, ...)
{
    va_list vargs;
    va_start(vargs, fmt);
    PyErr_FormatV(cls, fmt, vargs);
    va_end(vargs);
    return NULL;
}

#ifdef AGENTDB_TESTING
/* _error_from_fields(fields): the exception agentdb_error_from_result would
   build from these diagnostic fields (tests).  Keys are error_fields' keys,
   values str or None.  NULL => error set. */
static PyObject *errors_error_from_fields(PyObject *module, PyObject *fields)
{
    agentdb_state *st = agentdb_get_state(module);
    const char *f[FIELD_COUNT] = {NULL};
    PyObject *copy = NULL, *key, *value, *exc = NULL; /* key, value: borrowed */
    Py_ssize_t pos = 0;

    if (!PyDict_Check(fields)) {
        PyErr_SetString(PyExc_TypeError, "_error_from_fields() expects a dict");
        return NULL;
    }
    /* Our own copy keeps the UTF-8 buffers alive while we build. */
    copy = PyDict_Copy(fields);
    if (copy == NULL) {
        goto error;
    }
    while (PyDict_Next(copy, &pos, &key, &value)) {
        int i;
        const char *k = PyUnicode_Check(key) ? PyUnicode_AsUTF8(key) : NULL;
        if (k == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_TypeError, "field names must be str");
            }
            goto error;
        }
        for (i = 0; i < FIELD_COUNT && strcmp(error_fields[i].key, k) != 0; i++) {
        }
        if (i == FIELD_COUNT) {
            PyErr_Format(PyExc_KeyError, "unknown diagnostic field %R", key);
            goto error;
        }
        if (value == Py_None) {
            continue;
        }
        if (!PyUnicode_Check(value)) {
            PyErr_Format(PyExc_TypeError, "field %R must be str or None", key);
            goto error;
        }
        f[i] = PyUnicode_AsUTF8(value);
        if (f[i] == NULL) {
            goto error;
        }
    }
    exc = error_build(st, NULL, NULL, f);

error:
    Py_XDECREF(copy);
    return exc;
}

static PyMethodDef errors_methods[] = {
    {"_error_from_fields", errors_error_from_fields, METH_O,
     "_error_from_fields(fields): the exception a server error with these diagnostic fields "
     "becomes (tests)."},
    {NULL, NULL, 0, NULL},
};
#endif

/* A new exception class agentdb.errors.<name>(base) with class attributes
   `dict` (may be NULL), added to the module.  NULL => error set. */
static PyObject *new_class(PyObject *module, const char *name, const char *doc, PyObject *base,
                           PyObject *dict)
{
    char qualified[128];
    PyObject *cls;

    PyOS_snprintf(qualified, sizeof(qualified), "agentdb.errors.%s", name);
    cls = PyErr_NewExceptionWithDoc(qualified, doc, base, dict);
    if (cls == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, name, cls) < 0) {
        Py_DECREF(cls);
        return NULL;
    }
    return cls;
}

/* Error's class attributes: every diagnostic attribute defaults to None, so
   reading one never fails, even on an instance users made themselves.
   NULL => error set. */
static PyObject *error_defaults(void)
{
    PyObject *dict = PyDict_New();
    if (dict == NULL) {
        return NULL;
    }
    for (int i = 0; i < FIELD_COUNT; i++) {
        if (PyDict_SetItemString(dict, error_fields[i].attr, Py_None) < 0) {
            Py_DECREF(dict);
            return NULL;
        }
    }
    return dict;
}

/* Creates the generated SQLSTATE classes and st->sqlstate_map.
   0 => ok, -1 => error set. */
static int setup_sqlstate_classes(PyObject *module, agentdb_state *st)
{
    PyObject *dict = NULL, *code = NULL, *cls = NULL;
    char doc[64];

    st->sqlstate_map = PyDict_New();
    if (st->sqlstate_map == NULL) {
        return -1;
    }
    for (const agentdb_errcode *e = agentdb_errcodes; e->sqlstate != NULL; e++) {
        code = PyUnicode_FromString(e->sqlstate);
        if (code == NULL) {
            goto error;
        }
        /* The class knows its SQLSTATE, as psycopg's do (UniqueViolation.sqlstate). */
        dict = Py_BuildValue("{sO}", "sqlstate", code);
        if (dict == NULL) {
            goto error;
        }
        PyOS_snprintf(doc, sizeof(doc), "SQLSTATE %s.", e->sqlstate);
        cls = new_class(module, e->name, doc, base_class(st, e->base), dict);
        if (cls == NULL || PyDict_SetItem(st->sqlstate_map, code, cls) < 0) {
            goto error;
        }
        Py_CLEAR(cls);
        Py_CLEAR(dict);
        Py_CLEAR(code);
    }
    return 0;

error:
    Py_XDECREF(cls);
    Py_XDECREF(dict);
    Py_XDECREF(code);
    return -1;
}

/* Error.pgcode: the SQLSTATE under psycopg2's name, which SQLAlchemy's PostgreSQL code
   and tests read (``exc.orig.pgcode``); an alias of .sqlstate (instance or class
   attribute), so it never disagrees with it. */
static PyObject *error_get_pgcode(PyObject *self, void *closure)
{
    (void)closure;
    return PyObject_GetAttrString(self, "sqlstate");
}

static PyGetSetDef error_pgcode_getset = {
    "pgcode", error_get_pgcode, NULL, "The SQLSTATE (psycopg2's name for .sqlstate).", NULL};

int agentdb_errors_setup(PyObject *module, agentdb_state *st)
{
    PyObject *defaults = error_defaults();
    if (defaults == NULL) {
        return -1;
    }
    st->Error = new_class(module, "Error", "Base class of every agentdb error (PEP 249).",
                          PyExc_Exception, defaults);
    Py_DECREF(defaults);
    if (st->Error == NULL) {
        return -1;
    }
    PyObject *pgcode = PyDescr_NewGetSet((PyTypeObject *)st->Error, &error_pgcode_getset);
    if (pgcode == NULL) {
        return -1;
    }
    int rc = PyObject_SetAttrString(st->Error, "pgcode", pgcode);
    Py_DECREF(pgcode);
    if (rc < 0) {
        return -1;
    }
#define CLASS(field, base, doc)                                 \
    st->field = new_class(module, #field, doc, base, NULL);     \
    if (st->field == NULL) {                                    \
        return -1;                                              \
    }
    CLASS(Warning, PyExc_Exception, "Important warnings (PEP 249).");
    CLASS(InterfaceError, st->Error, "Misuse of the driver itself, not of the database.");
    CLASS(DatabaseError, st->Error, "Errors reported by or about the database.");
    CLASS(DataError, st->DatabaseError, "Problems with the processed data.");
    CLASS(OperationalError, st->DatabaseError,
          "Errors of the database's operation, not necessarily the programmer's.");
    CLASS(IntegrityError, st->DatabaseError, "A constraint of the database was violated.");
    CLASS(InternalError, st->DatabaseError, "The database hit an internal error.");
    CLASS(ProgrammingError, st->DatabaseError,
          "Programming errors: bad SQL, missing table, wrong number of parameters.");
    CLASS(NotSupportedError, st->DatabaseError,
          "The database does not support the method or API used.");
    CLASS(ConnectionLostError, st->OperationalError,
          "The connection to the server was lost; it cannot be used any more.");
    CLASS(PoolTimeout, PyExc_TimeoutError,
          "No connection could be acquired from the pool within its timeout.");
#undef CLASS
    if (setup_sqlstate_classes(module, st) < 0) {
        return -1;
    }
#ifdef AGENTDB_TESTING
    return PyModule_AddFunctions(module, errors_methods);
#else
    return 0;
#endif
}
