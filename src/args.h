/* args.h: the one parser of the core's method arguments (args.c): a statement's query
   and values, and the keywords timeout= and column=, each with one rule everywhere. */
#ifndef AGENTDB_ARGS_H
#define AGENTDB_ARGS_H

#include "agentdb.h"

/* The keywords a method may take (bits of `allowed`). */
enum { AGENTDB_KW_TIMEOUT = 1, AGENTDB_KW_COLUMN = 2 };

/* What the keywords said; what was not given keeps its default. */
typedef struct {
    double timeout; /* seconds > 0; 0: none given (the connection's or pool's default) */
    int column;     /* fetchval's column, 0 to 1599; 0 when not given */
} agentdb_kwargs;

/* Parse the keywords of a METH_FASTCALL | METH_KEYWORDS method `method` (named in
   messages).  timeout=: None, or a number of seconds > 0; column=: an int from 0 to
   1599 (PostgreSQL's limit is 1600 columns).  Any other keyword, or one not in
   `allowed`, is a TypeError; a bad value a TypeError or ValueError naming it.
   0 => ok, -1 => error set. */
int agentdb_parse_kwargs(const char *method, PyObject *const *args, Py_ssize_t nargs,
                         PyObject *kwnames, unsigned allowed, agentdb_kwargs *out);

/* The positional (query, *values) of a statement method: the query must be a str; the
   values come back as a new tuple in *values.  0 => ok, -1 => error set. */
int agentdb_parse_query(const char *method, PyObject *const *args, Py_ssize_t nargs,
                        PyObject **query, PyObject **values);

#endif /* AGENTDB_ARGS_H */
