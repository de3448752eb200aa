/* codecs/untyped.c: values without a declared type: the text the server infers a type from. */
#include "codecs_int.h"

int agentdb_enc_untyped_text(agentdb_state *st, agentdb_params *p, PyObject *v, int argno,
                             int depth)
{
    if (PyBool_Check(v)) {
        return buf_put(p, v == Py_True ? "t" : "f", 1);
    }
    if (PyUnicode_Check(v)) {
        return agentdb_put_text(st, p, v, argno);
    }
    if (PyLong_Check(v)) {
        return agentdb_put_int_text(p, v);
    }
    if (PyFloat_Check(v)) {
        return agentdb_put_float_text(p, v);
    }
    if (PyObject_TypeCheck(v, (PyTypeObject *)st->Decimal)) {
        return agentdb_put_decimal_text(p, v);
    }
    if (is_date(st, v) || is_time(st, v)) {
        PyObject *s = PyObject_CallMethod(v, "isoformat", NULL);
        if (s == NULL) {
            return -1;
        }
        int rc = PyUnicode_Check(s)
                     ? agentdb_put_text(st, p, s, argno)
                     : agentdb_bad_arg(st, argno, v, "isoformat() did not return a str");
        Py_DECREF(s);
        return rc;
    }
    if (is_timedelta(st, v)) {
        char tmp[96];
        int n = snprintf(tmp, sizeof tmp, "%d days %d seconds %d microseconds",
                         PyDateTime_DELTA_GET_DAYS(v), PyDateTime_DELTA_GET_SECONDS(v),
                         PyDateTime_DELTA_GET_MICROSECONDS(v));
        return buf_put(p, tmp, (size_t)n);
    }
    if (is_seq(v)) {
        return agentdb_enc_array_text(st, p, v, NULL, 0, argno, 1);
    }
    if (PyDict_Check(v)) {
        return agentdb_enc_json(st, p, v, OID_JSON, argno);
    }
    if (PyObject_TypeCheck(v, (PyTypeObject *)st->UUID)) {
        return agentdb_buf_put_strof(p, v, 0);
    }
    /* Checked after the common types: str and int enums were handled as such. */
    int is_enum = PyObject_IsInstance(v, CACHED(st, CACHE_ENUM));
    if (is_enum < 0) {
        return -1;
    }
    if (is_enum) {
        /* An enum member stands for its value (a PostgreSQL enum label if a str). */
        PyObject *value = PyObject_GetAttr(v, CACHED(st, CACHE_STR_VALUE));
        if (value == NULL) {
            return -1;
        }
        int rc = depth > 8 ? agentdb_bad_arg(st, argno, v, "nested enum values")
                           : agentdb_enc_untyped_text(st, p, value, argno, depth + 1);
        Py_DECREF(value);
        return rc;
    }
    PyObject *s = PyObject_Str(v);
    if (s == NULL) {
        return -1;
    }
    int rc = agentdb_put_text(st, p, s, argno);
    Py_DECREF(s);
    return rc;
}

/* One value as the text a parameter without a declared type is sent as, appended to p's
   buffer; bytes-like values as bytea's hex text (\\x...).  For COPY's text format, which
   escapes the result.  0 => ok, -1 => error set. */
int agentdb_encode_text_value(agentdb_state *st, agentdb_params *p, PyObject *v, int argno)
{
    if (PyBytes_Check(v) || PyByteArray_Check(v) || PyMemoryView_Check(v)) {
        static const char hex[] = "0123456789abcdef";
        Py_buffer view;
        if (PyObject_GetBuffer(v, &view, PyBUF_SIMPLE) < 0) {
            return -1;
        }
        int rc = buf_reserve(p, 2 + 2 * (size_t)view.len);
        if (rc == 0) {
            const unsigned char *b = view.buf;
            char *out = p->buf + p->used;
            *out++ = '\\';
            *out++ = 'x';
            for (Py_ssize_t i = 0; i < view.len; i++) {
                *out++ = hex[b[i] >> 4];
                *out++ = hex[b[i] & 15];
            }
            p->used += 2 + 2 * (size_t)view.len;
        }
        PyBuffer_Release(&view);
        return rc;
    }
    return agentdb_enc_untyped_text(st, p, v, argno, 0);
}
