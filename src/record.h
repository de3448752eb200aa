/* record.h: Record, one result row, indexable by position and by column name. */
#ifndef AGENTDB_RECORD_H
#define AGENTDB_RECORD_H

#include "agentdb.h"

/* The column layout shared by every Record of one result. */
typedef struct {
    PyObject_HEAD
    PyObject *names;  /* tuple of str: column names, in order */
    PyObject *index;  /* dict: name -> int position (first column wins on duplicates) */
    PyObject *types;  /* tuple of int: the type OID of each column */
    PyObject *description; /* PEP 249 cursor.description, made on first use, or NULL */
} agentdb_RecordDesc;

typedef struct {
    PyObject_VAR_HEAD
    agentdb_RecordDesc *desc; /* strong reference */
    Py_hash_t hash;           /* -1 until computed */
    PyObject *values[1];      /* ob_size items, owned */
} agentdb_Record;

/* A new RecordDesc for the columns of `res` (names decoded as UTF-8). */
PyObject *agentdb_recorddesc_from_result(agentdb_state *st, const PGresult *res);

/* PEP 249's cursor.description for these columns (new reference): a tuple of
   (name, type OID, None, None, None, None, None), made once per RecordDesc. */
PyObject *agentdb_recorddesc_description(agentdb_RecordDesc *desc);

/* A new Record of `n` values, all NULL: fill every slot with
   AGENTDB_RECORD_SET before it is seen by Python code. */
PyObject *agentdb_record_new(agentdb_state *st, PyObject *desc, Py_ssize_t n);
/* Call once every value of a new record is set: tracks it for the GC when it must be. */
void agentdb_record_done(agentdb_state *st, PyObject *rec);

/* Store v (a stolen reference) in slot i of a new record. */
#define AGENTDB_RECORD_SET(rec, i, v) (((agentdb_Record *)(rec))->values[(i)] = (v))

#endif /* AGENTDB_RECORD_H */
