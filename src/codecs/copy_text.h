/* codecs/copy_text.h: _core._copy_text, COPY FROM STDIN payloads in text format. */
#ifndef AGENTDB_COPY_TEXT_H
#define AGENTDB_COPY_TEXT_H

#include <Python.h>

/* _core._copy_text(records) -> bytes: the COPY FROM STDIN payload (text format) for an
   iterable of rows (sequences of values). */
PyObject *agentdb_copy_text_py(PyObject *module, PyObject *records);

#endif
