/* dsn.c: parse_dsn(): libpq's own parser of connection strings and URIs, as a dict. */
#include "conn_int.h"

/* parse_dsn(dsn) -> dict: libpq's own parser (URIs and keyword/value strings). */
PyObject *agentdb_parse_dsn_py(PyObject *module, PyObject *dsn)
{
    agentdb_state *st = agentdb_get_state(module);
    const char *s = PyUnicode_AsUTF8(dsn);
    if (s == NULL) {
        return NULL;
    }
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(s, &err);
    if (opts == NULL) {
        PyObject *msg = err ? PyUnicode_FromString(err) : PyUnicode_FromString("out of memory");
        if (err) {
            PQfreemem(err);
        }
        if (msg == NULL) {
            return NULL;
        }
        /* Strip libpq's trailing newline. */
        PyObject *stripped = PyObject_CallMethod(msg, "strip", NULL);
        Py_DECREF(msg);
        if (stripped == NULL) {
            return NULL;
        }
        PyErr_Format(st->InterfaceError ? st->InterfaceError : PyExc_ValueError,
                     "invalid connection string: %U", stripped);
        Py_DECREF(stripped);
        return NULL;
    }
    PyObject *d = PyDict_New();
    if (d == NULL) {
        PQconninfoFree(opts);
        return NULL;
    }
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL) {
            continue;
        }
        PyObject *v = PyUnicode_FromString(o->val);
        if (v == NULL || PyDict_SetItemString(d, o->keyword, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            PQconninfoFree(opts);
            return NULL;
        }
        Py_DECREF(v);
    }
    PQconninfoFree(opts);
    return d;
}
