/* errors.h: turning libpq and server errors into Python exceptions. */
#ifndef AGENTDB_ERRORS_H
#define AGENTDB_ERRORS_H

#include "agentdb.h"

/* A new exception instance for a failed PGresult (PGRES_FATAL_ERROR and
   friends).  The class is chosen by SQLSTATE (st->sqlstate_map, falling back
   to the PEP 249 class of the SQLSTATE's two-letter class, then
   DatabaseError).  The instance carries .sqlstate, .severity, .detail, .hint,
   .position (int or None), .context, .schema_name, .table_name, .column_name,
   .constraint_name, .data_type_name and .server_message (the primary message).
   str(exc) is the primary message only, as asyncpg does (DETAIL and HINT are
   in their attributes, not appended).  NULL => error set (memory). */
PyObject *agentdb_error_from_result(agentdb_state *st, const PGresult *res);

/* A new exception instance of class `cls` with message `msg` and
   .sqlstate = sqlstate (may be NULL -> None). NULL => error set. */
PyObject *agentdb_error_new(PyObject *cls, const char *msg, const char *sqlstate);

/* A new exception instance for a connection-level failure, from
   PQerrorMessage(conn) (trailing newlines removed), prefixed by `context` when
   given ("could not connect: ...").  Class: `cls`.  `secret` (may be NULL) is
   a password: every occurrence of it in the message is replaced by "********".
   NULL => error set. */
PyObject *agentdb_error_from_conn(agentdb_state *st, PGconn *conn, PyObject *cls,
                                  const char *context, const char *secret);

/* Raise helpers: set the error and return NULL. */
PyObject *agentdb_raise(PyObject *cls, const char *fmt, ...);

#endif /* AGENTDB_ERRORS_H */
