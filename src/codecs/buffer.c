/* codecs/buffer.c: agentdb_params: its growable buffer, a statement's arguments encoded in it. */
#include "codecs_int.h"

#define MAX_PARAMS 65535

/* ---------------------------------------------------------------------------------------
   The buffer */

/* Appends the UTF-8 of a str.  0 => ok, -1 => error set. */
static int buf_put_str(agentdb_params *p, PyObject *s)
{
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    return u == NULL ? -1 : buf_put(p, u, (size_t)n);
}

/* Appends str(obj) (or, with `repr`, repr(obj)). */
int agentdb_buf_put_strof(agentdb_params *p, PyObject *obj, int repr)
{
    PyObject *s = repr ? PyObject_Repr(obj) : PyObject_Str(obj);
    if (s == NULL) {
        return -1;
    }
    int rc = buf_put_str(p, s);
    Py_DECREF(s);
    return rc;
}

/* Appends the UTF-8 of str `s`, refusing NUL.  0 => ok, -1 => error set. */
int agentdb_put_text(agentdb_state *st, agentdb_params *p, PyObject *s, int argno)
{
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    if (u == NULL) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            PyErr_Clear();
            return agentdb_bad_arg(st, argno, s, "the string cannot be encoded to UTF-8");
        }
        return -1;
    }
    if (memchr(u, '\0', (size_t)n) != NULL) {
        return agentdb_nul_error(st, argno);
    }
    return buf_put(p, u, (size_t)n);
}

int agentdb_params_put(agentdb_params *p, const void *data, size_t n)
{
    return buf_put(p, data, n);
}

int agentdb_params_reserve(agentdb_params *p, size_t extra)
{
    return buf_reserve(p, extra);
}

void agentdb_params_scratch(agentdb_params *p)
{
    p->n = 0;
    p->values = NULL;
    p->lengths = NULL;
    p->formats = NULL;
    p->types = NULL;
    p->offsets = NULL;
    p->arrays = NULL;
    /* The inline buffer is left as it is: it holds nothing until `used` says so. */
    p->buf = p->small;
    p->used = 0;
    p->cap = sizeof p->small;
}

void agentdb_params_free(agentdb_params *p)
{
    if (p->buf != NULL && p->buf != p->small) {
        PyMem_Free(p->buf);
    }
    PyMem_Free(p->arrays);
    /* Empty again, so a second free (or a reuse) is harmless. */
    agentdb_params_scratch(p);
}

/* ---------------------------------------------------------------------------------------
   Snapshots of the containers encoders read */

PyObject *agentdb_seq_snapshot(PyObject *v, const char *errmsg)
{
    if (PyTuple_Check(v)) {
        return Py_NewRef(v);
    }
    if (PyList_Check(v)) {
        return PyList_AsTuple(v);
    }
    PyObject *it = PyObject_GetIter(v);
    if (it == NULL) {
        if (errmsg != NULL && PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_SetString(PyExc_TypeError, errmsg);
        }
        return NULL;
    }
    PyObject *items = PySequence_Tuple(it);
    Py_DECREF(it);
    return items;
}

PyObject *agentdb_iter_snapshot(PyObject *v)
{
    if (!PyList_Check(v)) {
        return PyObject_GetIter(v);
    }
    PyObject *items = PyList_AsTuple(v);
    if (items == NULL) {
        return NULL;
    }
    PyObject *it = PyObject_GetIter(items);
    Py_DECREF(items);
    return it;
}

/* ---------------------------------------------------------------------------------------
   A statement's arguments */

#define NULL_OFFSET ((size_t)-1)

/* Encodes args[i] into p's buffer and slot i.  0 => ok, -1 => error set. */
static int encode_one(agentdb_state *st, agentdb_params *p, int i, PyObject *v, int typed,
                      Oid oid, const agentdb_typeopts *o)
{
    int argno = i + 1, format = 0, rc;
    Oid type = typed ? oid : 0;
    size_t start = p->used;

    if (v == Py_None) {
        p->offsets[i] = NULL_OFFSET;
        p->lengths[i] = 0;
        p->formats[i] = 0;
        p->types[i] = type;
        return 0;
    }
    if (typed) {
        if (agentdb_array_elem_oid(oid)) {
            rc = agentdb_enc_array(st, p, v, oid, argno, &format);
        }
        else {
            encoder e = agentdb_typed_encoder_for(o, oid);
            format = e.format;
            rc = e.fn(st, p, v, oid, argno);
        }
    }
    else if (PyBytes_Check(v) || PyByteArray_Check(v) || PyMemoryView_Check(v)) {
        type = OID_BYTEA;
        format = 1;
        rc = agentdb_enc_bytea(st, p, v, OID_BYTEA, argno);
    }
    else {
        if (PyBool_Check(v)) {
            type = OID_BOOL;
        }
        rc = agentdb_enc_untyped_text(st, p, v, argno, 0);
    }
    if (rc < 0) {
        return -1;
    }
    size_t len = p->used - start;
    if (len > INT32_MAX - 1) {
        return agentdb_bad_arg(st, argno, v, "value too large to send (%zu bytes)", len);
    }
    /* Text values are read up to a NUL by libpq: they may not contain one. */
    if (format == 0 && memchr(p->buf + start, '\0', len) != NULL) {
        return agentdb_nul_error(st, argno);
    }
    if (buf_put(p, "", 1) < 0) { /* the terminator text values need */
        return -1;
    }
    p->offsets[i] = start;
    p->lengths[i] = (int)len;
    p->formats[i] = format;
    p->types[i] = type;
    return 0;
}

int agentdb_params_encode(agentdb_state *st, agentdb_params *p, PyObject *args,
                          const Oid *types, int ntypes)
{
    return agentdb_params_encode_for(st, p, args, types, ntypes, NULL);
}

int agentdb_params_encode_for(agentdb_state *st, agentdb_params *p, PyObject *args,
                              const Oid *types, int ntypes, const agentdb_typeopts *o)
{
    PyObject *seq = NULL;
    Py_ssize_t n;

    agentdb_params_scratch(p);

    /* A snapshot: encoders run Python code, which may change a list of arguments. */
    if (!is_seq(args)) {
        PyErr_Format(PyExc_TypeError, "query arguments must be a tuple or list, not %.100s",
                     Py_TYPE(args)->tp_name);
        goto error;
    }
    seq = agentdb_seq_snapshot(args, NULL);
    if (seq == NULL) {
        goto error;
    }
    n = PyTuple_GET_SIZE(seq);
    if (types != NULL && n != ntypes) {
        PyErr_Format(st->InterfaceError ? st->InterfaceError : PyExc_TypeError,
                     "the statement expects %d arguments, %zd were given", ntypes, n);
        goto error;
    }
    if (n > MAX_PARAMS) {
        PyErr_Format(st->InterfaceError ? st->InterfaceError : PyExc_TypeError,
                     "too many arguments: %zd (PostgreSQL accepts at most %d)", n, MAX_PARAMS);
        goto error;
    }
    if (n > 0) {
        /* One allocation, most aligned arrays first. */
        size_t sz = (size_t)n * (sizeof(char *) + sizeof(size_t) + 2 * sizeof(int) + sizeof(Oid));
        char *a = PyMem_Malloc(sz);
        if (a == NULL) {
            PyErr_NoMemory();
            goto error;
        }
        p->arrays = a;
        p->values = (const char **)a;
        a += (size_t)n * sizeof(char *);
        p->offsets = (size_t *)a;
        a += (size_t)n * sizeof(size_t);
        p->lengths = (int *)a;
        a += (size_t)n * sizeof(int);
        p->formats = (int *)a;
        a += (size_t)n * sizeof(int);
        p->types = (Oid *)a;
    }
    p->n = (int)n;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (encode_one(st, p, (int)i, PyTuple_GET_ITEM(seq, i), types != NULL,
                       types != NULL ? types[i] : 0, o) < 0) {
            goto error;
        }
    }
    /* The buffer has stopped moving: offsets become pointers. */
    for (Py_ssize_t i = 0; i < n; i++) {
        p->values[i] = p->offsets[i] == NULL_OFFSET ? NULL : p->buf + p->offsets[i];
    }
    Py_DECREF(seq);
    return 0;
error:
    Py_XDECREF(seq);
    agentdb_params_free(p);
    return -1;
}
