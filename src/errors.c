/* errors.c: the one place that turns libpq/server errors into Python exceptions. */
#include "errors.h"
/* STUB: replaced by the errors work. */
int agentdb_errors_setup(PyObject *module, agentdb_state *st) { (void)module; (void)st; return 0; }
PyObject *agentdb_error_from_result(agentdb_state *st, const PGresult *res) { (void)st; (void)res; PyErr_SetString(PyExc_RuntimeError, "stub"); return NULL; }
PyObject *agentdb_error_new(PyObject *cls, const char *msg, const char *sqlstate) { (void)sqlstate; return PyObject_CallFunction(cls, "s", msg); }
PyObject *agentdb_error_from_conn(agentdb_state *st, PGconn *conn, PyObject *cls, const char *context, const char *secret) { (void)st; (void)context; (void)secret; return PyObject_CallFunction(cls, "s", PQerrorMessage(conn)); }
PyObject *agentdb_raise(PyObject *cls, const char *fmt, ...) { PyErr_SetString(cls, fmt); return NULL; }
