/* codecs/copy_binary.h: _core._copy_binary, COPY FROM STDIN payloads in binary format. */
#ifndef AGENTDB_COPY_BINARY_H
#define AGENTDB_COPY_BINARY_H

#include "../agentdb.h"

/* _core._copy_binary(records, oids) -> bytes | None: the COPY FROM STDIN payload in binary
   format for rows of len(oids) values of those types, or None when one of the types has
   no binary encoder (use the text format then; `records` is left untouched). */
PyObject *agentdb_copy_binary_py(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
/* The same, for Connection._copy_binary: with the types st->cur_types points to. */
PyObject *agentdb_copy_binary(agentdb_state *st, PyObject *const *args, Py_ssize_t nargs);

#endif
