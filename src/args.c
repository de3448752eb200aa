/* args.c: the one parser of the core's method arguments: a statement's query and
   values, and the keywords timeout= and column=, each with one rule everywhere. */
#include "args.h"

#include <math.h>

static int parse_timeout(const char *method, PyObject *value, double *out)
{
    if (value == Py_None) {
        *out = 0;
        return 0;
    }
    if (!PyFloat_Check(value) && !PyLong_Check(value)) {
        PyErr_Format(PyExc_TypeError, "%s(): timeout must be a number of seconds or None, not %.100s",
                     method, Py_TYPE(value)->tp_name);
        return -1;
    }
    double t = PyFloat_AsDouble(value);
    if (t == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (!(t > 0) || isinf(t)) {
        PyErr_Format(PyExc_ValueError,
                     "%s(): timeout must be a positive number of seconds or None, not %R",
                     method, value);
        return -1;
    }
    *out = t;
    return 0;
}

static int parse_column(const char *method, PyObject *value, int *out)
{
    if (!PyLong_Check(value)) {
        PyErr_Format(PyExc_TypeError, "%s(): column must be an int, not %.100s", method,
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    int overflow;
    long col = PyLong_AsLongAndOverflow(value, &overflow);
    if (col == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow != 0 || col < 0 || col > 1599) {
        PyErr_Format(PyExc_ValueError,
                     "%s(): column must be an int from 0 to 1599 (a result has at most "
                     "1600 columns), not %R",
                     method, value);
        return -1;
    }
    *out = (int)col;
    return 0;
}

int agentdb_parse_kwargs(const char *method, PyObject *const *args, Py_ssize_t nargs,
                         PyObject *kwnames, unsigned allowed, agentdb_kwargs *out)
{
    out->timeout = 0;
    out->column = 0;
    Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        PyObject *value = args[nargs + i];
        if ((allowed & AGENTDB_KW_TIMEOUT) &&
            PyUnicode_CompareWithASCIIString(key, "timeout") == 0) {
            if (parse_timeout(method, value, &out->timeout) < 0) {
                return -1;
            }
        }
        else if ((allowed & AGENTDB_KW_COLUMN) &&
                 PyUnicode_CompareWithASCIIString(key, "column") == 0) {
            if (parse_column(method, value, &out->column) < 0) {
                return -1;
            }
        }
        else {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'",
                         method, key);
            return -1;
        }
    }
    return 0;
}

int agentdb_parse_query(const char *method, PyObject *const *args, Py_ssize_t nargs,
                        PyObject **query, PyObject **values)
{
    if (nargs < 1) {
        PyErr_Format(PyExc_TypeError, "%s() missing the query (a str)", method);
        return -1;
    }
    if (!PyUnicode_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "%s(): the query must be a str, not %.100s", method,
                     Py_TYPE(args[0])->tp_name);
        return -1;
    }
    *query = args[0];
    *values = PyTuple_New(nargs - 1);
    if (*values == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 1; i < nargs; i++) {
        PyTuple_SET_ITEM(*values, i - 1, Py_NewRef(args[i]));
    }
    return 0;
}
