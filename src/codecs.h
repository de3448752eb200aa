/* codecs.h: Python values <-> PostgreSQL values, by type OID (the code: src/codecs/). */
#ifndef AGENTDB_CODECS_H
#define AGENTDB_CODECS_H

#include "agentdb.h"

/* Decode one non-NULL field of type `oid` (data is NUL-terminated in text
   format, `len` bytes in either).  New reference, or NULL with an exception set
   (DataError for malformed input: decoders never trust their input). */
typedef PyObject *(*agentdb_decode_fn)(agentdb_state *st, const char *data, int len,
                                       Oid oid);

/* The decoder for `oid` in binary (binary=1) or text (binary=0) format.
   For text format it never returns NULL: unknown types decode as str.
   For binary format it returns NULL when there is no binary decoder, so the
   caller asks for text results instead. */
agentdb_decode_fn agentdb_decoder(Oid oid, int binary);
/* As agentdb_decoder; json_text keeps json/jsonb (and their arrays) as str. */
agentdb_decode_fn agentdb_decoder_opts(Oid oid, int binary, int json_text);

/* A connection's way with types beyond their built-in OIDs: its options, and the OIDs of
   the extension types it found in its database (pgvector's, whose OIDs are per database;
   0 = not there).  Kept on the connection; `gen` changes whenever the rest does, so that
   decoders picked before are picked again. */
typedef struct agentdb_typeopts {
    int json_text; /* json/jsonb come back as str (connect(decode_json=False)) */
    Oid vector_oid, halfvec_oid;
    /* dict: oid -> the codec set_type_codec()/set_builtin_type_codec() gave it (the
       connection's reference), or NULL */
    PyObject *custom;
    unsigned gen;
} agentdb_typeopts;

/* As agentdb_decoder_opts, for a connection's types. */
agentdb_decode_fn agentdb_decoder_for(const agentdb_typeopts *o, Oid oid, int binary);

/* Encoded parameters ready for PQsendQueryPrepared/PQsendQueryParams. */
typedef struct {
    int n;
    const char **values; /* NULL entry = SQL NULL */
    int *lengths;
    int *formats; /* 0 text, 1 binary */
    Oid *types;   /* the OID declared for each parameter (0 = let the server infer) */
    /* storage owned by the struct */
    char *buf;
    size_t used, cap;
    size_t *offsets;
    void *arrays; /* the allocation behind values/lengths/formats/types/offsets */
    char small[256];
} agentdb_params;

/* Encode `args` (a tuple or list of Python values).  When `types` is given
   (the parameter types of a described prepared statement, `ntypes` of them)
   each value is encoded for its type (binary where we can) and a mismatch
   raises DataError naming the argument, e.g.
   "invalid input for query argument $1: 'x' (an int is required for int4)";
   len(args) != ntypes raises InterfaceError.  When `types` is NULL each value
   is encoded by its Python type in text format with type 0 (server infers),
   except bytes-like values (bytea, binary).  A str containing NUL is
   rejected with DataError.  0 => ok; -1 => error set (and `p` freed). */
int agentdb_params_encode(agentdb_state *st, agentdb_params *p, PyObject *args,
                          const Oid *types, int ntypes);
/* As agentdb_params_encode, with a connection's extension types (`o` may be NULL). */
int agentdb_params_encode_for(agentdb_state *st, agentdb_params *p, PyObject *args,
                              const Oid *types, int ntypes, const agentdb_typeopts *o);

/* The items of `v` as they are now, in a tuple that Python code cannot change: encoders
   call into Python (__index__, __str__, json.dumps...), and that code may empty or shrink
   a list whose items a borrowed pointer or a cached length still refers to.  A tuple is
   its own snapshot, a list (or list subclass) is copied, anything else is iterated;
   `errmsg` (when not NULL) replaces the TypeError of a value that is not iterable.
   New reference, or NULL with an error set. */
PyObject *agentdb_seq_snapshot(PyObject *v, const char *errmsg);
/* An iterator over `v`; over a snapshot of it when it is a list, so that Python code run
   while its items are used cannot add items without end or remove them (COPY records).
   New reference, or NULL with an error set. */
PyObject *agentdb_iter_snapshot(PyObject *v);

/* Makes p empty: no parameters, its inline buffer in use (what agentdb_params_encode starts
   from and agentdb_params_free leaves). Alone, it makes a growing byte buffer (free with
   agentdb_params_free). */
void agentdb_params_scratch(agentdb_params *p);
/* Appends v as the text an untyped parameter is sent as (bytes-like: bytea hex) to p's
   buffer; argno names the value in errors.  0 => ok, -1 => error set. */
int agentdb_encode_text_value(agentdb_state *st, agentdb_params *p, PyObject *v, int argno);

/* Appends n bytes to p's buffer.  0 => ok, -1 => MemoryError set. */
int agentdb_params_put(agentdb_params *p, const void *data, size_t n);
/* Room for `extra` more bytes at p->buf + p->used.  0 => ok, -1 => MemoryError set. */
int agentdb_params_reserve(agentdb_params *p, size_t extra);

/* 1 when agentdb_encode_binary can write values of type `oid` (numeric included, which
   parameters send as text; arrays when their element type can; the types of the
   connection st->cur_types points to, when it points to one). */
int agentdb_has_binary_encoder(agentdb_state *st, Oid oid);
/* Appends v (not None) in `oid`'s binary send format, as COPY ... (FORMAT binary) reads
   it, to p's buffer; argno names the value in errors ("query argument $N").  A type
   without a binary encoder raises ValueError.  0 => ok, -1 => error set. */
int agentdb_encode_binary(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno);

/* Release what agentdb_params_encode allocated; safe on a zeroed struct and twice. */
void agentdb_params_free(agentdb_params *p);

/* parse_array(text): an array's text form as nested lists of str and None (array.c). */
PyObject *agentdb_parse_array_py(PyObject *module, PyObject *arg);

/* Test hooks exposed by the module (and used by the fuzzer):
   _core._decode(oid: int, data: bytes, binary: bool) -> object
   _core._encode(oid: int, value: object) -> tuple[bytes | None, int]   (data, format) */
PyObject *agentdb_codecs_decode_py(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *agentdb_codecs_encode_py(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

#endif /* AGENTDB_CODECS_H */
