/* codecs/scalar.c: bool, integers, floats, text, bytea, uuid, json(b): decoders and encoders. */
#include "codecs_int.h"

#include <float.h>
#include <math.h>

/* ---------------------------------------------------------------------------------------
   Building Python objects */

/* A uuid.UUID from its 16 bytes.  Bypasses UUID.__init__ (Python code that validates
   arguments we already know are right): sets the two slots exactly as __init__ and
   __setstate__ do.  New reference. */
static PyObject *make_uuid(agentdb_state *st, const char *bytes16)
{
    PyObject *value = NULL, *uuid = NULL, *noargs = NULL;
    PyTypeObject *tp = (PyTypeObject *)st->UUID;

#if PY_VERSION_HEX >= 0x030D0000
    value = PyLong_FromUnsignedNativeBytes(
        bytes16, 16, Py_ASNATIVEBYTES_BIG_ENDIAN | Py_ASNATIVEBYTES_UNSIGNED_BUFFER);
#else
    /* 3.10-3.12 have no public API for this: PyLong_FromString of the 32 hex digits or
       two 64-bit halves shifted and or-ed cost 25-35% more instructions per UUID; the
       internal function cannot change in those released versions. */
    value = _PyLong_FromByteArray((const unsigned char *)bytes16, 16, 0, 0);
#endif
    if (value == NULL) {
        goto error;
    }
    noargs = PyTuple_New(0);
    if (noargs == NULL) {
        goto error;
    }
    uuid = tp->tp_new(tp, noargs, NULL);
    if (uuid == NULL) {
        goto error;
    }
    if (PyObject_GenericSetAttr(uuid, CACHED(st, CACHE_STR_INT), value) < 0 ||
        PyObject_GenericSetAttr(uuid, CACHED(st, CACHE_STR_IS_SAFE),
                                CACHED(st, CACHE_SAFE_UNKNOWN)) < 0) {
        goto error;
    }
    /* UUID is immutable and its two slots hold an int and an enum member: it cannot
       be part of a cycle, so the collector need not traverse it (a row per UUID). */
    if (PyObject_GC_IsTracked(uuid)) {
        PyObject_GC_UnTrack(uuid);
    }
    Py_DECREF(value);
    Py_DECREF(noargs);
    return uuid;
error:
    Py_XDECREF(value);
    Py_XDECREF(noargs);
    Py_XDECREF(uuid);
    return NULL;
}

static PyObject *decode_utf8(agentdb_state *st, const char *data, int len)
{
    PyObject *s = PyUnicode_DecodeUTF8(data, len, NULL);
    if (s == NULL) {
        return agentdb_reraise_as_data(st, "invalid text received from PostgreSQL");
    }
    return s;
}

/* 1 when the text holds a run of 19+ digits: a number orjson would round
   (it turns integers beyond 64 bits into floats); json.loads keeps it exact. */
static int has_long_digit_run(const char *data, int len)
{
    int run = 0;
    for (int i = 0; i < len; i++) {
        if (data[i] >= '0' && data[i] <= '9') {
            if (++run >= 19) {
                return 1;
            }
        }
        else {
            run = 0;
        }
    }
    return 0;
}

static PyObject *json_from_text(agentdb_state *st, const char *data, int len)
{
    if (st->json_loads_fast != NULL && !has_long_digit_run(data, len)) {
        PyObject *raw = PyBytes_FromStringAndSize(data, len);
        if (raw == NULL) {
            return NULL;
        }
        PyObject *res = PyObject_CallOneArg(st->json_loads_fast, raw);
        Py_DECREF(raw);
        if (res != NULL) {
            return res;
        }
        PyErr_Clear(); /* json.loads decides */
    }
    PyObject *text = decode_utf8(st, data, len);
    if (text == NULL) {
        return NULL;
    }
    PyObject *res = PyObject_CallOneArg(st->json_loads, text);
    Py_DECREF(text);
    if (res == NULL) {
        return agentdb_reraise_as_data(st, "invalid JSON received from PostgreSQL");
    }
    return res;
}

/* ---------------------------------------------------------------------------------------
   Binary decoders */

PyObject *agentdb_dec_bool_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len != 1) {
        return agentdb_bad_length(st, "bool", len);
    }
    return Py_NewRef(data[0] ? Py_True : Py_False);
}

PyObject *agentdb_dec_int2_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len != 2) {
        return agentdb_bad_length(st, "int2", len);
    }
    return PyLong_FromLong((int16_t)rd_u16(data));
}

PyObject *agentdb_dec_int4_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len != 4) {
        return agentdb_bad_length(st, "int4", len);
    }
    return PyLong_FromLong((int32_t)rd_u32(data));
}

PyObject *agentdb_dec_int8_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len != 8) {
        return agentdb_bad_length(st, "int8", len);
    }
    return PyLong_FromLongLong((int64_t)rd_u64(data));
}

PyObject *agentdb_dec_oid_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len != 4) {
        return agentdb_bad_length(st, "oid", len);
    }
    return PyLong_FromUnsignedLong(rd_u32(data));
}

PyObject *agentdb_dec_float4_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len != 4) {
        return agentdb_bad_length(st, "float4", len);
    }
    uint32_t bits = rd_u32(data);
    float f;
    memcpy(&f, &bits, sizeof f);
    return PyFloat_FromDouble(f);
}

PyObject *agentdb_dec_float8_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len != 8) {
        return agentdb_bad_length(st, "float8", len);
    }
    uint64_t bits = rd_u64(data);
    double d;
    memcpy(&d, &bits, sizeof d);
    return PyFloat_FromDouble(d);
}

PyObject *agentdb_dec_text_any(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    return decode_utf8(st, data, len);
}

PyObject *agentdb_dec_bytea_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)st;
    (void)oid;
    return PyBytes_FromStringAndSize(data, len);
}

PyObject *agentdb_dec_json_any(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    return json_from_text(st, data, len);
}

PyObject *agentdb_dec_jsonb_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len < 1 || data[0] != 1) {
        return agentdb_raise_data(st, "invalid binary jsonb value: unknown version");
    }
    return json_from_text(st, data + 1, len - 1);
}

PyObject *agentdb_dec_jsonb_bin_as_text(agentdb_state *st, const char *data, int len, Oid oid)
{
    if (len < 1 || data[0] != 1) {
        return agentdb_raise_data(st, "invalid binary jsonb value: unknown version");
    }
    return agentdb_dec_text_any(st, data + 1, len - 1, oid);
}

PyObject *agentdb_dec_uuid_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len != 16) {
        return agentdb_bad_length(st, "uuid", len);
    }
    return make_uuid(st, data);
}

/* ---------------------------------------------------------------------------------------
   Text decoders (data is NUL-terminated, but only `len` bytes are trusted) */

PyObject *agentdb_dec_bool_text(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len == 1 && data[0] == 't') {
        Py_RETURN_TRUE;
    }
    if (len == 1 && data[0] == 'f') {
        Py_RETURN_FALSE;
    }
    return agentdb_raise_data(st, "invalid bool received from PostgreSQL: %.40s", data);
}

PyObject *agentdb_dec_int_text(agentdb_state *st, const char *data, int len, Oid oid)
{
    int pos = 0, neg = 0;
    int64_t v;
    (void)oid;
    if (len > 0 && (data[0] == '-' || data[0] == '+')) {
        neg = data[0] == '-';
        pos = 1;
    }
    /* 18 digits always fit; int8's extremes have 19 and go through PyLong_FromString. */
    if (parse_digits(data, len, &pos, 18, &v) == 0 && pos == len) {
        return PyLong_FromLongLong(neg ? -v : v);
    }
    pos = neg || (len > 0 && data[0] == '+');
    if (len > 0 && len <= 20 && parse_digits(data, len, &pos, 19, &v) == 0 && pos == len) {
        char tmp[24];
        memcpy(tmp, data, (size_t)len);
        tmp[len] = '\0';
        return PyLong_FromString(tmp, NULL, 10);
    }
    return agentdb_raise_data(st, "invalid integer received from PostgreSQL: %.40s", data);
}

PyObject *agentdb_dec_float_text(agentdb_state *st, const char *data, int len, Oid oid)
{
    char tmp[128];
    char *end = NULL;
    (void)oid;
    if (len <= 0 || (size_t)len >= sizeof tmp) {
        goto bad;
    }
    memcpy(tmp, data, (size_t)len);
    tmp[len] = '\0';
    double d = PyOS_string_to_double(tmp, &end, NULL);
    if (d == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        goto bad;
    }
    if (end != tmp + len) {
        goto bad;
    }
    return PyFloat_FromDouble(d);
bad:
    return agentdb_raise_data(st, "invalid float received from PostgreSQL: %.40s", data);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* bytea text: hex format "\x0a0b" (the default), or the old escape format. */
PyObject *agentdb_dec_bytea_text(agentdb_state *st, const char *data, int len, Oid oid)
{
    PyObject *res = NULL;
    char *out;
    Py_ssize_t n = 0;
    (void)oid;
    if (len >= 2 && data[0] == '\\' && data[1] == 'x') {
        if ((len - 2) % 2 != 0) {
            return agentdb_raise_data(st, "invalid bytea received from PostgreSQL: odd hex length");
        }
        res = PyBytes_FromStringAndSize(NULL, (len - 2) / 2);
        if (res == NULL) {
            return NULL;
        }
        out = PyBytes_AS_STRING(res);
        for (int i = 2; i < len; i += 2) {
            int hi = hexval(data[i]), lo = hexval(data[i + 1]);
            if (hi < 0 || lo < 0) {
                Py_DECREF(res);
                return agentdb_raise_data(st,
                                          "invalid bytea received from PostgreSQL: bad hex digit");
            }
            out[n++] = (char)(hi << 4 | lo);
        }
        return res;
    }
    res = PyBytes_FromStringAndSize(NULL, len);
    if (res == NULL) {
        return NULL;
    }
    out = PyBytes_AS_STRING(res);
    for (int i = 0; i < len;) {
        if (data[i] != '\\') {
            out[n++] = data[i++];
        }
        else if (i + 1 < len && data[i + 1] == '\\') {
            out[n++] = '\\';
            i += 2;
        }
        else if (i + 3 < len && data[i + 1] >= '0' && data[i + 1] <= '3' && data[i + 2] >= '0' &&
                 data[i + 2] <= '7' && data[i + 3] >= '0' && data[i + 3] <= '7') {
            out[n++] = (char)((data[i + 1] - '0') << 6 | (data[i + 2] - '0') << 3 |
                              (data[i + 3] - '0'));
            i += 4;
        }
        else {
            Py_DECREF(res);
            return agentdb_raise_data(st, "invalid bytea received from PostgreSQL: bad escape");
        }
    }
    if (n == len) {
        return res;
    }
    /* Escapes made it shorter: what was written, copied into a bytes object of its size
       (the public API has no way to shrink one; _PyBytes_Resize is CPython's own). */
    PyObject *shorter = PyBytes_FromStringAndSize(out, n);
    Py_DECREF(res);
    return shorter;
}

/* 32 hex digits, hyphens anywhere (as PostgreSQL's uuid_in allows some), into 16 bytes.
   Also takes surrounding braces.  0 => ok, -1 => malformed (no exception). */
static int parse_uuid_text(const char *s, Py_ssize_t len, char *out)
{
    int n = 0;
    if (len >= 2 && s[0] == '{' && s[len - 1] == '}') {
        s++;
        len -= 2;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        if (s[i] == '-') {
            continue;
        }
        int v = hexval(s[i]);
        if (v < 0 || n >= 32) {
            return -1;
        }
        if (n % 2 == 0) {
            out[n / 2] = (char)(v << 4);
        }
        else {
            out[n / 2] = (char)(out[n / 2] | v);
        }
        n++;
    }
    return n == 32 ? 0 : -1;
}

PyObject *agentdb_dec_uuid_text(agentdb_state *st, const char *data, int len, Oid oid)
{
    char bytes[16];
    (void)oid;
    if (parse_uuid_text(data, len, bytes) < 0) {
        return agentdb_raise_data(st, "invalid uuid received from PostgreSQL: %.40s", data);
    }
    return make_uuid(st, bytes);
}

/* ---------------------------------------------------------------------------------------
   Encoders by declared type: each appends one non-None value's bytes to p->buf.
   0 => ok, -1 => error set. */

int agentdb_enc_bool(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    (void)oid;
    if (!PyBool_Check(v)) {
        return agentdb_bad_arg(st, argno, v, "a bool is required for bool");
    }
    char b = v == Py_True;
    return buf_put(p, &b, 1);
}

int agentdb_enc_int(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    int overflow = 0;
    long long x;
    char b[8];

    /* Any int (bool included, as 0/1) or __index__ object; never a float or str. */
    if (PyLong_Check(v)) {
        x = PyLong_AsLongLongAndOverflow(v, &overflow);
    }
    else if (!PyFloat_Check(v) && PyIndex_Check(v)) {
        PyObject *i = PyNumber_Index(v);
        if (i == NULL) {
            return -1;
        }
        x = PyLong_AsLongLongAndOverflow(i, &overflow);
        Py_DECREF(i);
    }
    else {
        return agentdb_bad_arg(st, argno, v, "an int is required for %s", agentdb_type_name(oid));
    }
    if (x == -1 && PyErr_Occurred()) {
        return -1;
    }
    switch (oid) {
    case OID_INT2:
        if (overflow || x < INT16_MIN || x > INT16_MAX) {
            break;
        }
        b[0] = (char)((uint16_t)x >> 8);
        b[1] = (char)x;
        return buf_put(p, b, 2);
    case OID_INT4:
        if (overflow || x < INT32_MIN || x > INT32_MAX) {
            break;
        }
        return buf_put_u32(p, (uint32_t)(int32_t)x);
    case OID_OID:
        if (overflow || x < 0 || x > (long long)UINT32_MAX) {
            break;
        }
        return buf_put_u32(p, (uint32_t)x);
    default:
        if (overflow) {
            break;
        }
        return buf_put_u64(p, (uint64_t)x);
    }
    return agentdb_bad_arg(st, argno, v, "value out of %s range", agentdb_type_name(oid));
}

int agentdb_enc_float(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    double d;
    if (PyFloat_Check(v)) {
        d = PyFloat_AS_DOUBLE(v);
    }
    else if (PyLong_Check(v) || PyObject_TypeCheck(v, (PyTypeObject *)st->Decimal)) {
        d = PyFloat_AsDouble(v);
        if (d == -1.0 && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
                return -1;
            }
            PyErr_Clear();
            return agentdb_bad_arg(st, argno, v, "value out of %s range", agentdb_type_name(oid));
        }
    }
    else {
        return agentdb_bad_arg(st, argno, v, "a float is required for %s", agentdb_type_name(oid));
    }
    if (oid == OID_FLOAT4) {
        if (isfinite(d) && (d > FLT_MAX || d < -FLT_MAX)) {
            return agentdb_bad_arg(st, argno, v, "value out of float4 range");
        }
        float f = (float)d;
        uint32_t bits;
        memcpy(&bits, &f, sizeof bits);
        return buf_put_u32(p, bits);
    }
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    return buf_put_u64(p, bits);
}

/* A float as PostgreSQL reads it: repr(), with NaN/Infinity spelt its way. */
int agentdb_put_float_text(agentdb_params *p, PyObject *v)
{
    double d = PyFloat_AsDouble(v);
    if (d == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (isnan(d)) {
        return buf_put(p, "NaN", 3);
    }
    if (isinf(d)) {
        return d > 0 ? buf_put(p, "Infinity", 8) : buf_put(p, "-Infinity", 9);
    }
    PyObject *f = PyFloat_FromDouble(d);
    if (f == NULL) {
        return -1;
    }
    int rc = agentdb_buf_put_strof(p, f, 1);
    Py_DECREF(f);
    return rc;
}

/* An int as decimal digits (also int subclasses such as bool and IntEnum). */
int agentdb_put_int_text(agentdb_params *p, PyObject *v)
{
    PyObject *i = PyNumber_Index(v);
    if (i == NULL) {
        return -1;
    }
    int rc = agentdb_buf_put_strof(p, i, 1);
    Py_DECREF(i);
    return rc;
}

int agentdb_enc_text(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    if (!PyUnicode_Check(v)) {
        return agentdb_bad_arg(st, argno, v, "a str is required for %s", agentdb_type_name(oid));
    }
    return agentdb_put_text(st, p, v, argno);
}

int agentdb_enc_bytea(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    Py_buffer view;
    (void)oid;
    if (PyUnicode_Check(v) || !PyObject_CheckBuffer(v)) {
        return agentdb_bad_arg(st, argno, v, "a bytes-like object is required for bytea");
    }
    if (PyObject_GetBuffer(v, &view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    int rc = buf_put(p, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return rc;
}

/* The 16 bytes of a uuid.UUID (from its `int`).  0 => ok, -1 => error set. */
static int uuid_bytes(agentdb_state *st, PyObject *v, char *out)
{
    PyObject *x = PyObject_GetAttr(v, CACHED(st, CACHE_STR_INT));
    if (x == NULL) {
        return -1;
    }
    if (!PyLong_Check(x)) {
        Py_DECREF(x);
        PyErr_SetString(PyExc_TypeError, "UUID.int is not an int");
        return -1;
    }
#if PY_VERSION_HEX >= 0x030D0000
    Py_ssize_t need = PyLong_AsNativeBytes(x, out, 16,
                                           Py_ASNATIVEBYTES_BIG_ENDIAN |
                                               Py_ASNATIVEBYTES_UNSIGNED_BUFFER |
                                               Py_ASNATIVEBYTES_REJECT_NEGATIVE);
    Py_DECREF(x);
    if (need < 0) {
        return -1;
    }
    if (need > 16) {
        PyErr_SetString(PyExc_OverflowError, "UUID.int does not fit in 128 bits");
        return -1;
    }
    return 0;
#else
    /* As in make_uuid: no public API on 3.10-3.12 (the low 64 bits, then x >> 64 cost 14%
       more instructions per UUID). */
    int rc = _PyLong_AsByteArray((PyLongObject *)x, (unsigned char *)out, 16, 0, 0);
    Py_DECREF(x);
    return rc;
#endif
}

int agentdb_enc_uuid(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    char bytes[16];
    (void)oid;
    if (PyObject_TypeCheck(v, (PyTypeObject *)st->UUID)) {
        if (uuid_bytes(st, v, bytes) < 0) {
            return -1;
        }
    }
    else if (PyUnicode_Check(v)) {
        Py_ssize_t n;
        const char *u = PyUnicode_AsUTF8AndSize(v, &n);
        if (u == NULL) {
            PyErr_Clear();
            return agentdb_bad_arg(st, argno, v, "invalid UUID string");
        }
        if (n > 9 && strncmp(u, "urn:uuid:", 9) == 0) {
            u += 9;
            n -= 9;
        }
        if (parse_uuid_text(u, n, bytes) < 0) {
            return agentdb_bad_arg(st, argno, v, "invalid UUID string");
        }
    }
    else {
        return agentdb_bad_arg(st, argno, v, "a uuid.UUID or str is required for uuid");
    }
    return buf_put(p, bytes, 16);
}

/* json/jsonb: a str is sent as JSON text unchanged, anything else as json.dumps(v);
   jsonb's binary form is a version byte (1) and the text. */
int agentdb_enc_json(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    if (oid == OID_JSONB && buf_put(p, "\x01", 1) < 0) {
        return -1;
    }
    if (PyUnicode_Check(v)) {
        return agentdb_put_text(st, p, v, argno);
    }
    PyObject *s = PyObject_CallOneArg(st->json_dumps, v);
    if (s == NULL) {
        if (PyErr_ExceptionMatches(PyExc_TypeError) || PyErr_ExceptionMatches(PyExc_ValueError)) {
            PyErr_Clear();
            return agentdb_bad_arg(st, argno, v, "not serializable by json.dumps for %s",
                                   agentdb_type_name(oid));
        }
        return -1;
    }
    int rc = PyUnicode_Check(s) ? agentdb_put_text(st, p, s, argno)
                                : agentdb_bad_arg(st, argno, v, "json.dumps did not return a str");
    Py_DECREF(s);
    return rc;
}

/* Types we have no codec for (enums, citext, domains of unknown OID...): text. */
int agentdb_enc_unknown(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    (void)oid;
    if (PyUnicode_Check(v)) {
        return agentdb_put_text(st, p, v, argno);
    }
    if (PyBytes_Check(v) || PyByteArray_Check(v) || PyMemoryView_Check(v)) {
        PyObject *s = PyUnicode_FromEncodedObject(v, "utf-8", "strict");
        if (s == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_ValueError)) {
                return -1;
            }
            PyErr_Clear();
            return agentdb_bad_arg(st, argno, v, "bytes that are not UTF-8 text");
        }
        int rc = agentdb_put_text(st, p, s, argno);
        Py_DECREF(s);
        return rc;
    }
    return agentdb_enc_untyped_text(st, p, v, argno, 0);
}
