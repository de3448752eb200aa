/* connection.h: Connection, one nonblocking PGconn and its FIFO of statements. */
#ifndef AGENTDB_CONNECTION_H
#define AGENTDB_CONNECTION_H

#include "agentdb.h"

PyObject *agentdb_parse_dsn_py(PyObject *module, PyObject *dsn);

#endif /* AGENTDB_CONNECTION_H */
