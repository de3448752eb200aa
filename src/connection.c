/* connection.c: Connection, one nonblocking PGconn and its FIFO of statements. */
#include "connection.h"
/* STUB */
int agentdb_connection_setup(PyObject *module, agentdb_state *st) { (void)module; (void)st; return 0; }
PyObject *agentdb_parse_dsn_py(PyObject *module, PyObject *dsn) { (void)module; (void)dsn; Py_RETURN_NONE; }
