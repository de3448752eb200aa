/* codecs/custom.c: the codecs a connection was given with set_type_codec() (Python
   callables, text or binary) and set_builtin_type_codec() (a built-in type's codec for
   another type): their lookup by OID in the connection's agentdb_typeopts, and the
   decoders and encoder that call them. */
#include "codecs_int.h"

/* An entry of agentdb_typeopts.custom (dict: oid -> tuple), made by agentdb/connection.py:
   (kind, encoder, decoder, 0), or (CUSTOM_BUILTIN, binary ok, None, built-in oid). */
enum { CUSTOM_TEXT = 0, CUSTOM_BINARY = 1, CUSTOM_BUILTIN = 2 };

/* The entry for oid (borrowed), or NULL (no error) when it has none. */
static PyObject *entry_of(PyObject *custom, Oid oid, long *kind)
{
    if (custom == NULL || PyDict_GET_SIZE(custom) == 0) {
        return NULL;
    }
    PyObject *key = PyLong_FromUnsignedLong(oid);
    if (key == NULL) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *e = PyDict_GetItemWithError(custom, key);
    Py_DECREF(key);
    if (e == NULL || !PyTuple_Check(e) || PyTuple_GET_SIZE(e) != 4) {
        PyErr_Clear();
        return NULL;
    }
    *kind = PyLong_AsLong(PyTuple_GET_ITEM(e, 0));
    if (*kind == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return NULL;
    }
    return e;
}

/* The callable of the entry st->cur_types has for oid: `index` 1 encoder, 2 decoder
   (borrowed); NULL with an error when the connection has none (cannot happen: a
   decoder or encoder of this file is picked only for an entry). */
static PyObject *callable_of(agentdb_state *st, Oid oid, int index)
{
    long kind;
    PyObject *e = entry_of(st->cur_types ? st->cur_types->custom : NULL, oid, &kind);
    if (e == NULL) {
        PyErr_Format(st->InterfaceError ? st->InterfaceError : PyExc_RuntimeError,
                     "no codec for type OID %u", (unsigned)oid);
        return NULL;
    }
    return PyTuple_GET_ITEM(e, index);
}

static PyObject *dec_custom_text(agentdb_state *st, const char *data, int len, Oid oid)
{
    PyObject *fn = callable_of(st, oid, 2);
    if (fn == NULL) {
        return NULL;
    }
    PyObject *text = PyUnicode_DecodeUTF8(data, len, NULL);
    if (text == NULL) {
        return agentdb_reraise_as_data(st, "invalid UTF-8 in a text value");
    }
    PyObject *res = PyObject_CallOneArg(fn, text);
    Py_DECREF(text);
    return res;
}

static PyObject *dec_custom_binary(agentdb_state *st, const char *data, int len, Oid oid)
{
    PyObject *fn = callable_of(st, oid, 2);
    if (fn == NULL) {
        return NULL;
    }
    PyObject *raw = PyBytes_FromStringAndSize(data, len);
    if (raw == NULL) {
        return NULL;
    }
    PyObject *res = PyObject_CallOneArg(fn, raw);
    Py_DECREF(raw);
    return res;
}

static int enc_custom(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    long kind;
    PyObject *e = entry_of(st->cur_types ? st->cur_types->custom : NULL, oid, &kind);
    if (e == NULL) {
        PyErr_Format(st->InterfaceError, "no codec for type OID %u", (unsigned)oid);
        return -1;
    }
    PyObject *out = PyObject_CallOneArg(PyTuple_GET_ITEM(e, 1), v);
    if (out == NULL) {
        return -1;
    }
    int rc;
    if (kind == CUSTOM_TEXT) {
        rc = PyUnicode_Check(out)
                 ? agentdb_put_text(st, p, out, argno)
                 : agentdb_bad_arg(st, argno, v, "the type's encoder returned %.60s, not str",
                                   Py_TYPE(out)->tp_name);
    }
    else if (PyBytes_Check(out)) {
        rc = buf_put(p, PyBytes_AS_STRING(out), (size_t)PyBytes_GET_SIZE(out));
    }
    else if (PyByteArray_Check(out)) {
        rc = buf_put(p, PyByteArray_AS_STRING(out), (size_t)PyByteArray_GET_SIZE(out));
    }
    else {
        rc = agentdb_bad_arg(st, argno, v, "the type's encoder returned %.60s, not bytes",
                             Py_TYPE(out)->tp_name);
    }
    Py_DECREF(out);
    return rc;
}

/* The built-in type an entry names (CUSTOM_BUILTIN), 0 when unreadable. */
static Oid builtin_of(PyObject *e)
{
    unsigned long alias = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(e, 3));
    if (alias == (unsigned long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return (Oid)alias;
}

int agentdb_custom_decoder(const agentdb_typeopts *o, Oid oid, int binary,
                           agentdb_decode_fn *out)
{
    long kind;
    PyObject *e = entry_of(o->custom, oid, &kind);
    if (e == NULL) {
        return 0;
    }
    switch (kind) {
    case CUSTOM_TEXT: *out = binary ? NULL : dec_custom_text; break;
    /* A binary codec's values in a text result (another column had no binary decoder,
       and libpq asks one format for all): their text, as a str. */
    case CUSTOM_BINARY: *out = binary ? dec_custom_binary : agentdb_dec_text_any; break;
    /* entry[1] true: the type's binary form is the built-in's too; else text only */
    default:
        *out = binary && !PyObject_IsTrue(PyTuple_GET_ITEM(e, 1))
                   ? NULL
                   : agentdb_decoder_opts(builtin_of(e), binary, o->json_text);
        break;
    }
    return 1;
}

int agentdb_custom_encoder(const agentdb_typeopts *o, Oid oid, encoder *out)
{
    long kind;
    PyObject *e = entry_of(o->custom, oid, &kind);
    if (e == NULL) {
        return 0;
    }
    switch (kind) {
    case CUSTOM_TEXT: *out = (encoder){enc_custom, 0, 0}; break; /* text: not binary */
    case CUSTOM_BINARY: *out = (encoder){enc_custom, 1, 1}; break;
    default:
        *out = agentdb_typed_encoder(builtin_of(e));
        if (!PyObject_IsTrue(PyTuple_GET_ITEM(e, 1)) && out->format == 1) {
            *out = (encoder){agentdb_enc_unknown, 0, 0}; /* its text, for the server */
        }
        break;
    }
    return 1;
}
