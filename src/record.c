/* record.c: Record, one result row, indexable by position and by column name. */
#include "record.h"
/* STUB: replaced by the record work. */
int agentdb_record_setup(PyObject *module, agentdb_state *st) { (void)module; (void)st; return 0; }
PyObject *agentdb_recorddesc_from_result(agentdb_state *st, const PGresult *res) { (void)st; (void)res; PyErr_SetString(PyExc_RuntimeError, "stub"); return NULL; }
PyObject *agentdb_record_new(agentdb_state *st, PyObject *desc, Py_ssize_t n) { (void)st; (void)desc; (void)n; PyErr_SetString(PyExc_RuntimeError, "stub"); return NULL; }
