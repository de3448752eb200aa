/* codecs/errors.c: DataError for malformed values received and for bad arguments to encode. */
#include "codecs_int.h"

#include <stdarg.h>

static PyObject *data_error_class(agentdb_state *st)
{
    return st->DataError ? st->DataError : PyExc_ValueError;
}

/* Raise DataError (ValueError while src/errors.c is a stub). Always returns NULL. */
PyObject *agentdb_raise_data(agentdb_state *st, const char *fmt, ...)
{
    va_list va;
    va_start(va, fmt);
    PyErr_FormatV(data_error_class(st), fmt, va);
    va_end(va);
    return NULL;
}

/* Replace a ValueError/ArithmeticError being raised (bad UTF-8, bad JSON, a Decimal
   that won't parse, ...) by DataError("<context>: <message>") caused by it, so callers
   see one exception class for malformed data.  Other exceptions (MemoryError...) pass.
   Always returns NULL. */
PyObject *agentdb_reraise_as_data(agentdb_state *st, const char *context)
{
    PyObject *cause = PyErr_GetRaisedException();
    if (cause == NULL) {
        return agentdb_raise_data(st, "%s", context);
    }
    if (PyErr_GivenExceptionMatches(cause, data_error_class(st)) ||
        !(PyErr_GivenExceptionMatches(cause, PyExc_ValueError) ||
          PyErr_GivenExceptionMatches(cause, PyExc_ArithmeticError))) {
        PyErr_SetRaisedException(cause);
        return NULL;
    }
    PyErr_Format(data_error_class(st), "%s: %S", context, cause);
    PyObject *exc = PyErr_GetRaisedException();
    if (exc == NULL) {
        Py_DECREF(cause);
        return NULL;
    }
    PyException_SetCause(exc, cause); /* steals cause */
    PyErr_SetRaisedException(exc);
    return NULL;
}

PyObject *agentdb_bad_length(agentdb_state *st, const char *type, int len)
{
    return agentdb_raise_data(st, "invalid binary %s value: %d bytes", type, len);
}

/* DataError "invalid input for query argument $N: <repr> (<why>)".  Returns -1. */
int agentdb_bad_arg(agentdb_state *st, int argno, PyObject *value, const char *fmt, ...)
{
    PyObject *repr = NULL, *why = NULL;
    va_list va;

    va_start(va, fmt);
    why = PyUnicode_FromFormatV(fmt, va);
    va_end(va);
    if (why == NULL) {
        return -1;
    }
    repr = PyObject_Repr(value);
    if (repr == NULL) {
        PyErr_Clear();
        repr = PyUnicode_FromFormat("<%s object>", Py_TYPE(value)->tp_name);
        if (repr == NULL) {
            goto done;
        }
    }
    if (PyUnicode_GET_LENGTH(repr) > 60) {
        PyObject *cut = PyUnicode_Substring(repr, 0, 57);
        Py_SETREF(repr, cut);
        if (repr == NULL) {
            goto done;
        }
        PyErr_Format(data_error_class(st), "invalid input for query argument $%d: %U... (%U)",
                     argno, repr, why);
        goto done;
    }
    PyErr_Format(data_error_class(st), "invalid input for query argument $%d: %U (%U)", argno,
                 repr, why);
done:
    Py_XDECREF(repr);
    Py_DECREF(why);
    return -1;
}

int agentdb_nul_error(agentdb_state *st, int argno)
{
    PyErr_Format(data_error_class(st),
                 "invalid input for query argument $%d: a string containing NUL (\\x00) "
                 "cannot be sent to PostgreSQL",
                 argno);
    return -1;
}
