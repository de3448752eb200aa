/* sqlclass.h: what a statement does to its session, read from its text. */
#ifndef AGENTDB_SQLCLASS_H
#define AGENTDB_SQLCLASS_H

#include "agentdb.h"

/* The flags of agentdb_sql_classify().  The reading is conservative: a
   statement it cannot place counts as changing the session, which costs only
   speed (it runs on a connection of its own and the session is reset after),
   never correctness. */
enum {
    /* Changes session state that outlives the statement: SET, RESET, LISTEN,
       PREPARE, DECLARE, DISCARD, CREATE TEMP, DO, CALL, set_config(),
       session advisory locks, ... */
    AGENTDB_SQL_SESSION = 1 << 0,
    /* Opens a transaction block (BEGIN, START TRANSACTION). */
    AGENTDB_SQL_BEGIN = 1 << 1,
    /* Ends the transaction block (COMMIT, ROLLBACK, END, ABORT, PREPARE
       TRANSACTION); never set together with AGENTDB_SQL_BEGIN: for several
       statements, the last of the two wins. */
    AGENTDB_SQL_END = 1 << 2,
    /* Creates or drops server-side prepared statements (PREPARE, DEALLOCATE,
       DISCARD ALL): the statement cache must follow. */
    AGENTDB_SQL_PREPARE = 1 << 3,
    /* Changes client_encoding (SET client_encoding, SET NAMES): refused, the
       core talks UTF-8. */
    AGENTDB_SQL_ENCODING = 1 << 4,
};

/* The flags above for the UTF-8 text `sql` of `n` bytes (one statement or
   several separated by ';').  Never fails. */
unsigned agentdb_sql_classify(const char *sql, Py_ssize_t n);

/* _classify_sql(sql: str) -> int: agentdb_sql_classify for tests. */
PyObject *agentdb_sql_classify_py(PyObject *module, PyObject *sql);

#endif /* AGENTDB_SQLCLASS_H */
