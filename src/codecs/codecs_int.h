/* codecs/codecs_int.h: what the files of src/codecs/ share; private to them. */
#ifndef AGENTDB_CODECS_INT_H
#define AGENTDB_CODECS_INT_H

#include "../codecs.h"
#include "byteorder.h"
#include "oids.h"

/* datetime.h defines a static PyDateTimeAPI for its macros; we keep the C API in the
   module state instead (st->datetime_capi), so that variable stays unused. */
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-variable"
#endif
#include <datetime.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#include <stdint.h>
#include <string.h>

/* Items of the tuple in st->codec_cache (built by agentdb_codecs_setup). */
enum {
    CACHE_TZ = 0,      /* dict: UTC offset in seconds (int) -> datetime.timezone */
    CACHE_SAFE_UNKNOWN, /* uuid.SafeUUID.unknown */
    CACHE_STR_INT,     /* "int" */
    CACHE_STR_IS_SAFE, /* "is_safe" */
    CACHE_ENUM,        /* enum.Enum */
    CACHE_STR_VALUE,   /* "value" */
    CACHE_FLOAT_ARRAY, /* array.array('f', [0.0]): what vector values are made from */
    CACHE_SIZE
};

#define CACHED(st, i) PyTuple_GET_ITEM((st)->codec_cache, (i))
#define DT_API(st) ((PyDateTime_CAPI *)(st)->datetime_capi)

/* An encoder by declared type: appends one non-None value's bytes to p->buf.
   0 => ok, -1 => error set. */
typedef int (*encode_fn)(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno);

typedef struct {
    encode_fn fn;
    int format;        /* 0 text, 1 binary */
    int binary_elem;   /* its bytes are also the binary form (usable in binary arrays) */
} encoder;

/* ---------------------------------------------------------------------------------------
   Appending to the buffer (inline: every encoder appends) */

/* Room for `extra` more bytes.  0 => ok, -1 => MemoryError set. */
static inline int buf_reserve(agentdb_params *p, size_t extra)
{
    char *nb;
    if (extra > PY_SSIZE_T_MAX - p->used) {
        PyErr_NoMemory();
        return -1;
    }
    size_t need = p->used + extra;
    if (need <= p->cap) {
        return 0;
    }
    size_t cap = p->cap * 2 > need ? p->cap * 2 : need;
    if (p->buf == p->small) {
        nb = PyMem_Malloc(cap);
        if (nb != NULL) {
            memcpy(nb, p->small, p->used);
        }
    }
    else {
        nb = PyMem_Realloc(p->buf, cap);
    }
    if (nb == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    p->buf = nb;
    p->cap = cap;
    return 0;
}

static inline int buf_put(agentdb_params *p, const void *data, size_t n)
{
    if (buf_reserve(p, n) < 0) {
        return -1;
    }
    memcpy(p->buf + p->used, data, n);
    p->used += n;
    return 0;
}

static inline int buf_put_u32(agentdb_params *p, uint32_t v)
{
    char b[4];
    wr_u32(b, v);
    return buf_put(p, b, 4);
}

static inline int buf_put_u64(agentdb_params *p, uint64_t v)
{
    char b[8];
    wr_u64(b, v);
    return buf_put(p, b, 8);
}

/* ---------------------------------------------------------------------------------------
   Checks and parsing more than one file does */

static inline int is_seq(PyObject *v)
{
    return PyList_Check(v) || PyTuple_Check(v);
}

static inline int is_date(agentdb_state *st, PyObject *v)
{
    return PyObject_TypeCheck(v, DT_API(st)->DateType);
}

static inline int is_datetime(agentdb_state *st, PyObject *v)
{
    return PyObject_TypeCheck(v, DT_API(st)->DateTimeType);
}

static inline int is_time(agentdb_state *st, PyObject *v)
{
    return PyObject_TypeCheck(v, DT_API(st)->TimeType);
}

static inline int is_timedelta(agentdb_state *st, PyObject *v)
{
    return PyObject_TypeCheck(v, DT_API(st)->DeltaType);
}

/* One or more digits at *pos, at most max_digits of them (bounded to fit int64).
   0 => ok, -1 => none or too many (no exception). */
static inline int parse_digits(const char *s, int len, int *pos, int max_digits, int64_t *out)
{
    int64_t v = 0;
    int n = 0;
    while (*pos < len && s[*pos] >= '0' && s[*pos] <= '9') {
        if (++n > max_digits) {
            return -1;
        }
        v = v * 10 + (s[*pos] - '0');
        (*pos)++;
    }
    *out = v;
    return n ? 0 : -1;
}

/* ---------------------------------------------------------------------------------------
   Each file's functions the others use (their comments are at their definitions) */

/* errors.c */
PyObject *agentdb_raise_data(agentdb_state *st, const char *fmt, ...);
PyObject *agentdb_reraise_as_data(agentdb_state *st, const char *context);
PyObject *agentdb_bad_length(agentdb_state *st, const char *type, int len);
int agentdb_bad_arg(agentdb_state *st, int argno, PyObject *value, const char *fmt, ...);
int agentdb_nul_error(agentdb_state *st, int argno);

/* buffer.c */
int agentdb_buf_put_strof(agentdb_params *p, PyObject *obj, int repr);
int agentdb_put_text(agentdb_state *st, agentdb_params *p, PyObject *s, int argno);

/* scalar.c */
PyObject *agentdb_dec_bool_bin(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_int2_bin(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_int4_bin(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_int8_bin(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_oid_bin(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_float4_bin(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_float8_bin(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_text_any(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_bytea_bin(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_json_any(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_jsonb_bin(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_jsonb_bin_as_text(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_uuid_bin(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_bool_text(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_int_text(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_float_text(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_bytea_text(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_uuid_text(agentdb_state *st, const char *data, int len, Oid oid);
int agentdb_enc_bool(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno);
int agentdb_enc_int(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno);
int agentdb_enc_float(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno);
int agentdb_put_float_text(agentdb_params *p, PyObject *v);
int agentdb_put_int_text(agentdb_params *p, PyObject *v);
int agentdb_enc_text(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno);
int agentdb_enc_bytea(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno);
int agentdb_enc_uuid(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno);
int agentdb_enc_json(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno);
int agentdb_enc_unknown(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno);

/* datetime.c */
PyObject *agentdb_dec_date_bin(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_time_bin(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_timetz_bin(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_timestamp_bin(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_interval_bin(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_date_text(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_time_text(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_timestamp_text(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_interval_text(agentdb_state *st, const char *data, int len, Oid oid);
int agentdb_enc_date(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno);
int agentdb_enc_time(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno);
int agentdb_enc_timestamp(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno);
int agentdb_enc_interval(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno);

/* numeric.c */
PyObject *agentdb_dec_numeric_bin(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_numeric_text(agentdb_state *st, const char *data, int len, Oid oid);
int agentdb_put_decimal_text(agentdb_params *p, PyObject *v);
int agentdb_enc_numeric(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno);
int agentdb_enc_numeric_bin(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno);

/* array.c */
PyObject *agentdb_dec_array_bin(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_json_array_bin_as_text(agentdb_state *st, const char *data, int len,
                                             Oid oid);
/* ';' or ',' for the built-in array types decoded as lists of their elements' text (no
   element codec: inet[], money[], ...), 0 for other OIDs (registry.c). */
char agentdb_text_elem_array_delim(Oid oid);
PyObject *agentdb_dec_array_text(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_json_array_text_as_text(agentdb_state *st, const char *data, int len,
                                              Oid oid);
int agentdb_enc_array_text(agentdb_state *st, agentdb_params *p, PyObject *v, const encoder *e,
                           Oid elemoid, int argno, int depth);
int agentdb_enc_array_with(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid,
                           encoder e, int argno, int *format);
int agentdb_enc_array(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno,
                      int *format);

/* vector.c */
PyObject *agentdb_dec_vector_bin(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_halfvec_bin(agentdb_state *st, const char *data, int len, Oid oid);
PyObject *agentdb_dec_vector_text(agentdb_state *st, const char *data, int len, Oid oid);
int agentdb_enc_vector(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno);
int agentdb_enc_halfvec(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno);

/* custom.c: 1 and *out set when the connection has a codec of its own for oid, else 0 */
int agentdb_custom_decoder(const agentdb_typeopts *o, Oid oid, int binary,
                           agentdb_decode_fn *out);
int agentdb_custom_encoder(const agentdb_typeopts *o, Oid oid, encoder *out);

/* untyped.c */
int agentdb_enc_untyped_text(agentdb_state *st, agentdb_params *p, PyObject *v, int argno,
                             int depth);

/* registry.c */
Oid agentdb_array_elem_oid(Oid oid);
const char *agentdb_type_name(Oid oid);
encoder agentdb_typed_encoder(Oid oid);
encoder agentdb_typed_encoder_for(const agentdb_typeopts *o, Oid oid);

#endif /* AGENTDB_CODECS_INT_H */
