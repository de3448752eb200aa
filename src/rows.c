/* rows.c: result rows into Python: the decoders of a result's columns, Records, and
   the rows of chunked results (libpq 17+). */
#include "conn_int.h"

/* Fill the decoders of a statement or a result from its column types.
   Binary is used only when every column has a binary decoder (libpq asks for
   one format for all columns).  0 => ok, -1 => error set. */
int agentdb_pick_decoders(const PGresult *res, int ncols, int allow_binary,
                          const agentdb_typeopts *types, int *binary, agentdb_decode_fn **out)
{
    agentdb_decode_fn *d = PyMem_Calloc(ncols > 0 ? ncols : 1, sizeof(*d));
    if (d == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int bin = allow_binary;
    for (int i = 0; bin && i < ncols; i++) {
        if ((d[i] = agentdb_decoder_for(types, PQftype(res, i), 1)) == NULL) {
            bin = 0;
        }
    }
    if (!bin) {
        for (int i = 0; i < ncols; i++) {
            d[i] = agentdb_decoder_for(types, PQftype(res, i), 0);
        }
    }
    *binary = bin;
    *out = d;
    return 0;
}

static PyObject *decode_row(agentdb_state *st, const PGresult *res, int row, int ncols,
                            PyObject *desc, agentdb_decode_fn *dec, int only_col)
{
    if (only_col >= 0) {
        if (PQgetisnull(res, row, only_col)) {
            Py_RETURN_NONE;
        }
        return dec[only_col](st, PQgetvalue(res, row, only_col),
                             PQgetlength(res, row, only_col), PQftype(res, only_col));
    }
    PyObject *rec = agentdb_record_new(st, desc, ncols);
    if (rec == NULL) {
        return NULL;
    }
    for (int i = 0; i < ncols; i++) {
        PyObject *v;
        if (PQgetisnull(res, row, i)) {
            v = Py_NewRef(Py_None);
        }
        else {
            v = dec[i](st, PQgetvalue(res, row, i), PQgetlength(res, row, i), PQftype(res, i));
            if (v == NULL) {
                for (int j = i; j < ncols; j++) {
                    AGENTDB_RECORD_SET(rec, j, Py_NewRef(Py_None));
                }
                Py_DECREF(rec);
                return NULL;
            }
        }
        AGENTDB_RECORD_SET(rec, i, v);
    }
    agentdb_record_done(st, rec);
    return rec;
}

/* Appends the rows of `res` to the list *rows (made when NULL: the whole result, or the
   first chunk of one). */
static int decode_rows_into(agentdb_state *st, const PGresult *res, int ncols, PyObject *desc,
                            agentdb_decode_fn *dec, PyObject **rows)
{
    int ntuples = PQntuples(res);
    int fresh = *rows == NULL;
    if (fresh && (*rows = PyList_New(ntuples)) == NULL) {
        return -1;
    }
    /* Every object made here stays alive until the rows are returned, so collections
       triggered by these allocations would only traverse them to find no garbage
       (half the CPU of a 10k-row fetch with json values).  Collect at most once, after:
       the allocation count still stands when the collector is enabled again. */
    int gc_was_enabled = ntuples > 1 ? PyGC_Disable() : 0;
    int rc = 0;
    for (int r = 0; r < ntuples && rc == 0; r++) {
        PyObject *rec = decode_row(st, res, r, ncols, desc, dec, -1);
        if (rec == NULL) {
            rc = -1;
        }
        else if (fresh) {
            PyList_SET_ITEM(*rows, r, rec);
        }
        else {
            rc = PyList_Append(*rows, rec);
            Py_DECREF(rec);
        }
    }
    if (gc_was_enabled) {
        PyGC_Enable();
    }
    if (rc < 0 && fresh) {
        Py_CLEAR(*rows); /* a new list with unset slots must not escape */
    }
    return rc;
}

/* Turn a PGRES_TUPLES_OK (or, in chunked rows mode, PGRES_TUPLES_CHUNK) result into
   the op's result, by mode.  Chunks only come for AGENTDB_MODE_ALL/RAW: their rows
   gather in op->rows until the final, empty PGRES_TUPLES_OK. */
static int take_rows(agentdb_Connection *c, agentdb_Op *op, const PGresult *res, int chunk);

int agentdb_op_take_rows(agentdb_Connection *c, agentdb_Op *op, const PGresult *res, int chunk)
{
    /* The connection's own codecs, for the decoders of src/codecs/custom.c. */
    agentdb_state *st = agentdb_conn_st(c);
    const agentdb_typeopts *prev = st->cur_types;
    st->cur_types = &c->types;
    int rc = take_rows(c, op, res, chunk);
    st->cur_types = prev;
    return rc;
}

static int take_rows(agentdb_Connection *c, agentdb_Op *op, const PGresult *res, int chunk)
{
    agentdb_state *st = agentdb_conn_st(c);
    int ncols = PQnfields(res), ntuples = PQntuples(res);
    agentdb_Stmt *s = op->stmt ? agentdb_stmt_get(op->stmt) : NULL;
    PyObject *desc = NULL, *out = NULL;
    agentdb_decode_fn *dec = NULL, *own_dec = NULL;
    int binary = PQbinaryTuples(res);

    if (s != NULL && s->ncols == ncols && s->binary == binary && s->types_gen == c->types.gen &&
        (ncols == 0 || s->desc)) {
        desc = Py_XNewRef(s->desc);
        dec = s->decoders;
    }
    else {
        int bin;
        if (agentdb_pick_decoders(res, ncols, binary, &c->types, &bin, &own_dec) < 0) {
            return -1;
        }
        if (bin != binary) {
            /* Binary rows of a type we cannot decode: cannot happen when we
               asked for binary only with every decoder present. */
            PyMem_Free(own_dec);
            PyErr_SetString(st->InterfaceError, "binary result of an unsupported type");
            return -1;
        }
        dec = own_dec;
        if (op->mode != AGENTDB_MODE_VAL && ncols > 0 &&
            (desc = agentdb_recorddesc_from_result(st, res)) == NULL) {
            goto error;
        }
    }

    switch (op->mode) {
    case AGENTDB_MODE_VAL:
        if (op->column >= ncols) {
            PyErr_Format(st->InterfaceError, "column %d does not exist (the result has %d)",
                         op->column, ncols);
            goto error;
        }
        out = ntuples > 0 ? decode_row(st, res, 0, ncols, desc, dec, op->column)
                          : Py_NewRef(Py_None);
        break;
    case AGENTDB_MODE_ROW:
        out = ntuples > 0 && ncols > 0 ? decode_row(st, res, 0, ncols, desc, dec, -1)
                                       : Py_NewRef(Py_None);
        break;
    case AGENTDB_MODE_ALL:
    case AGENTDB_MODE_RAW:
    case AGENTDB_MODE_DBAPI: {
        if (decode_rows_into(st, res, ncols, desc, dec, &op->rows) < 0) {
            goto error;
        }
        if (chunk) {
            Py_XDECREF(desc);
            PyMem_Free(own_dec);
            return 0; /* more rows to come */
        }
        out = op->rows;
        op->rows = NULL;
        if (op->mode == AGENTDB_MODE_RAW) {
            agentdb_RecordDesc *d = (agentdb_RecordDesc *)desc;
            PyObject *t = Py_BuildValue("(NOO)", out, d ? d->names : Py_None,
                                        d ? d->types : Py_None);
            out = t;
        }
        else if (op->mode == AGENTDB_MODE_DBAPI) {
            out = Py_BuildValue("(NO)", out, desc ? desc : Py_None);
        }
        break;
    }
    default:
        out = NULL;
        break;
    }
    if (out == NULL && PyErr_Occurred()) {
        goto error;
    }
    Py_XSETREF(op->result, out);
    Py_XDECREF(desc);
    PyMem_Free(own_dec);
    return 0;
error:
    Py_XDECREF(desc);
    PyMem_Free(own_dec);
    return -1;
}
