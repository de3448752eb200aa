/* codecs/vector.c: pgvector's vector and halfvec types, both ways: binary (and text
   results) into array('f'), lists / array('f'|'d') / float32 and float64 buffers (numpy
   arrays among them) out in the binary format.  Their OIDs are per database: a connection
   finds them at connect (agentdb/connection.py) and keeps them in its agentdb_typeopts. */
#include "codecs_int.h"

#include <float.h>
#include <math.h>

/* pgvector's VECTOR_MAX_DIM and HALFVEC_MAX_DIM. */
#define VECTOR_MAX_DIM 16000

/* ---------------------------------------------------------------------------------------
   float16 <-> float32 (IEEE 754 binary16, as pgvector's halfvec stores it) */

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        }
        else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while ((man & 0x400u) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    }
    else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    }
    else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* A finite float within halfvec's range (checked by the caller) to binary16, rounded to
   nearest, ties to even. */
static uint16_t float_to_half(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    int32_t exp = (int32_t)((bits >> 23) & 0xff) - 127 + 15;
    uint32_t man = bits & 0x7fffffu;
    if (exp >= 0x1f) {
        return (uint16_t)(sign | 0x7c00u); /* not reached: the caller refuses it */
    }
    if (exp <= 0) {
        if (exp < -10) {
            return sign; /* underflows to zero */
        }
        man |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1u))) {
            half++;
        }
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((uint32_t)exp << 10) | (man >> 13);
    uint32_t rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) {
        half++; /* may carry into the exponent: still right, up to infinity */
    }
    return (uint16_t)(sign | half);
}

/* ---------------------------------------------------------------------------------------
   Decoding: into array('f') */

/* A new array('f') of n zeros (the cached one-item template, repeated), its buffer in
   *view (released by the caller). NULL => error set. */
static PyObject *new_float_array(agentdb_state *st, Py_ssize_t n, Py_buffer *view)
{
    PyObject *arr = PySequence_Repeat(CACHED(st, CACHE_FLOAT_ARRAY), n);
    if (arr == NULL) {
        return NULL;
    }
    if (PyObject_GetBuffer(arr, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        Py_DECREF(arr);
        return NULL;
    }
    if (view->len != n * (Py_ssize_t)sizeof(float)) { /* array('f') holds C floats */
        PyBuffer_Release(view);
        Py_DECREF(arr);
        PyErr_SetString(PyExc_SystemError, "array('f') items are not 4 bytes");
        return NULL;
    }
    return arr;
}

/* vector / halfvec, binary: int16 dim, int16 unused, dim items of `width` bytes. */
static PyObject *dec_vec_bin(agentdb_state *st, const char *data, int len, int width,
                             const char *type)
{
    if (len < 4) {
        return agentdb_bad_length(st, type, len);
    }
    int dim = (int)(int16_t)rd_u16(data);
    if (dim < 0 || len != 4 + dim * width) {
        return agentdb_bad_length(st, type, len);
    }
    Py_buffer view;
    PyObject *arr = new_float_array(st, dim, &view);
    if (arr == NULL) {
        return NULL;
    }
    float *out = view.buf;
    const char *p = data + 4;
    for (int i = 0; i < dim; i++, p += width) {
        if (width == 4) {
            uint32_t bits = rd_u32(p);
            memcpy(&out[i], &bits, sizeof bits);
        }
        else {
            out[i] = half_to_float(rd_u16(p));
        }
    }
    PyBuffer_Release(&view);
    return arr;
}

PyObject *agentdb_dec_vector_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    return dec_vec_bin(st, data, len, 4, "vector");
}

PyObject *agentdb_dec_halfvec_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    return dec_vec_bin(st, data, len, 2, "halfvec");
}

/* vector / halfvec, text: "[1,2.5,-3e-05]". */
PyObject *agentdb_dec_vector_text(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len < 2 || data[0] != '[' || data[len - 1] != ']') {
        return agentdb_raise_data(st, "invalid vector text: %.40s", data);
    }
    int dim = 0;
    for (int i = 1; i < len - 1; i++) {
        dim += data[i] == ',';
    }
    dim += len > 2;
    Py_buffer view;
    PyObject *arr = new_float_array(st, dim, &view);
    if (arr == NULL) {
        return NULL;
    }
    float *out = view.buf;
    const char *p = data + 1;
    for (int i = 0; i < dim; i++) {
        char *end;
        double d = PyOS_string_to_double(p, &end, NULL);
        if ((d == -1.0 && PyErr_Occurred()) || end == p || (*end != ',' && *end != ']')) {
            PyErr_Clear();
            PyBuffer_Release(&view);
            Py_DECREF(arr);
            return agentdb_raise_data(st, "invalid vector text: %.40s", data);
        }
        out[i] = (float)d;
        p = end + 1;
    }
    PyBuffer_Release(&view);
    return arr;
}

/* ---------------------------------------------------------------------------------------
   Encoding: the binary send format */

/* The C type of a buffer's items: 'f' float, 'd' double, 0 anything else. */
static char float_format(const Py_buffer *view)
{
    const char *f = view->format ? view->format : "B";
    if (*f == '@' || *f == '=') {
        f++;
    }
#if PY_LITTLE_ENDIAN
    if (*f == '<') {
        f++;
    }
#else
    if (*f == '>' || *f == '!') {
        f++;
    }
#endif
    if ((f[0] == 'f' || f[0] == 'd') && f[1] == '\0') {
        return f[0];
    }
    return 0;
}

/* Appends item i's value, checked as the server checks it. 0 => ok, -1 => error set. */
static int put_item(agentdb_state *st, agentdb_params *p, PyObject *v, double d, int half,
                    int argno)
{
    const char *type = half ? "halfvec" : "vector";
    if (isnan(d)) {
        return agentdb_bad_arg(st, argno, v, "NaN not allowed in %s", type);
    }
    if (isinf(d)) {
        return agentdb_bad_arg(st, argno, v, "infinite value not allowed in %s", type);
    }
    if (half) {
        float f = (float)d;
        /* 65520 and up round to infinity in binary16. */
        if (!(fabs(d) < 65520.0)) {
            return agentdb_bad_arg(st, argno, v, "value %g out of range for type halfvec", d);
        }
        char b[2];
        wr_u16(b, float_to_half(f));
        return buf_put(p, b, 2);
    }
    if (d > FLT_MAX || d < -FLT_MAX) {
        return agentdb_bad_arg(st, argno, v, "value %g out of range for type vector", d);
    }
    float f = (float)d;
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return buf_put_u32(p, bits);
}

static int put_header(agentdb_state *st, agentdb_params *p, PyObject *v, Py_ssize_t dim,
                      int half, int argno)
{
    const char *type = half ? "halfvec" : "vector";
    if (dim < 1) {
        return agentdb_bad_arg(st, argno, v, "%s must have at least 1 dimension", type);
    }
    if (dim > VECTOR_MAX_DIM) {
        return agentdb_bad_arg(st, argno, v, "%s cannot have more than %d dimensions", type,
                               VECTOR_MAX_DIM);
    }
    if (buf_reserve(p, 4 + (size_t)dim * (half ? 2 : 4)) < 0) {
        return -1;
    }
    char b[4];
    wr_u16(b, (uint16_t)dim);
    wr_u16(b + 2, 0);
    return buf_put(p, b, 4);
}

/* A float32/float64 buffer (array('f'), array('d'), a numpy array). */
static int enc_from_buffer(agentdb_state *st, agentdb_params *p, PyObject *v,
                           const Py_buffer *view, char fmt, int half, int argno)
{
    Py_ssize_t n = view->len / view->itemsize;
    if (put_header(st, p, v, n, half, argno) < 0) {
        return -1;
    }
    const char *b = view->buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        double d;
        if (fmt == 'f') {
            float f;
            memcpy(&f, b + i * 4, sizeof f);
            d = f;
        }
        else {
            memcpy(&d, b + i * 8, sizeof d);
        }
        if (put_item(st, p, v, d, half, argno) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Any other iterable of numbers (a list, a tuple, numpy arrays of other dtypes). */
static int enc_from_items(agentdb_state *st, agentdb_params *p, PyObject *v, int half,
                          int argno)
{
    const char *type = half ? "halfvec" : "vector";
    PyObject *items = agentdb_seq_snapshot(v, NULL);
    if (items == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError)) {
            return -1;
        }
        PyErr_Clear();
        return agentdb_bad_arg(st, argno, v,
                               "a list of floats, array('f') or a numpy array is required "
                               "for %s",
                               type);
    }
    Py_ssize_t n = PyTuple_GET_SIZE(items);
    int rc = put_header(st, p, v, n, half, argno);
    for (Py_ssize_t i = 0; rc == 0 && i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(items, i);
        double d;
        if (PyFloat_Check(item)) {
            d = PyFloat_AS_DOUBLE(item);
        }
        else if (PyUnicode_Check(item) || PyBytes_Check(item) || item == Py_None ||
                 (Py_TYPE(item)->tp_as_number == NULL ||
                  (Py_TYPE(item)->tp_as_number->nb_float == NULL &&
                   Py_TYPE(item)->tp_as_number->nb_index == NULL))) {
            rc = agentdb_bad_arg(st, argno, v, "%s element %zd is %.60s, not a float", type, i,
                                 Py_TYPE(item)->tp_name);
            break;
        }
        else {
            d = PyFloat_AsDouble(item);
            if (d == -1.0 && PyErr_Occurred()) {
                if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
                    rc = -1;
                    break;
                }
                PyErr_Clear();
                rc = agentdb_bad_arg(st, argno, v, "%s element %zd out of range", type, i);
                break;
            }
        }
        rc = put_item(st, p, v, d, half, argno);
    }
    Py_DECREF(items);
    return rc;
}

static int enc_vec(agentdb_state *st, agentdb_params *p, PyObject *v, int half, int argno)
{
    if (PyUnicode_Check(v) || PyBytes_Check(v) || PyByteArray_Check(v)) {
        return agentdb_bad_arg(st, argno, v,
                               "a list of floats, array('f') or a numpy array is required "
                               "for %s, not %.40s",
                               half ? "halfvec" : "vector", Py_TYPE(v)->tp_name);
    }
    if (PyObject_CheckBuffer(v)) {
        Py_buffer view;
        if (PyObject_GetBuffer(v, &view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) == 0) {
            char fmt = float_format(&view);
            int rc = 0;
            if (fmt != 0 && view.ndim <= 1 && view.itemsize == (fmt == 'f' ? 4 : 8)) {
                rc = enc_from_buffer(st, p, v, &view, fmt, half, argno);
                PyBuffer_Release(&view);
                return rc;
            }
            PyBuffer_Release(&view);
        }
        else {
            PyErr_Clear(); /* not contiguous: its items, one by one */
        }
    }
    return enc_from_items(st, p, v, half, argno);
}

int agentdb_enc_vector(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    (void)oid;
    return enc_vec(st, p, v, 0, argno);
}

int agentdb_enc_halfvec(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    (void)oid;
    return enc_vec(st, p, v, 1, argno);
}
