/* record.c: Record, one result row, indexable by position and by column name. */
#include "record.h"

#include <limits.h>
#include <stddef.h>
#include <string.h>

/* ---- RecordDesc --------------------------------------------------------- */

/* A new RecordDesc for `names` (tuple of str) and `types` (tuple of int, same
   length); both are borrowed and kept.  The index maps each name to its first
   position.  NULL => error set. */
static PyObject *recorddesc_new(agentdb_state *st, PyObject *names, PyObject *types)
{
    agentdb_RecordDesc *desc = NULL;
    PyObject *index = NULL, *pos = NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(names);

    assert(PyTuple_GET_SIZE(types) == n);
    index = PyDict_New();
    if (index == NULL) {
        goto error;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i); /* borrowed */
        pos = PyLong_FromSsize_t(i);
        /* setdefault: the first column of a duplicated name wins. */
        if (pos == NULL || PyDict_SetDefault(index, name, pos) == NULL) {
            goto error;
        }
        Py_CLEAR(pos);
    }
    desc = PyObject_GC_New(agentdb_RecordDesc, st->RecordDescType);
    if (desc == NULL) {
        goto error;
    }
    desc->names = Py_NewRef(names);
    desc->index = index;
    desc->types = Py_NewRef(types);
    desc->description = NULL;
    PyObject_GC_Track(desc);
    return (PyObject *)desc;

error:
    Py_XDECREF(pos);
    Py_XDECREF(index);
    return NULL;
}

PyObject *agentdb_recorddesc_from_result(agentdb_state *st, const PGresult *res)
{
    int n = PQnfields(res);
    PyObject *names = NULL, *types = NULL, *desc = NULL;

    names = PyTuple_New(n);
    types = PyTuple_New(n);
    if (names == NULL || types == NULL) {
        goto error;
    }
    for (int i = 0; i < n; i++) {
        const char *fname = PQfname(res, i);
        PyObject *name = PyUnicode_DecodeUTF8(fname, (Py_ssize_t)strlen(fname), NULL);
        if (name == NULL) {
            goto error;
        }
        PyTuple_SET_ITEM(names, i, name);
        PyObject *oid = PyLong_FromUnsignedLong((unsigned long)PQftype(res, i));
        if (oid == NULL) {
            goto error;
        }
        PyTuple_SET_ITEM(types, i, oid);
    }
    desc = recorddesc_new(st, names, types);

error:
    Py_XDECREF(types);
    Py_XDECREF(names);
    return desc;
}

PyObject *agentdb_recorddesc_description(agentdb_RecordDesc *desc)
{
    if (desc->description != NULL) {
        return Py_NewRef(desc->description);
    }
    Py_ssize_t n = PyTuple_GET_SIZE(desc->names);
    PyObject *out = PyTuple_New(n);
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *col = PyTuple_Pack(7, PyTuple_GET_ITEM(desc->names, i),
                                     PyTuple_GET_ITEM(desc->types, i), Py_None, Py_None, Py_None,
                                     Py_None, Py_None);
        if (col == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, i, col);
    }
    desc->description = Py_NewRef(out);
    return out;
}

static int recorddesc_traverse(agentdb_RecordDesc *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->names);
    Py_VISIT(self->index);
    Py_VISIT(self->types);
    Py_VISIT(self->description);
    return 0;
}

static int recorddesc_clear(agentdb_RecordDesc *self)
{
    Py_CLEAR(self->names);
    Py_CLEAR(self->index);
    Py_CLEAR(self->types);
    Py_CLEAR(self->description);
    return 0;
}

static void recorddesc_dealloc(agentdb_RecordDesc *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    recorddesc_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMemberDef recorddesc_members[] = {
    {"names", Py_T_OBJECT_EX, offsetof(agentdb_RecordDesc, names), Py_READONLY, "Column names."},
    {"index", Py_T_OBJECT_EX, offsetof(agentdb_RecordDesc, index), Py_READONLY,
     "Column name -> position (first column wins)."},
    {"types", Py_T_OBJECT_EX, offsetof(agentdb_RecordDesc, types), Py_READONLY, "Column type OIDs."},
    {NULL},
};

static PyType_Slot recorddesc_slots[] = {
    {Py_tp_doc, "The column layout shared by the records of one result."},
    {Py_tp_traverse, recorddesc_traverse},
    {Py_tp_clear, recorddesc_clear},
    {Py_tp_dealloc, recorddesc_dealloc},
    {Py_tp_members, recorddesc_members},
    {0, NULL},
};

static PyType_Spec recorddesc_spec = {
    .name = "agentdb.RecordDesc",
    .basicsize = sizeof(agentdb_RecordDesc),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = recorddesc_slots,
};

/* ---- Record ------------------------------------------------------------- */

PyObject *agentdb_record_new(agentdb_state *st, PyObject *desc, Py_ssize_t n)
{
    agentdb_Record *rec;

    assert(Py_IS_TYPE(desc, st->RecordDescType));
    assert(PyTuple_GET_SIZE(((agentdb_RecordDesc *)desc)->names) == n);
    rec = PyObject_GC_NewVar(agentdb_Record, st->RecordType, n);
    if (rec == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        rec->values[i] = NULL;
    }
    rec->desc = (agentdb_RecordDesc *)Py_NewRef(desc);
    rec->hash = -1;
    /* Not tracked yet: agentdb_record_done() tracks it once its values are set, and
       only when one of them can take part in a reference cycle. */
    return (PyObject *)rec;
}

/* A record whose values are all atoms (numbers, strings, dates, UUIDs) cannot be part of
   a cycle, so the garbage collector need not see it; rows of 10k records otherwise cost
   more in collections than in decoding.  The test is CPython's own for tuples
   (_PyObject_GC_MAY_BE_TRACKED): any object of a collected type counts, tracked now or
   not, since an empty dict becomes tracked once a container is put in it.  Our UUIDs and
   Decimals are the exceptions: immutable, holding nothing that can lead back (a UUID an
   int and an enum member; a Decimal its digits, a collected type only since CPython 3.13,
   where _decimal's types became heap types). */
void agentdb_record_done(agentdb_state *st, PyObject *rec)
{
    agentdb_Record *r = (agentdb_Record *)rec;
    for (Py_ssize_t i = 0; i < Py_SIZE(r); i++) {
        PyObject *v = r->values[i];
        if (v == NULL || !PyObject_IS_GC(v) || Py_IS_TYPE(v, (PyTypeObject *)st->UUID) ||
            Py_IS_TYPE(v, (PyTypeObject *)st->Decimal) ||
            (PyTuple_CheckExact(v) && !PyObject_GC_IsTracked(v))) {
            continue;
        }
        PyObject_GC_Track(rec);
        return;
    }
}

/* A new tuple of the record's values.  NULL => error set. */
static PyObject *record_as_tuple(agentdb_Record *self)
{
    Py_ssize_t n = Py_SIZE(self);
    PyObject *t = PyTuple_New(n);
    if (t == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyTuple_SET_ITEM(t, i, Py_NewRef(self->values[i]));
    }
    return t;
}

static int record_traverse(agentdb_Record *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->desc);
    for (Py_ssize_t i = Py_SIZE(self); --i >= 0;) {
        Py_VISIT(self->values[i]);
    }
    return 0;
}

/* No tp_clear: like a tuple, a record is immutable and cannot be the only
   link of a cycle (a cycle through it also goes through a mutable object,
   which the collector clears). */
static void record_dealloc(agentdb_Record *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Py_TRASHCAN_BEGIN(self, record_dealloc)
    for (Py_ssize_t i = Py_SIZE(self); --i >= 0;) {
        Py_XDECREF(self->values[i]);
    }
    Py_XDECREF(self->desc);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
    Py_TRASHCAN_END
}

static Py_ssize_t record_length(agentdb_Record *self)
{
    return Py_SIZE(self);
}

/* rec[i] for a Python-level index i (negative counts from the end).
   NULL => IndexError set. */
static PyObject *record_item(agentdb_Record *self, Py_ssize_t i)
{
    if (i < 0 || i >= Py_SIZE(self)) {
        PyErr_SetString(PyExc_IndexError, "record index out of range");
        return NULL;
    }
    return Py_NewRef(self->values[i]);
}

/* The position of column `name`, or -1 with KeyError set (-1 also for other
   errors, e.g. an unhashable name). */
static Py_ssize_t record_position(agentdb_Record *self, PyObject *name)
{
    PyObject *pos = PyDict_GetItemWithError(self->desc->index, name); /* borrowed */
    if (pos == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetObject(PyExc_KeyError, name);
        }
        return -1;
    }
    return PyLong_AsSsize_t(pos);
}

static PyObject *record_subscript(agentdb_Record *self, PyObject *key)
{
    if (PyUnicode_Check(key)) {
        Py_ssize_t i = record_position(self, key);
        if (i < 0) {
            return NULL;
        }
        return Py_NewRef(self->values[i]);
    }
    if (PyIndex_Check(key)) {
        Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (i < 0) {
            i += Py_SIZE(self);
        }
        return record_item(self, i);
    }
    if (PySlice_Check(key)) {
        Py_ssize_t start, stop, step, len;
        PyObject *t;
        if (PySlice_Unpack(key, &start, &stop, &step) < 0) {
            return NULL;
        }
        len = PySlice_AdjustIndices(Py_SIZE(self), &start, &stop, step);
        t = PyTuple_New(len);
        if (t == NULL) {
            return NULL;
        }
        for (Py_ssize_t i = 0, cur = start; i < len; i++, cur += step) {
            PyTuple_SET_ITEM(t, i, Py_NewRef(self->values[cur]));
        }
        return t;
    }
    PyErr_Format(PyExc_TypeError,
                 "record indices must be integers, slices or column names, not %.200s",
                 Py_TYPE(key)->tp_name);
    return NULL;
}

/* `name in rec`: is there a column of that name?  (As asyncpg: a record is a
   mapping for `in`, a sequence for iteration.) */
static int record_contains(agentdb_Record *self, PyObject *name)
{
    if (!PyUnicode_Check(name)) {
        return 0;
    }
    return PyDict_Contains(self->desc->index, name);
}

static Py_hash_t record_hash(agentdb_Record *self)
{
    /* The hash of the tuple of values, so that rec == tuple(rec) hashes alike. */
    if (self->hash == -1) {
        PyObject *t = record_as_tuple(self);
        if (t == NULL) {
            return -1;
        }
        self->hash = PyObject_Hash(t);
        Py_DECREF(t);
    }
    return self->hash;
}

/* Compares like the tuples of values, with a record or a tuple; other types:
   NotImplemented.  `self` is always the record: for `tuple == rec`, Python
   calls this slot reflected, with the operands swapped. */
static PyObject *record_richcompare(PyObject *self, PyObject *other, int op)
{
    PyObject *a = NULL, *b = NULL, *result = NULL;

    if (Py_IS_TYPE(other, Py_TYPE(self))) {
        b = record_as_tuple((agentdb_Record *)other);
    }
    else if (PyTuple_Check(other)) {
        b = Py_NewRef(other);
    }
    else {
        Py_RETURN_NOTIMPLEMENTED;
    }
    if (b == NULL) {
        goto error;
    }
    a = record_as_tuple((agentdb_Record *)self);
    if (a == NULL) {
        goto error;
    }
    result = PyObject_RichCompare(a, b, op);

error:
    Py_XDECREF(a);
    Py_XDECREF(b);
    return result;
}

static PyObject *record_repr(agentdb_Record *self)
{
    PyObject *parts = NULL, *sep = NULL, *body = NULL, *result = NULL;
    Py_ssize_t n = Py_SIZE(self);
    int rc;

    if (n == 0) {
        return PyUnicode_FromString("<Record>");
    }
    rc = Py_ReprEnter((PyObject *)self);
    if (rc != 0) {
        return rc > 0 ? PyUnicode_FromString("<Record ...>") : NULL;
    }
    parts = PyList_New(n);
    if (parts == NULL) {
        goto error;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *part = PyUnicode_FromFormat(
            "%U=%R", PyTuple_GET_ITEM(self->desc->names, i), self->values[i]);
        if (part == NULL) {
            goto error;
        }
        PyList_SET_ITEM(parts, i, part);
    }
    sep = PyUnicode_FromString(" ");
    if (sep == NULL) {
        goto error;
    }
    body = PyUnicode_Join(sep, parts);
    if (body == NULL) {
        goto error;
    }
    result = PyUnicode_FromFormat("<Record %U>", body);

error:
    Py_XDECREF(body);
    Py_XDECREF(sep);
    Py_XDECREF(parts);
    Py_ReprLeave((PyObject *)self);
    return result;
}

/* iter(rec): the values, without copying them into a tuple first (rows are
   iterated once each in the common case: `for v in row`, `tuple(row)`). */
typedef struct {
    PyObject_HEAD
    agentdb_Record *rec; /* NULL once exhausted */
    Py_ssize_t i;
} agentdb_RecordIter;

static PyObject *record_iter(agentdb_Record *self)
{
    agentdb_state *st = agentdb_state_from_type(Py_TYPE(self));
    agentdb_RecordIter *it = PyObject_GC_New(agentdb_RecordIter, st->RecordIterType);
    if (it == NULL) {
        return NULL;
    }
    it->rec = (agentdb_Record *)Py_NewRef((PyObject *)self);
    it->i = 0;
    PyObject_GC_Track(it);
    return (PyObject *)it;
}

static PyObject *recorditer_next(agentdb_RecordIter *it)
{
    agentdb_Record *rec = it->rec;
    if (rec == NULL) {
        return NULL;
    }
    if (it->i < Py_SIZE(rec)) {
        return Py_NewRef(rec->values[it->i++]);
    }
    it->rec = NULL;
    Py_DECREF(rec);
    return NULL;
}

static PyObject *recorditer_length_hint(agentdb_RecordIter *it, PyObject *Py_UNUSED(ig))
{
    return PyLong_FromSsize_t(it->rec ? Py_SIZE(it->rec) - it->i : 0);
}

static int recorditer_traverse(agentdb_RecordIter *it, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(it));
    Py_VISIT(it->rec);
    return 0;
}

static int recorditer_clear(agentdb_RecordIter *it)
{
    Py_CLEAR(it->rec);
    return 0;
}

static void recorditer_dealloc(agentdb_RecordIter *it)
{
    PyTypeObject *tp = Py_TYPE(it);
    PyObject_GC_UnTrack(it);
    Py_CLEAR(it->rec);
    PyObject_GC_Del(it);
    Py_DECREF(tp);
}

static PyMethodDef recorditer_methods[] = {
    {"__length_hint__", (PyCFunction)recorditer_length_hint, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot recorditer_slots[] = {
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, recorditer_next},
    {Py_tp_methods, recorditer_methods},
    {Py_tp_traverse, recorditer_traverse},
    {Py_tp_clear, recorditer_clear},
    {Py_tp_dealloc, recorditer_dealloc},
    {0, NULL},
};

static PyType_Spec recorditer_spec = {
    .name = "agentdb.RecordIterator",
    .basicsize = sizeof(agentdb_RecordIter),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = recorditer_slots,
};

static PyObject *record_keys(agentdb_Record *self, PyObject *Py_UNUSED(ignored))
{
    return PyObject_GetIter(self->desc->names);
}

static PyObject *record_values(agentdb_Record *self, PyObject *Py_UNUSED(ignored))
{
    return record_iter(self);
}

static PyObject *record_items(agentdb_Record *self, PyObject *Py_UNUSED(ignored))
{
    Py_ssize_t n = Py_SIZE(self);
    PyObject *pairs = PyList_New(n), *it;
    if (pairs == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair =
            PyTuple_Pack(2, PyTuple_GET_ITEM(self->desc->names, i), self->values[i]);
        if (pair == NULL) {
            Py_DECREF(pairs);
            return NULL;
        }
        PyList_SET_ITEM(pairs, i, pair);
    }
    it = PyObject_GetIter(pairs);
    Py_DECREF(pairs);
    return it;
}

/* 1 => `nargs` is within [min, max]; 0 => TypeError set. */
static int check_nargs(const char *name, Py_ssize_t nargs, Py_ssize_t min, Py_ssize_t max)
{
    if (nargs < min || nargs > max) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd to %zd arguments (%zd given)", name, min,
                     max, nargs);
        return 0;
    }
    return 1;
}

/* get(name, default=None): the value of column `name`, else default. */
static PyObject *record_get(agentdb_Record *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *dflt, *pos;

    if (!check_nargs("get", nargs, 1, 2)) {
        return NULL;
    }
    dflt = nargs > 1 ? args[1] : Py_None;
    if (!PyUnicode_Check(args[0])) {
        return Py_NewRef(dflt);
    }
    pos = PyDict_GetItemWithError(self->desc->index, args[0]); /* borrowed */
    if (pos == NULL) {
        return PyErr_Occurred() ? NULL : Py_NewRef(dflt);
    }
    return Py_NewRef(self->values[PyLong_AsSsize_t(pos)]);
}

static PyMethodDef record_methods[] = {
    {"keys", (PyCFunction)record_keys, METH_NOARGS, "An iterator over the column names."},
    {"values", (PyCFunction)record_values, METH_NOARGS, "An iterator over the values."},
    {"items", (PyCFunction)record_items, METH_NOARGS,
     "An iterator over (column name, value) pairs."},
    {"get", (PyCFunction)(void (*)(void))record_get, METH_FASTCALL,
     "get(name, default=None): the value of column name, else default."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot record_slots[] = {
    {Py_tp_doc, "One result row: rec[i], rec['name'], len(rec), iter(rec) over the values, "
                "keys(), values(), items(), get()."},
    {Py_tp_traverse, record_traverse},
    {Py_tp_dealloc, record_dealloc},
    {Py_tp_hash, record_hash},
    {Py_tp_richcompare, record_richcompare},
    {Py_tp_repr, record_repr},
    {Py_tp_iter, record_iter},
    {Py_tp_methods, record_methods},
    {Py_mp_length, record_length},
    {Py_mp_subscript, record_subscript},
    {Py_sq_length, record_length},
    {Py_sq_item, record_item},
    {Py_sq_contains, record_contains},
    {0, NULL},
};

static PyType_Spec record_spec = {
    .name = "agentdb.Record",
    .basicsize = offsetof(agentdb_Record, values),
    .itemsize = sizeof(PyObject *),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = record_slots,
};

#ifdef AGENTDB_TESTING
/* _make_record(names, values): a Record with columns `names` (tuple of str,
   type OIDs 0) and `values` (tuple, same length) (tests).  The column layout
   goes through a real PGresult (PQmakeEmptyPGresult + PQsetResultAttrs) and
   agentdb_recorddesc_from_result, so tests exercise the production path.
   NULL => error set. */
static PyObject *record_make_record(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    agentdb_state *st = agentdb_get_state(module);
    PyObject *names, *values, *desc = NULL, *rec = NULL;
    PGresAttDesc *attrs = NULL;
    PGresult *res = NULL;
    Py_ssize_t n;

    if (!check_nargs("_make_record", nargs, 2, 2)) {
        return NULL;
    }
    names = args[0];
    values = args[1];
    if (!PyTuple_Check(names) || !PyTuple_Check(values)) {
        PyErr_SetString(PyExc_TypeError, "_make_record() expects two tuples");
        return NULL;
    }
    n = PyTuple_GET_SIZE(names);
    if (PyTuple_GET_SIZE(values) != n) {
        PyErr_SetString(PyExc_ValueError, "_make_record(): names and values differ in length");
        return NULL;
    }
    if (n > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "_make_record(): too many columns");
        return NULL;
    }
    attrs = PyMem_Calloc(n > 0 ? (size_t)n : 1, sizeof(PGresAttDesc));
    if (attrs == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i); /* borrowed */
        Py_ssize_t size;
        const char *utf8 = PyUnicode_Check(name) ? PyUnicode_AsUTF8AndSize(name, &size) : NULL;
        if (utf8 == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_TypeError, "_make_record(): names must be str");
            }
            goto error;
        }
        if ((size_t)size != strlen(utf8)) {
            PyErr_SetString(PyExc_ValueError, "_make_record(): embedded NUL in a name");
            goto error;
        }
        /* The buffers live as long as `names`; PQsetResultAttrs copies them. */
        attrs[i].name = (char *)utf8;
        attrs[i].typid = 0;
        attrs[i].typlen = -1;
        attrs[i].atttypmod = -1;
    }
    res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    if (res == NULL || !PQsetResultAttrs(res, (int)n, attrs)) {
        PyErr_NoMemory();
        goto error;
    }
    desc = agentdb_recorddesc_from_result(st, res);
    if (desc == NULL) {
        goto error;
    }
    rec = agentdb_record_new(st, desc, n);
    if (rec == NULL) {
        goto error;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        AGENTDB_RECORD_SET(rec, i, Py_NewRef(PyTuple_GET_ITEM(values, i)));
    }
    agentdb_record_done(st, rec);

error:
    if (res != NULL) {
        PQclear(res);
    }
    PyMem_Free(attrs);
    Py_XDECREF(desc);
    return rec;
}

static PyMethodDef record_module_methods[] = {
    {"_make_record", (PyCFunction)(void (*)(void))record_make_record, METH_FASTCALL,
     "_make_record(names, values): a Record from a tuple of names and a tuple of values "
     "(tests)."},
    {NULL, NULL, 0, NULL},
};
#endif

int agentdb_record_setup(PyObject *module, agentdb_state *st)
{
    st->RecordDescType =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &recorddesc_spec, NULL);
    if (st->RecordDescType == NULL) {
        return -1;
    }
    st->RecordIterType =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &recorditer_spec, NULL);
    if (st->RecordIterType == NULL) {
        return -1;
    }
    st->RecordType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &record_spec, NULL);
    if (st->RecordType == NULL) {
        return -1;
    }
    if (PyModule_AddType(module, st->RecordType) < 0 ||
        PyModule_AddType(module, st->RecordDescType) < 0) {
        return -1;
    }
#ifdef AGENTDB_TESTING
    return PyModule_AddFunctions(module, record_module_methods);
#else
    return 0;
#endif
}
