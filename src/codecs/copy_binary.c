/* The payload of COPY ... FROM STDIN (FORMAT binary), built from Python rows and the column
   types: the signature, flags and header extension; per row an int16 field count and per
   field an int32 length (-1: NULL) and the value in its type's binary send format (the
   typed encoders of the codecs); an int16 -1 at the end.  All big-endian.

   The server parses this faster than the text format (no text-to-int, -float, -date...),
   which is where asyncpg's copy_records_to_table gained on ours. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include "../agentdb.h"
#include "byteorder.h"
#include "../codecs.h"
#include "copy_binary.h"

/* A table has at most 1600 columns; the field count is an int16. */
#define MAX_FIELDS 1600

static const char SIGNATURE[11] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', '\377', '\r', '\n', '\0'};

/* The encoder's exception, said of COPY record `row`, column `col`: a DataError becomes
   DataError("COPY record R, column C: <what was wrong>") caused by it (the encoders speak
   of "query argument $N"); other exceptions pass unchanged. */
static void reraise_for_record(agentdb_state *st, int row, int col)
{
    static const char prefix[] = "invalid input for query argument $";
    PyObject *exc = PyErr_GetRaisedException();
    if (exc == NULL || st->DataError == NULL ||
        !PyErr_GivenExceptionMatches(exc, st->DataError)) {
        PyErr_SetRaisedException(exc);
        return;
    }
    PyObject *msg = PyObject_Str(exc);
    if (msg == NULL) {
        PyErr_Clear();
        PyErr_SetRaisedException(exc);
        return;
    }
    const char *text = PyUnicode_AsUTF8(msg);
    if (text == NULL) {
        PyErr_Clear();
        text = "invalid value";
    }
    else if (strncmp(text, prefix, sizeof prefix - 1) == 0 && strstr(text, ": ") != NULL) {
        text = strstr(text, ": ") + 2;
    }
    PyErr_Format(st->DataError, "COPY record %d, column %d: %s", row, col, text);
    Py_DECREF(msg);
    PyObject *outer = PyErr_GetRaisedException();
    if (outer == NULL) {
        Py_DECREF(exc);
        return;
    }
    PyException_SetCause(outer, exc); /* steals exc */
    PyErr_SetRaisedException(outer);
}

/* Reads the type OIDs.  The number of them (>= 0), or -1 with an error set. */
static Py_ssize_t read_oids(PyObject *obj, Oid **out)
{
    *out = NULL;
    if (!PyTuple_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "_copy_binary() oids must be a tuple, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(obj);
    if (n > MAX_FIELDS) {
        PyErr_Format(PyExc_ValueError, "COPY of %zd columns (a table has at most %d)", n,
                     MAX_FIELDS);
        return -1;
    }
    Oid *oids = PyMem_Malloc((size_t)(n > 0 ? n : 1) * sizeof(Oid));
    if (oids == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned long v = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(obj, i));
        if (v == (unsigned long)-1 && PyErr_Occurred()) {
            PyMem_Free(oids);
            return -1;
        }
        if (v > UINT32_MAX) {
            PyMem_Free(oids);
            PyErr_SetString(PyExc_OverflowError, "type OID out of range");
            return -1;
        }
        oids[i] = (Oid)v;
    }
    *out = oids;
    return n;
}

/* One row's fields, from `items`, a snapshot of the record (a tuple of ncols values):
   encoders may run Python code that changes a list record.  0 => ok, -1 => error set. */
static int put_row(agentdb_state *st, agentdb_params *p, PyObject *items, const Oid *oids,
                   Py_ssize_t ncols, int nrow)
{
    char b[4];
    wr_u16(b, (uint16_t)ncols);
    if (agentdb_params_put(p, b, 2) < 0) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < ncols; i++) {
        PyObject *v = PyTuple_GET_ITEM(items, i); /* borrowed from the snapshot */
        if (v == Py_None) {
            wr_u32(b, UINT32_MAX); /* -1: NULL */
            if (agentdb_params_put(p, b, 4) < 0) {
                return -1;
            }
            continue;
        }
        /* The length goes in front once known; the buffer may move meanwhile. */
        size_t lenpos = p->used;
        if (agentdb_params_put(p, b, 4) < 0) {
            return -1;
        }
        if (agentdb_encode_binary(st, p, v, oids[i], (int)i + 1) < 0) {
            reraise_for_record(st, nrow, (int)i + 1);
            return -1;
        }
        size_t len = p->used - lenpos - 4;
        if (len > INT32_MAX) {
            PyErr_Format(st->DataError, "COPY record %d, column %zd: value too large (%zu bytes)",
                         nrow, i + 1, len);
            return -1;
        }
        wr_u32(p->buf + lenpos, (uint32_t)len);
    }
    return 0;
}

PyObject *agentdb_copy_binary_py(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    return agentdb_copy_binary(agentdb_get_state(module), args, nargs);
}

PyObject *agentdb_copy_binary(agentdb_state *st, PyObject *const *args, Py_ssize_t nargs)
{
    agentdb_params out;
    PyObject *it = NULL, *row = NULL, *res = NULL;
    Oid *oids = NULL;
    int nrow = 0;

    agentdb_params_scratch(&out);
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_copy_binary(records, oids) takes 2 arguments");
        return NULL;
    }
    Py_ssize_t ncols = read_oids(args[1], &oids);
    if (ncols < 0) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < ncols; i++) {
        if (!agentdb_has_binary_encoder(st, oids[i])) {
            PyMem_Free(oids);
            Py_RETURN_NONE;
        }
    }
    /* Signature, flags 0, header extension length 0. */
    static const char zeros[8] = {0};
    if (agentdb_params_put(&out, SIGNATURE, sizeof SIGNATURE) < 0 ||
        agentdb_params_put(&out, zeros, 8) < 0) {
        goto done;
    }
    /* A list of records is read as it is now, as executemany's rows are. */
    it = agentdb_iter_snapshot(args[0]);
    if (it == NULL) {
        goto done;
    }
    while ((row = PyIter_Next(it)) != NULL) {
        nrow++;
        /* A tuple as it is, a list copied, anything else must be iterable. */
        PyObject *items = agentdb_seq_snapshot(row, "COPY records must be sequences of values");
        if (items == NULL) {
            goto done;
        }
        Py_ssize_t n = PyTuple_GET_SIZE(items);
        if (n != ncols) {
            PyErr_Format(st->DataError, "COPY record %d has %zd value%s; the table's columns "
                         "being copied are %zd",
                         nrow, n, n == 1 ? "" : "s", ncols);
            Py_DECREF(items);
            goto done;
        }
        int rc = put_row(st, &out, items, oids, ncols, nrow);
        Py_DECREF(items);
        if (rc < 0) {
            goto done;
        }
        Py_CLEAR(row);
    }
    if (PyErr_Occurred()) {
        goto done;
    }
    char trailer[2];
    wr_u16(trailer, UINT16_MAX); /* -1 */
    if (agentdb_params_put(&out, trailer, 2) < 0) {
        goto done;
    }
    res = PyBytes_FromStringAndSize(out.buf, (Py_ssize_t)out.used);
done:
    Py_XDECREF(row);
    Py_XDECREF(it);
    PyMem_Free(oids);
    agentdb_params_free(&out);
    return res;
}
