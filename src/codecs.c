/* codecs.c: Python values <-> PostgreSQL values (binary and text formats), by type OID. */
#include "codecs.h"
#include "byteorder.h"

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
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------
   Type OIDs (pg_type.dat) */

enum {
    OID_BOOL = 16,
    OID_BYTEA = 17,
    OID_CHAR = 18,
    OID_NAME = 19,
    OID_INT8 = 20,
    OID_INT2 = 21,
    OID_INT4 = 23,
    OID_TEXT = 25,
    OID_OID = 26,
    OID_JSON = 114,
    OID_XML = 142,
    OID_JSON_ARRAY = 199,
    OID_FLOAT4 = 700,
    OID_FLOAT8 = 701,
    OID_UNKNOWN = 705,
    OID_BOOL_ARRAY = 1000,
    OID_BYTEA_ARRAY = 1001,
    OID_CHAR_ARRAY = 1002,
    OID_NAME_ARRAY = 1003,
    OID_INT2_ARRAY = 1005,
    OID_INT4_ARRAY = 1007,
    OID_TEXT_ARRAY = 1009,
    OID_BPCHAR_ARRAY = 1014,
    OID_VARCHAR_ARRAY = 1015,
    OID_INT8_ARRAY = 1016,
    OID_FLOAT4_ARRAY = 1021,
    OID_FLOAT8_ARRAY = 1022,
    OID_OID_ARRAY = 1028,
    OID_BPCHAR = 1042,
    OID_VARCHAR = 1043,
    OID_DATE = 1082,
    OID_TIME = 1083,
    OID_TIMESTAMP = 1114,
    OID_TIMESTAMP_ARRAY = 1115,
    OID_DATE_ARRAY = 1182,
    OID_TIME_ARRAY = 1183,
    OID_TIMESTAMPTZ = 1184,
    OID_TIMESTAMPTZ_ARRAY = 1185,
    OID_INTERVAL = 1186,
    OID_INTERVAL_ARRAY = 1187,
    OID_NUMERIC_ARRAY = 1231,
    OID_TIMETZ = 1266,
    OID_TIMETZ_ARRAY = 1270,
    OID_NUMERIC = 1700,
    OID_UUID = 2950,
    OID_UUID_ARRAY = 2951,
    OID_JSONB = 3802,
    OID_JSONB_ARRAY = 3807,
};

#define USECS_PER_SEC INT64_C(1000000)
#define USECS_PER_DAY INT64_C(86400000000)
/* 2000-01-01 (PostgreSQL's epoch) in days since 1970-01-01. */
#define PG_EPOCH_UNIX_DAYS 10957
/* datetime.date.min / max in days since 1970-01-01. */
#define PY_MIN_UNIX_DAYS (-719162)
#define PY_MAX_UNIX_DAYS 2932896
#define PY_MAX_DELTA_DAYS 999999999
#define PG_MAXDIM 6
#define MAX_PARAMS 65535
/* Bound on the fixed-offset timezones kept for timetz decoding. */
#define TZ_CACHE_MAX 1024

/* Items of the tuple in st->codec_cache (built by agentdb_codecs_setup). */
enum {
    CACHE_TZ = 0,      /* dict: UTC offset in seconds (int) -> datetime.timezone */
    CACHE_SAFE_UNKNOWN, /* uuid.SafeUUID.unknown */
    CACHE_STR_INT,     /* "int" */
    CACHE_STR_IS_SAFE, /* "is_safe" */
    CACHE_ENUM,        /* enum.Enum */
    CACHE_STR_VALUE,   /* "value" */
    CACHE_SIZE
};

#define CACHED(st, i) PyTuple_GET_ITEM((st)->codec_cache, (i))
#define DT_API(st) ((PyDateTime_CAPI *)(st)->datetime_capi)

/* ---------------------------------------------------------------------------------------
   Errors */

static PyObject *data_error_class(agentdb_state *st)
{
    return st->DataError ? st->DataError : PyExc_ValueError;
}

/* Raise DataError (ValueError while errors.c is a stub). Always returns NULL. */
static PyObject *raise_data(agentdb_state *st, const char *fmt, ...)
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
static PyObject *reraise_as_data(agentdb_state *st, const char *context)
{
    PyObject *cause = PyErr_GetRaisedException();
    if (cause == NULL) {
        return raise_data(st, "%s", context);
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

/* ---------------------------------------------------------------------------------------
   Big-endian reads and writes */

/* ---------------------------------------------------------------------------------------
   Calendar arithmetic (proleptic Gregorian, H. Hinnant's algorithms) */

/* Days since 1970-01-01 of y-m-d. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* y-m-d of a day count since 1970-01-01 (any int64 the callers range-checked). */
static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

static int days_in_month(int y, int m)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))) {
        return 29;
    }
    return mdays[m - 1];
}

/* Floor division by a positive b, remainder in [0, b). */
static int64_t floor_divmod(int64_t a, int64_t b, int64_t *rem)
{
    int64_t q = a / b, r = a % b;
    if (r < 0) {
        r += b;
        q--;
    }
    *rem = r;
    return q;
}

/* ---------------------------------------------------------------------------------------
   Building Python objects */

static PyObject *make_date(agentdb_state *st, int64_t unix_days)
{
    int y, m, d;
    if (unix_days < PY_MIN_UNIX_DAYS || unix_days > PY_MAX_UNIX_DAYS) {
        return raise_data(st, "date is out of the range of datetime.date (years 1 to 9999)");
    }
    civil_from_days(unix_days, &y, &m, &d);
    return DT_API(st)->Date_FromDate(y, m, d, DT_API(st)->DateType);
}

/* A datetime from days since 1970 and microseconds into that day, with tzinfo `tz`. */
static PyObject *make_datetime(agentdb_state *st, int64_t unix_days, int64_t usec, PyObject *tz)
{
    int y, m, d;
    if (unix_days < PY_MIN_UNIX_DAYS || unix_days > PY_MAX_UNIX_DAYS) {
        return raise_data(st,
                          "timestamp is out of the range of datetime.datetime (years 1 to 9999)");
    }
    civil_from_days(unix_days, &y, &m, &d);
    int us = (int)(usec % USECS_PER_SEC);
    int64_t secs = usec / USECS_PER_SEC;
    return DT_API(st)->DateTime_FromDateAndTime(y, m, d, (int)(secs / 3600), (int)(secs / 60 % 60),
                                                (int)(secs % 60), us, tz,
                                                DT_API(st)->DateTimeType);
}

/* A datetime from microseconds since 2000-01-01 00:00 (PostgreSQL's timestamp). */
static PyObject *make_timestamp(agentdb_state *st, int64_t pg_usec, PyObject *tz)
{
    int64_t usec;
    int64_t days = floor_divmod(pg_usec, USECS_PER_DAY, &usec);
    return make_datetime(st, days + PG_EPOCH_UNIX_DAYS, usec, tz);
}

static PyObject *make_time(agentdb_state *st, int64_t usec, PyObject *tz)
{
    if (usec < 0 || usec >= USECS_PER_DAY) {
        return raise_data(st, "time of day out of the range of datetime.time "
                              "(24:00:00 cannot be represented)");
    }
    int64_t secs = usec / USECS_PER_SEC;
    return DT_API(st)->Time_FromTime((int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60),
                                     (int)(usec % USECS_PER_SEC), tz, DT_API(st)->TimeType);
}

/* A fixed-offset timezone `east` seconds east of UTC (cached: timetz columns repeat a
   handful of offsets).  New reference. */
static PyObject *tz_for_offset(agentdb_state *st, int64_t east)
{
    PyObject *key = NULL, *delta = NULL, *tz = NULL;
    PyObject *cache = CACHED(st, CACHE_TZ);

    if (east == 0) {
        return Py_NewRef(st->timezone_utc);
    }
    if (east <= -86400 || east >= 86400) {
        return raise_data(st, "time zone offset out of range: %lld seconds", (long long)east);
    }
    key = PyLong_FromLongLong(east);
    if (key == NULL) {
        goto error;
    }
    tz = PyDict_GetItemWithError(cache, key); /* borrowed */
    if (tz != NULL) {
        Py_INCREF(tz);
        Py_DECREF(key);
        return tz;
    }
    if (PyErr_Occurred()) {
        goto error;
    }
    delta = DT_API(st)->Delta_FromDelta(0, (int)east, 0, 1, DT_API(st)->DeltaType);
    if (delta == NULL) {
        goto error;
    }
    tz = DT_API(st)->TimeZone_FromTimeZone(delta, NULL);
    if (tz == NULL) {
        goto error;
    }
    if (PyDict_GET_SIZE(cache) < TZ_CACHE_MAX && PyDict_SetItem(cache, key, tz) < 0) {
        goto error;
    }
    Py_DECREF(key);
    Py_DECREF(delta);
    return tz;
error:
    Py_XDECREF(key);
    Py_XDECREF(delta);
    Py_XDECREF(tz);
    return NULL;
}

static PyObject *make_timedelta(agentdb_state *st, int64_t months, int64_t days, int64_t usec)
{
    int64_t rem;
    int64_t total = months * 30 + days + floor_divmod(usec, USECS_PER_DAY, &rem);
    if (total < -PY_MAX_DELTA_DAYS || total > PY_MAX_DELTA_DAYS) {
        return raise_data(st, "interval is out of the range of datetime.timedelta");
    }
    return DT_API(st)->Delta_FromDelta((int)total, (int)(rem / USECS_PER_SEC),
                                       (int)(rem % USECS_PER_SEC), 1, DT_API(st)->DeltaType);
}

/* A uuid.UUID from its 16 bytes.  Bypasses UUID.__init__ (Python code that validates
   arguments we already know are right): sets the two slots exactly as __init__ and
   __setstate__ do.  New reference. */
static PyObject *make_uuid(agentdb_state *st, const char *bytes16)
{
    PyObject *value = NULL, *uuid = NULL, *noargs = NULL;
    PyTypeObject *tp = (PyTypeObject *)st->UUID;

#if PY_VERSION_HEX >= 0x030D0000
    value = PyLong_FromUnsignedNativeBytes(
        bytes16, 16, Py_ASNATIVEBYTES_BIG_ENDIAN | Py_ASNATIVEBYTES_UNSIGNED_BUFFER);
#else
    value = _PyLong_FromByteArray((const unsigned char *)bytes16, 16, 0, 0);
#endif
    if (value == NULL) {
        goto error;
    }
    noargs = PyTuple_New(0);
    if (noargs == NULL) {
        goto error;
    }
    uuid = tp->tp_new(tp, noargs, NULL);
    if (uuid == NULL) {
        goto error;
    }
    if (PyObject_GenericSetAttr(uuid, CACHED(st, CACHE_STR_INT), value) < 0 ||
        PyObject_GenericSetAttr(uuid, CACHED(st, CACHE_STR_IS_SAFE),
                                CACHED(st, CACHE_SAFE_UNKNOWN)) < 0) {
        goto error;
    }
    /* UUID is immutable and its two slots hold an int and an enum member: it cannot
       be part of a cycle, so the collector need not traverse it (a row per UUID). */
    if (PyObject_GC_IsTracked(uuid)) {
        PyObject_GC_UnTrack(uuid);
    }
    Py_DECREF(value);
    Py_DECREF(noargs);
    return uuid;
error:
    Py_XDECREF(value);
    Py_XDECREF(noargs);
    Py_XDECREF(uuid);
    return NULL;
}

static PyObject *decode_utf8(agentdb_state *st, const char *data, int len)
{
    PyObject *s = PyUnicode_DecodeUTF8(data, len, NULL);
    if (s == NULL) {
        return reraise_as_data(st, "invalid text received from PostgreSQL");
    }
    return s;
}

/* 1 when the text holds a run of 19+ digits: a number orjson would round
   (it turns integers beyond 64 bits into floats); json.loads keeps it exact. */
static int has_long_digit_run(const char *data, int len)
{
    int run = 0;
    for (int i = 0; i < len; i++) {
        if (data[i] >= '0' && data[i] <= '9') {
            if (++run >= 19) {
                return 1;
            }
        }
        else {
            run = 0;
        }
    }
    return 0;
}

static PyObject *json_from_text(agentdb_state *st, const char *data, int len)
{
    if (st->json_loads_fast != NULL && !has_long_digit_run(data, len)) {
        PyObject *raw = PyBytes_FromStringAndSize(data, len);
        if (raw == NULL) {
            return NULL;
        }
        PyObject *res = PyObject_CallOneArg(st->json_loads_fast, raw);
        Py_DECREF(raw);
        if (res != NULL) {
            return res;
        }
        PyErr_Clear(); /* json.loads decides */
    }
    PyObject *text = decode_utf8(st, data, len);
    if (text == NULL) {
        return NULL;
    }
    PyObject *res = PyObject_CallOneArg(st->json_loads, text);
    Py_DECREF(text);
    if (res == NULL) {
        return reraise_as_data(st, "invalid JSON received from PostgreSQL");
    }
    return res;
}

static PyObject *decimal_from_ascii(agentdb_state *st, const char *data, Py_ssize_t len)
{
    PyObject *text = PyUnicode_DecodeASCII(data, len, NULL);
    if (text == NULL) {
        return reraise_as_data(st, "invalid numeric received from PostgreSQL");
    }
    PyObject *res = PyObject_CallOneArg(st->Decimal, text);
    Py_DECREF(text);
    if (res == NULL) {
        return reraise_as_data(st, "invalid numeric received from PostgreSQL");
    }
    return res;
}

static PyObject *bad_length(agentdb_state *st, const char *type, int len)
{
    return raise_data(st, "invalid binary %s value: %d bytes", type, len);
}

/* Element OID of the array types we know, 0 for anything else. */
static Oid array_elem_oid(Oid oid)
{
    switch (oid) {
    case OID_BOOL_ARRAY: return OID_BOOL;
    case OID_BYTEA_ARRAY: return OID_BYTEA;
    case OID_CHAR_ARRAY: return OID_CHAR;
    case OID_NAME_ARRAY: return OID_NAME;
    case OID_INT2_ARRAY: return OID_INT2;
    case OID_INT4_ARRAY: return OID_INT4;
    case OID_TEXT_ARRAY: return OID_TEXT;
    case OID_VARCHAR_ARRAY: return OID_VARCHAR;
    case OID_BPCHAR_ARRAY: return OID_BPCHAR;
    case OID_INT8_ARRAY: return OID_INT8;
    case OID_FLOAT4_ARRAY: return OID_FLOAT4;
    case OID_FLOAT8_ARRAY: return OID_FLOAT8;
    case OID_OID_ARRAY: return OID_OID;
    case OID_TIMESTAMP_ARRAY: return OID_TIMESTAMP;
    case OID_DATE_ARRAY: return OID_DATE;
    case OID_TIME_ARRAY: return OID_TIME;
    case OID_TIMESTAMPTZ_ARRAY: return OID_TIMESTAMPTZ;
    case OID_INTERVAL_ARRAY: return OID_INTERVAL;
    case OID_NUMERIC_ARRAY: return OID_NUMERIC;
    case OID_TIMETZ_ARRAY: return OID_TIMETZ;
    case OID_UUID_ARRAY: return OID_UUID;
    case OID_JSON_ARRAY: return OID_JSON;
    case OID_JSONB_ARRAY: return OID_JSONB;
    default: return 0;
    }
}

/* ---------------------------------------------------------------------------------------
   Binary decoders */

static PyObject *dec_bool_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len != 1) {
        return bad_length(st, "bool", len);
    }
    return Py_NewRef(data[0] ? Py_True : Py_False);
}

static PyObject *dec_int2_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len != 2) {
        return bad_length(st, "int2", len);
    }
    return PyLong_FromLong((int16_t)rd_u16(data));
}

static PyObject *dec_int4_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len != 4) {
        return bad_length(st, "int4", len);
    }
    return PyLong_FromLong((int32_t)rd_u32(data));
}

static PyObject *dec_int8_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len != 8) {
        return bad_length(st, "int8", len);
    }
    return PyLong_FromLongLong((int64_t)rd_u64(data));
}

static PyObject *dec_oid_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len != 4) {
        return bad_length(st, "oid", len);
    }
    return PyLong_FromUnsignedLong(rd_u32(data));
}

static PyObject *dec_float4_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len != 4) {
        return bad_length(st, "float4", len);
    }
    uint32_t bits = rd_u32(data);
    float f;
    memcpy(&f, &bits, sizeof f);
    return PyFloat_FromDouble(f);
}

static PyObject *dec_float8_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len != 8) {
        return bad_length(st, "float8", len);
    }
    uint64_t bits = rd_u64(data);
    double d;
    memcpy(&d, &bits, sizeof d);
    return PyFloat_FromDouble(d);
}

/* numeric: int16 ndigits, int16 weight, uint16 sign, uint16 dscale, then ndigits
   base-10000 digits; value = sum(digit[i] * 10000^(weight - i)), shown with dscale
   decimals.  Rendered as the text PostgreSQL would print, then Decimal(text): one
   C-level parse, faster than building a digits tuple. */
static PyObject *dec_numeric_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    char stackbuf[160];
    char *buf = stackbuf, *o;
    PyObject *res;
    (void)oid;

    if (len < 8) {
        return bad_length(st, "numeric", len);
    }
    int ndigits = (int16_t)rd_u16(data);
    int weight = (int16_t)rd_u16(data + 2);
    unsigned sign = rd_u16(data + 4);
    int dscale = rd_u16(data + 6);
    if (ndigits < 0 || len != 8 + 2 * ndigits) {
        return bad_length(st, "numeric", len);
    }
    switch (sign) {
    case 0x0000:
    case 0x4000: break;
    case 0xC000: return decimal_from_ascii(st, "NaN", 3);
    case 0xD000: return decimal_from_ascii(st, "Infinity", 8);
    case 0xF000: return decimal_from_ascii(st, "-Infinity", 9);
    default: return raise_data(st, "invalid binary numeric value: sign 0x%04x", sign);
    }
    if (dscale > 0x3FFF) {
        return raise_data(st, "invalid binary numeric value: scale %d", dscale);
    }
    const char *digits = data + 8;
    for (int i = 0; i < ndigits; i++) {
        if (rd_u16(digits + 2 * i) > 9999) {
            return raise_data(st, "invalid binary numeric value: digit out of range");
        }
    }
    size_t size = 1 + (weight >= 0 ? (size_t)(weight + 1) * 4 : 1) + 1 + (size_t)dscale + 4;
    if (size > sizeof stackbuf) {
        buf = PyMem_Malloc(size);
        if (buf == NULL) {
            return PyErr_NoMemory();
        }
    }
    o = buf;
    if (sign == 0x4000) {
        *o++ = '-';
    }
    if (weight < 0) {
        *o++ = '0';
    }
    else {
        for (int i = 0; i <= weight; i++) {
            int dig = i < ndigits ? rd_u16(digits + 2 * i) : 0;
            if (i == 0) {
                o += sprintf(o, "%d", dig);
            }
            else {
                o[0] = (char)('0' + dig / 1000);
                o[1] = (char)('0' + dig / 100 % 10);
                o[2] = (char)('0' + dig / 10 % 10);
                o[3] = (char)('0' + dig % 10);
                o += 4;
            }
        }
    }
    if (dscale > 0) {
        *o++ = '.';
        int written = 0;
        for (int i = weight + 1; written < dscale; i++) {
            int dig = (i >= 0 && i < ndigits) ? rd_u16(digits + 2 * i) : 0;
            char group[4] = {(char)('0' + dig / 1000), (char)('0' + dig / 100 % 10),
                             (char)('0' + dig / 10 % 10), (char)('0' + dig % 10)};
            for (int k = 0; k < 4 && written < dscale; k++, written++) {
                *o++ = group[k];
            }
        }
    }
    res = decimal_from_ascii(st, buf, o - buf);
    if (buf != stackbuf) {
        PyMem_Free(buf);
    }
    return res;
}

static PyObject *dec_text_any(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    return decode_utf8(st, data, len);
}

static PyObject *dec_bytea_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)st;
    (void)oid;
    return PyBytes_FromStringAndSize(data, len);
}

static PyObject *dec_json_any(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    return json_from_text(st, data, len);
}

static PyObject *dec_jsonb_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len < 1 || data[0] != 1) {
        return raise_data(st, "invalid binary jsonb value: unknown version");
    }
    return json_from_text(st, data + 1, len - 1);
}

static PyObject *dec_jsonb_bin_as_text(agentdb_state *st, const char *data, int len, Oid oid)
{
    if (len < 1 || data[0] != 1) {
        return raise_data(st, "invalid binary jsonb value: unknown version");
    }
    return dec_text_any(st, data + 1, len - 1, oid);
}

static PyObject *dec_date_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len != 4) {
        return bad_length(st, "date", len);
    }
    int32_t v = (int32_t)rd_u32(data);
    if (v == INT32_MAX) {
        return DT_API(st)->Date_FromDate(9999, 12, 31, DT_API(st)->DateType);
    }
    if (v == INT32_MIN) {
        return DT_API(st)->Date_FromDate(1, 1, 1, DT_API(st)->DateType);
    }
    return make_date(st, (int64_t)v + PG_EPOCH_UNIX_DAYS);
}

static PyObject *dec_time_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len != 8) {
        return bad_length(st, "time", len);
    }
    return make_time(st, (int64_t)rd_u64(data), Py_None);
}

static PyObject *dec_timetz_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len != 12) {
        return bad_length(st, "timetz", len);
    }
    /* PostgreSQL keeps the zone as seconds west of UTC. */
    PyObject *tz = tz_for_offset(st, -(int64_t)(int32_t)rd_u32(data + 8));
    if (tz == NULL) {
        return NULL;
    }
    PyObject *res = make_time(st, (int64_t)rd_u64(data), tz);
    Py_DECREF(tz);
    return res;
}

static PyObject *timestamp_infinity(agentdb_state *st, int positive, PyObject *tz)
{
    if (positive) {
        return DT_API(st)->DateTime_FromDateAndTime(9999, 12, 31, 23, 59, 59, 999999, tz,
                                                    DT_API(st)->DateTimeType);
    }
    return DT_API(st)->DateTime_FromDateAndTime(1, 1, 1, 0, 0, 0, 0, tz,
                                                DT_API(st)->DateTimeType);
}

static PyObject *dec_timestamp_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    PyObject *tz = oid == OID_TIMESTAMPTZ ? st->timezone_utc : Py_None;
    if (len != 8) {
        return bad_length(st, "timestamp", len);
    }
    int64_t v = (int64_t)rd_u64(data);
    if (v == INT64_MAX || v == INT64_MIN) {
        return timestamp_infinity(st, v == INT64_MAX, tz);
    }
    return make_timestamp(st, v, tz);
}

static PyObject *dec_interval_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len != 16) {
        return bad_length(st, "interval", len);
    }
    return make_timedelta(st, (int32_t)rd_u32(data + 12), (int32_t)rd_u32(data + 8),
                          (int64_t)rd_u64(data));
}

static PyObject *dec_uuid_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len != 16) {
        return bad_length(st, "uuid", len);
    }
    return make_uuid(st, data);
}

/* One level of a binary array's elements; *pos advances over what it reads. */
static PyObject *array_bin_level(agentdb_state *st, const int32_t *dims, int ndim, int level,
                                 const char **pos, const char *end, agentdb_decode_fn dec,
                                 Oid elemoid)
{
    PyObject *list = PyList_New(dims[level]);
    if (list == NULL) {
        return NULL;
    }
    for (int32_t i = 0; i < dims[level]; i++) {
        PyObject *item;
        if (level + 1 < ndim) {
            item = array_bin_level(st, dims, ndim, level + 1, pos, end, dec, elemoid);
        }
        else if (end - *pos < 4) {
            item = raise_data(st, "invalid binary array: truncated");
        }
        else {
            int32_t elen = (int32_t)rd_u32(*pos);
            *pos += 4;
            if (elen == -1) {
                item = Py_NewRef(Py_None);
            }
            else if (elen < 0 || elen > end - *pos) {
                item = raise_data(st, "invalid binary array: bad element length %d", elen);
            }
            else {
                item = dec(st, *pos, elen, elemoid);
                *pos += elen;
            }
        }
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

/* Binary array: int32 ndim, int32 flags (has nulls), uint32 element OID, ndim x (int32
   size, int32 lower bound), then per element int32 length (-1 = NULL) and its bytes. */
static PyObject *array_bin(agentdb_state *st, const char *data, int len, int json_text)
{
    int32_t dims[PG_MAXDIM];
    if (len < 12) {
        return bad_length(st, "array", len);
    }
    int32_t ndim = (int32_t)rd_u32(data);
    Oid elemoid = rd_u32(data + 8);
    if (ndim == 0) {
        return PyList_New(0);
    }
    if (ndim < 0 || ndim > PG_MAXDIM) {
        return raise_data(st, "invalid binary array: %d dimensions", ndim);
    }
    if (len < 12 + 8 * ndim) {
        return bad_length(st, "array", len);
    }
    /* Every element takes at least 4 bytes: bounds the lists we allocate. */
    int64_t total = 1, room = (len - 12 - 8 * ndim) / 4;
    for (int i = 0; i < ndim; i++) {
        dims[i] = (int32_t)rd_u32(data + 12 + 8 * i);
        if (dims[i] < 0) {
            return raise_data(st, "invalid binary array: negative dimension");
        }
        total *= dims[i];
        if (total > room) {
            return raise_data(st, "invalid binary array: truncated");
        }
    }
    if (total == 0) {
        return PyList_New(0);
    }
    /* Arrays of arrays do not exist; refusing them also bounds the recursion. */
    agentdb_decode_fn dec =
        array_elem_oid(elemoid) ? NULL : agentdb_decoder_opts(elemoid, 1, json_text);
    if (dec == NULL) {
        return raise_data(st, "no binary decoder for array elements of type OID %u",
                          (unsigned)elemoid);
    }
    const char *pos = data + 12 + 8 * ndim, *end = data + len;
    PyObject *res = array_bin_level(st, dims, ndim, 0, &pos, end, dec, elemoid);
    if (res != NULL && pos != end) {
        Py_DECREF(res);
        return raise_data(st, "invalid binary array: %d trailing bytes", (int)(end - pos));
    }
    return res;
}

static PyObject *dec_array_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    return array_bin(st, data, len, 0);
}

static PyObject *dec_json_array_bin_as_text(agentdb_state *st, const char *data, int len,
                                            Oid oid)
{
    (void)oid;
    return array_bin(st, data, len, 1);
}

/* ---------------------------------------------------------------------------------------
   Text-format parsing helpers: each works on (s, len, *pos) and never reads past len. */

/* Exactly n digits at *pos into *out. 0 => ok, -1 => not there (no exception). */
static int parse_fixed(const char *s, int len, int *pos, int n, int *out)
{
    int v = 0;
    if (len - *pos < n) {
        return -1;
    }
    for (int i = 0; i < n; i++) {
        char c = s[*pos + i];
        if (c < '0' || c > '9') {
            return -1;
        }
        v = v * 10 + (c - '0');
    }
    *pos += n;
    *out = v;
    return 0;
}

/* One or more digits at *pos, at most max_digits of them (bounded to fit int64).
   0 => ok, -1 => none or too many (no exception). */
static int parse_digits(const char *s, int len, int *pos, int max_digits, int64_t *out)
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

static int text_equals(const char *s, int len, const char *lit)
{
    return (size_t)len == strlen(lit) && memcmp(s, lit, (size_t)len) == 0;
}

/* Is " BC" anywhere in s (ISO output puts it at the end of dates and timestamps)? */
static int has_bc(const char *s, int len)
{
    for (int i = 0; i + 3 <= len; i++) {
        if (s[i] == ' ' && s[i + 1] == 'B' && s[i + 2] == 'C') {
            return 1;
        }
    }
    return 0;
}

/* YYYY-MM-DD.  0 => ok, -1 => DataError set. */
static int parse_date(agentdb_state *st, const char *s, int len, int *pos, int *y, int *m,
                      int *d)
{
    int64_t year;
    int start = *pos;
    if (has_bc(s, len)) {
        raise_data(st, "BC dates cannot be represented by Python's datetime: %.40s", s);
        return -1;
    }
    if (parse_digits(s, len, pos, 9, &year) < 0 || *pos - start < 4) {
        goto bad;
    }
    if (year > 9999) {
        raise_data(st, "date out of the range of Python's datetime (year > 9999): %.40s", s);
        return -1;
    }
    if (*pos >= len || s[*pos] != '-') {
        goto bad;
    }
    (*pos)++;
    if (parse_fixed(s, len, pos, 2, m) < 0 || *pos >= len || s[*pos] != '-') {
        goto bad;
    }
    (*pos)++;
    if (parse_fixed(s, len, pos, 2, d) < 0) {
        goto bad;
    }
    *y = (int)year;
    if (*y < 1 || *m < 1 || *m > 12 || *d < 1 || *d > days_in_month(*y, *m)) {
        goto bad;
    }
    return 0;
bad:
    raise_data(st, "invalid date received from PostgreSQL: %.40s", s);
    return -1;
}

/* HH:MM:SS[.ffffff] (hours < 24) into microseconds.  0 => ok, -1 => DataError set. */
static int parse_time(agentdb_state *st, const char *s, int len, int *pos, int64_t *usec)
{
    int h, m, sec, frac = 0, ndig = 0;
    if (parse_fixed(s, len, pos, 2, &h) < 0 || *pos >= len || s[*pos] != ':') {
        goto bad;
    }
    (*pos)++;
    if (parse_fixed(s, len, pos, 2, &m) < 0 || *pos >= len || s[*pos] != ':') {
        goto bad;
    }
    (*pos)++;
    if (parse_fixed(s, len, pos, 2, &sec) < 0) {
        goto bad;
    }
    if (*pos < len && s[*pos] == '.') {
        (*pos)++;
        while (*pos < len && s[*pos] >= '0' && s[*pos] <= '9') {
            if (++ndig > 6) {
                goto bad;
            }
            frac = frac * 10 + (s[*pos] - '0');
            (*pos)++;
        }
        if (ndig == 0) {
            goto bad;
        }
        for (int i = ndig; i < 6; i++) {
            frac *= 10;
        }
    }
    if (h == 24 && m == 0 && sec == 0 && frac == 0) {
        raise_data(st, "time 24:00:00 cannot be represented by datetime.time");
        return -1;
    }
    if (h > 23 || m > 59 || sec > 59) {
        goto bad;
    }
    *usec = ((int64_t)h * 3600 + m * 60 + sec) * USECS_PER_SEC + frac;
    return 0;
bad:
    raise_data(st, "invalid time received from PostgreSQL: %.40s", s);
    return -1;
}

/* +HH[:MM[:SS]] into seconds east of UTC.  0 => ok, -1 => DataError set. */
static int parse_offset(agentdb_state *st, const char *s, int len, int *pos, int64_t *east)
{
    int sign, h, m = 0, sec = 0;
    if (*pos >= len || (s[*pos] != '+' && s[*pos] != '-')) {
        goto bad;
    }
    sign = s[*pos] == '-' ? -1 : 1;
    (*pos)++;
    if (parse_fixed(s, len, pos, 2, &h) < 0) {
        goto bad;
    }
    if (*pos < len && s[*pos] == ':') {
        (*pos)++;
        if (parse_fixed(s, len, pos, 2, &m) < 0) {
            goto bad;
        }
        if (*pos < len && s[*pos] == ':') {
            (*pos)++;
            if (parse_fixed(s, len, pos, 2, &sec) < 0) {
                goto bad;
            }
        }
    }
    if (m > 59 || sec > 59) {
        goto bad;
    }
    *east = sign * ((int64_t)h * 3600 + m * 60 + sec);
    return 0;
bad:
    raise_data(st, "invalid time zone offset received from PostgreSQL: %.40s", s);
    return -1;
}

/* ---------------------------------------------------------------------------------------
   Text decoders (data is NUL-terminated, but only `len` bytes are trusted) */

static PyObject *dec_bool_text(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len == 1 && data[0] == 't') {
        Py_RETURN_TRUE;
    }
    if (len == 1 && data[0] == 'f') {
        Py_RETURN_FALSE;
    }
    return raise_data(st, "invalid bool received from PostgreSQL: %.40s", data);
}

static PyObject *dec_int_text(agentdb_state *st, const char *data, int len, Oid oid)
{
    int pos = 0, neg = 0;
    int64_t v;
    (void)oid;
    if (len > 0 && (data[0] == '-' || data[0] == '+')) {
        neg = data[0] == '-';
        pos = 1;
    }
    /* 18 digits always fit; int8's extremes have 19 and go through PyLong_FromString. */
    if (parse_digits(data, len, &pos, 18, &v) == 0 && pos == len) {
        return PyLong_FromLongLong(neg ? -v : v);
    }
    pos = neg || (len > 0 && data[0] == '+');
    if (len > 0 && len <= 20 && parse_digits(data, len, &pos, 19, &v) == 0 && pos == len) {
        char tmp[24];
        memcpy(tmp, data, (size_t)len);
        tmp[len] = '\0';
        return PyLong_FromString(tmp, NULL, 10);
    }
    return raise_data(st, "invalid integer received from PostgreSQL: %.40s", data);
}

static PyObject *dec_float_text(agentdb_state *st, const char *data, int len, Oid oid)
{
    char tmp[128];
    char *end = NULL;
    (void)oid;
    if (len <= 0 || (size_t)len >= sizeof tmp) {
        goto bad;
    }
    memcpy(tmp, data, (size_t)len);
    tmp[len] = '\0';
    double d = PyOS_string_to_double(tmp, &end, NULL);
    if (d == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        goto bad;
    }
    if (end != tmp + len) {
        goto bad;
    }
    return PyFloat_FromDouble(d);
bad:
    return raise_data(st, "invalid float received from PostgreSQL: %.40s", data);
}

static PyObject *dec_numeric_text(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    for (int i = 0; i < len; i++) {
        /* Decimal() also takes spaces, underscores and non-ASCII digits: PostgreSQL
           never sends those, so they mean a corrupt value. */
        char c = data[i];
        if (!((c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' ||
              c == 'E' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) {
            return raise_data(st, "invalid numeric received from PostgreSQL: %.40s", data);
        }
    }
    return decimal_from_ascii(st, data, len);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* bytea text: hex format "\x0a0b" (the default), or the old escape format. */
static PyObject *dec_bytea_text(agentdb_state *st, const char *data, int len, Oid oid)
{
    PyObject *res = NULL;
    char *out;
    Py_ssize_t n = 0;
    (void)oid;
    if (len >= 2 && data[0] == '\\' && data[1] == 'x') {
        if ((len - 2) % 2 != 0) {
            return raise_data(st, "invalid bytea received from PostgreSQL: odd hex length");
        }
        res = PyBytes_FromStringAndSize(NULL, (len - 2) / 2);
        if (res == NULL) {
            return NULL;
        }
        out = PyBytes_AS_STRING(res);
        for (int i = 2; i < len; i += 2) {
            int hi = hexval(data[i]), lo = hexval(data[i + 1]);
            if (hi < 0 || lo < 0) {
                Py_DECREF(res);
                return raise_data(st, "invalid bytea received from PostgreSQL: bad hex digit");
            }
            out[n++] = (char)(hi << 4 | lo);
        }
        return res;
    }
    res = PyBytes_FromStringAndSize(NULL, len);
    if (res == NULL) {
        return NULL;
    }
    out = PyBytes_AS_STRING(res);
    for (int i = 0; i < len;) {
        if (data[i] != '\\') {
            out[n++] = data[i++];
        }
        else if (i + 1 < len && data[i + 1] == '\\') {
            out[n++] = '\\';
            i += 2;
        }
        else if (i + 3 < len && data[i + 1] >= '0' && data[i + 1] <= '3' && data[i + 2] >= '0' &&
                 data[i + 2] <= '7' && data[i + 3] >= '0' && data[i + 3] <= '7') {
            out[n++] = (char)((data[i + 1] - '0') << 6 | (data[i + 2] - '0') << 3 |
                              (data[i + 3] - '0'));
            i += 4;
        }
        else {
            Py_DECREF(res);
            return raise_data(st, "invalid bytea received from PostgreSQL: bad escape");
        }
    }
    if (_PyBytes_Resize(&res, n) < 0) {
        return NULL;
    }
    return res;
}

/* 32 hex digits, hyphens anywhere (as PostgreSQL's uuid_in allows some), into 16 bytes.
   Also takes surrounding braces.  0 => ok, -1 => malformed (no exception). */
static int parse_uuid_text(const char *s, Py_ssize_t len, char *out)
{
    int n = 0;
    if (len >= 2 && s[0] == '{' && s[len - 1] == '}') {
        s++;
        len -= 2;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        if (s[i] == '-') {
            continue;
        }
        int v = hexval(s[i]);
        if (v < 0 || n >= 32) {
            return -1;
        }
        if (n % 2 == 0) {
            out[n / 2] = (char)(v << 4);
        }
        else {
            out[n / 2] = (char)(out[n / 2] | v);
        }
        n++;
    }
    return n == 32 ? 0 : -1;
}

static PyObject *dec_uuid_text(agentdb_state *st, const char *data, int len, Oid oid)
{
    char bytes[16];
    (void)oid;
    if (parse_uuid_text(data, len, bytes) < 0) {
        return raise_data(st, "invalid uuid received from PostgreSQL: %.40s", data);
    }
    return make_uuid(st, bytes);
}

static PyObject *dec_date_text(agentdb_state *st, const char *data, int len, Oid oid)
{
    int pos = 0, y, m, d;
    (void)oid;
    if (text_equals(data, len, "infinity")) {
        return DT_API(st)->Date_FromDate(9999, 12, 31, DT_API(st)->DateType);
    }
    if (text_equals(data, len, "-infinity")) {
        return DT_API(st)->Date_FromDate(1, 1, 1, DT_API(st)->DateType);
    }
    if (parse_date(st, data, len, &pos, &y, &m, &d) < 0) {
        return NULL;
    }
    if (pos != len) {
        return raise_data(st, "invalid date received from PostgreSQL: %.40s", data);
    }
    return DT_API(st)->Date_FromDate(y, m, d, DT_API(st)->DateType);
}

static PyObject *dec_time_text(agentdb_state *st, const char *data, int len, Oid oid)
{
    int pos = 0;
    int64_t usec, east = 0;
    PyObject *tz = NULL, *res;
    if (parse_time(st, data, len, &pos, &usec) < 0) {
        return NULL;
    }
    if (oid == OID_TIMETZ && parse_offset(st, data, len, &pos, &east) < 0) {
        return NULL;
    }
    if (pos != len) {
        return raise_data(st, "invalid time received from PostgreSQL: %.40s", data);
    }
    if (oid == OID_TIMETZ) {
        tz = tz_for_offset(st, east);
        if (tz == NULL) {
            return NULL;
        }
    }
    res = make_time(st, usec, tz ? tz : Py_None);
    Py_XDECREF(tz);
    return res;
}

static PyObject *dec_timestamp_text(agentdb_state *st, const char *data, int len, Oid oid)
{
    int pos = 0, y, m, d;
    int64_t usec, east = 0;
    int tz = oid == OID_TIMESTAMPTZ;
    PyObject *tzinfo = tz ? st->timezone_utc : Py_None;

    if (text_equals(data, len, "infinity")) {
        return timestamp_infinity(st, 1, tzinfo);
    }
    if (text_equals(data, len, "-infinity")) {
        return timestamp_infinity(st, 0, tzinfo);
    }
    if (parse_date(st, data, len, &pos, &y, &m, &d) < 0) {
        return NULL;
    }
    if (pos >= len || (data[pos] != ' ' && data[pos] != 'T')) {
        return raise_data(st, "invalid timestamp received from PostgreSQL: %.40s", data);
    }
    pos++;
    if (parse_time(st, data, len, &pos, &usec) < 0) {
        return NULL;
    }
    if (tz && parse_offset(st, data, len, &pos, &east) < 0) {
        return NULL;
    }
    if (pos != len) {
        return raise_data(st, "invalid timestamp received from PostgreSQL: %.40s", data);
    }
    /* Shift to UTC in microseconds since 1970: the day can change. */
    int64_t total = days_from_civil(y, m, d) * USECS_PER_DAY + usec - east * USECS_PER_SEC;
    int64_t rem;
    int64_t days = floor_divmod(total, USECS_PER_DAY, &rem);
    return make_datetime(st, days, rem, tzinfo);
}

/* Interval in the default 'postgres' IntervalStyle:
   "1 year 2 mons 3 days 04:05:06.789", "-1 years -2 mons +3 days -04:05:06", "00:00:00". */
static PyObject *dec_interval_text(agentdb_state *st, const char *data, int len, Oid oid)
{
    int pos = 0, seen_time = 0;
    int64_t months = 0, days = 0, usec = 0;
    const int64_t limit = INT64_C(1000000000000000); /* keeps the sums below in int64 */
    (void)oid;

    while (1) {
        while (pos < len && data[pos] == ' ') {
            pos++;
        }
        if (pos >= len) {
            break;
        }
        int64_t sign = 1, n;
        if (data[pos] == '-' || data[pos] == '+') {
            sign = data[pos] == '-' ? -1 : 1;
            pos++;
        }
        if (parse_digits(data, len, &pos, 15, &n) < 0) {
            goto bad;
        }
        if (pos < len && data[pos] == ':') {
            /* [-]H+:MM:SS[.ffffff]: hours are unbounded, the rest like a time. */
            int mi, se, frac = 0, ndig = 0;
            pos++;
            if (seen_time || n > 2562047788 || parse_fixed(data, len, &pos, 2, &mi) < 0 ||
                pos >= len || data[pos] != ':') {
                goto bad;
            }
            pos++;
            if (parse_fixed(data, len, &pos, 2, &se) < 0 || mi > 59 || se > 59) {
                goto bad;
            }
            if (pos < len && data[pos] == '.') {
                pos++;
                while (pos < len && data[pos] >= '0' && data[pos] <= '9') {
                    if (++ndig > 6) {
                        goto bad;
                    }
                    frac = frac * 10 + (data[pos++] - '0');
                }
                if (ndig == 0) {
                    goto bad;
                }
                for (int i = ndig; i < 6; i++) {
                    frac *= 10;
                }
            }
            seen_time = 1;
            /* Whole days of the hours go to `days`: 2562047788:00:54.775807 (the
               largest) would overflow int64 microseconds otherwise. */
            days += sign * (n / 24);
            usec = sign * (((n % 24) * 3600 + mi * 60 + se) * USECS_PER_SEC + frac);
            continue;
        }
        if (pos >= len || data[pos] != ' ') {
            goto bad;
        }
        pos++;
        int ustart = pos;
        while (pos < len && data[pos] >= 'a' && data[pos] <= 'z') {
            pos++;
        }
        const char *unit = data + ustart;
        int ulen = pos - ustart;
        if (text_equals(unit, ulen, "year") || text_equals(unit, ulen, "years")) {
            months += sign * n * 12;
        }
        else if (text_equals(unit, ulen, "mon") || text_equals(unit, ulen, "mons")) {
            months += sign * n;
        }
        else if (text_equals(unit, ulen, "day") || text_equals(unit, ulen, "days")) {
            days += sign * n;
        }
        else {
            goto bad;
        }
        if (months > limit || months < -limit || days > limit || days < -limit) {
            goto bad;
        }
    }
    return make_timedelta(st, months, days, usec);
bad:
    return raise_data(st, "invalid interval received from PostgreSQL: %.60s", data);
}

static int is_array_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* One {...} level of a text array at data[*pos]; elements unescaped into `scratch`
   (as large as the input) and decoded with `dec`. */
static PyObject *array_text_level(agentdb_state *st, const char *data, int len, int *pos,
                                  int depth, agentdb_decode_fn dec, Oid elemoid, char *scratch)
{
    PyObject *list = NULL, *item = NULL;

    if (*pos >= len || data[*pos] != '{') {
        goto bad;
    }
    (*pos)++;
    list = PyList_New(0);
    if (list == NULL) {
        return NULL;
    }
    while (*pos < len && is_array_space(data[*pos])) {
        (*pos)++;
    }
    if (*pos < len && data[*pos] == '}') {
        (*pos)++;
        return list;
    }
    while (1) {
        while (*pos < len && is_array_space(data[*pos])) {
            (*pos)++;
        }
        if (*pos >= len) {
            goto bad;
        }
        if (data[*pos] == '{') {
            if (depth >= PG_MAXDIM) {
                goto bad;
            }
            item = array_text_level(st, data, len, pos, depth + 1, dec, elemoid, scratch);
        }
        else {
            int n = 0, quoted = 0, escaped = 0, lastkept = 0;
            if (data[*pos] == '"') {
                quoted = 1;
                (*pos)++;
                while (1) {
                    if (*pos >= len) {
                        goto bad;
                    }
                    char c = data[(*pos)++];
                    if (c == '"') {
                        break;
                    }
                    if (c == '\\') {
                        if (*pos >= len) {
                            goto bad;
                        }
                        c = data[(*pos)++];
                    }
                    scratch[n++] = c;
                }
            }
            else {
                /* Unquoted: up to , or }; backslash escapes; trailing blanks dropped. */
                while (*pos < len && data[*pos] != ',' && data[*pos] != '}') {
                    char c = data[(*pos)++];
                    if (c == '"' || c == '{') {
                        goto bad;
                    }
                    if (c == '\\') {
                        if (*pos >= len) {
                            goto bad;
                        }
                        c = data[(*pos)++];
                        escaped = 1;
                        scratch[n++] = c;
                        lastkept = n;
                        continue;
                    }
                    scratch[n++] = c;
                    if (!is_array_space(c)) {
                        lastkept = n;
                    }
                }
                n = lastkept;
                if (n == 0) {
                    goto bad;
                }
            }
            scratch[n] = '\0';
            if (!quoted && !escaped && n == 4 && (scratch[0] | 0x20) == 'n' &&
                (scratch[1] | 0x20) == 'u' && (scratch[2] | 0x20) == 'l' &&
                (scratch[3] | 0x20) == 'l') {
                item = Py_NewRef(Py_None);
            }
            else {
                item = dec(st, scratch, n, elemoid);
            }
        }
        if (item == NULL) {
            goto error;
        }
        if (PyList_Append(list, item) < 0) {
            goto error;
        }
        Py_CLEAR(item);
        while (*pos < len && is_array_space(data[*pos])) {
            (*pos)++;
        }
        if (*pos < len && data[*pos] == ',') {
            (*pos)++;
            continue;
        }
        if (*pos < len && data[*pos] == '}') {
            (*pos)++;
            return list;
        }
        goto bad;
    }
bad:
    raise_data(st, "invalid array received from PostgreSQL: %.60s", data);
error:
    Py_XDECREF(item);
    Py_XDECREF(list);
    return NULL;
}

/* Text array: optional "[lo:hi]..=" bounds decoration, then {...} with quoted or bare
   elements, NULL, and nested braces for more dimensions. */
static PyObject *array_text(agentdb_state *st, const char *data, int len, Oid oid,
                            int json_text)
{
    int pos = 0;
    Oid elemoid = array_elem_oid(oid);
    agentdb_decode_fn dec = agentdb_decoder_opts(elemoid, 0, json_text);
    char *scratch;
    PyObject *res;

    if (len > 0 && data[0] == '[') {
        while (pos < len && data[pos] != '=') {
            pos++;
        }
        if (pos >= len) {
            return raise_data(st, "invalid array received from PostgreSQL: %.60s", data);
        }
        pos++;
    }
    scratch = PyMem_Malloc((size_t)len + 1);
    if (scratch == NULL) {
        return PyErr_NoMemory();
    }
    res = array_text_level(st, data, len, &pos, 1, dec, elemoid, scratch);
    PyMem_Free(scratch);
    if (res != NULL && pos != len) {
        Py_DECREF(res);
        return raise_data(st, "invalid array received from PostgreSQL: %.60s", data);
    }
    return res;
}

static PyObject *dec_array_text(agentdb_state *st, const char *data, int len, Oid oid)
{
    return array_text(st, data, len, oid, 0);
}

static PyObject *dec_json_array_text_as_text(agentdb_state *st, const char *data, int len,
                                             Oid oid)
{
    return array_text(st, data, len, oid, 1);
}

/* ---------------------------------------------------------------------------------------
   Decoder lookup */

/* json_text: json and jsonb (and arrays of them) come back as their JSON text (a str), as
   asyncpg returns them, for code that parses them itself. */
agentdb_decode_fn agentdb_decoder_opts(Oid oid, int binary, int json_text)
{
    if (json_text) {
        switch (oid) {
        case OID_JSON: return dec_text_any;
        case OID_JSONB: return binary ? dec_jsonb_bin_as_text : dec_text_any;
        case OID_JSON_ARRAY:
        case OID_JSONB_ARRAY:
            return binary ? dec_json_array_bin_as_text : dec_json_array_text_as_text;
        default: break;
        }
    }
    return agentdb_decoder(oid, binary);
}

agentdb_decode_fn agentdb_decoder(Oid oid, int binary)
{
    if (binary) {
        switch (oid) {
        case OID_BOOL: return dec_bool_bin;
        case OID_INT2: return dec_int2_bin;
        case OID_INT4: return dec_int4_bin;
        case OID_INT8: return dec_int8_bin;
        case OID_OID: return dec_oid_bin;
        case OID_FLOAT4: return dec_float4_bin;
        case OID_FLOAT8: return dec_float8_bin;
        case OID_NUMERIC: return dec_numeric_bin;
        case OID_TEXT:
        case OID_VARCHAR:
        case OID_BPCHAR:
        case OID_NAME:
        case OID_CHAR:
        case OID_XML:
        case OID_UNKNOWN: return dec_text_any;
        case OID_JSON: return dec_json_any;
        case OID_JSONB: return dec_jsonb_bin;
        case OID_BYTEA: return dec_bytea_bin;
        case OID_DATE: return dec_date_bin;
        case OID_TIME: return dec_time_bin;
        case OID_TIMETZ: return dec_timetz_bin;
        case OID_TIMESTAMP:
        case OID_TIMESTAMPTZ: return dec_timestamp_bin;
        case OID_INTERVAL: return dec_interval_bin;
        case OID_UUID: return dec_uuid_bin;
        default: return array_elem_oid(oid) ? dec_array_bin : NULL;
        }
    }
    switch (oid) {
    case OID_BOOL: return dec_bool_text;
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
    case OID_OID: return dec_int_text;
    case OID_FLOAT4:
    case OID_FLOAT8: return dec_float_text;
    case OID_NUMERIC: return dec_numeric_text;
    case OID_JSON:
    case OID_JSONB: return dec_json_any;
    case OID_BYTEA: return dec_bytea_text;
    case OID_DATE: return dec_date_text;
    case OID_TIME:
    case OID_TIMETZ: return dec_time_text;
    case OID_TIMESTAMP:
    case OID_TIMESTAMPTZ: return dec_timestamp_text;
    case OID_INTERVAL: return dec_interval_text;
    case OID_UUID: return dec_uuid_text;
    default: return array_elem_oid(oid) ? dec_array_text : dec_text_any;
    }
}

/* ---------------------------------------------------------------------------------------
   Encoding: the growable buffer */

#define NULL_OFFSET ((size_t)-1)

/* Room for `extra` more bytes.  0 => ok, -1 => MemoryError set. */
static int buf_reserve(agentdb_params *p, size_t extra)
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

static int buf_put(agentdb_params *p, const void *data, size_t n)
{
    if (buf_reserve(p, n) < 0) {
        return -1;
    }
    memcpy(p->buf + p->used, data, n);
    p->used += n;
    return 0;
}

static int buf_put_u32(agentdb_params *p, uint32_t v)
{
    char b[4];
    wr_u32(b, v);
    return buf_put(p, b, 4);
}

static int buf_put_u64(agentdb_params *p, uint64_t v)
{
    char b[8];
    wr_u64(b, v);
    return buf_put(p, b, 8);
}

/* Appends the UTF-8 of a str.  0 => ok, -1 => error set. */
static int buf_put_str(agentdb_params *p, PyObject *s)
{
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    return u == NULL ? -1 : buf_put(p, u, (size_t)n);
}

/* Appends str(obj) (or, with `repr`, repr(obj)). */
static int buf_put_strof(agentdb_params *p, PyObject *obj, int repr)
{
    PyObject *s = repr ? PyObject_Repr(obj) : PyObject_Str(obj);
    if (s == NULL) {
        return -1;
    }
    int rc = buf_put_str(p, s);
    Py_DECREF(s);
    return rc;
}

/* ---------------------------------------------------------------------------------------
   Encoding: type names and argument errors */

static const char *type_name(Oid oid)
{
    switch (oid) {
    case OID_BOOL: return "bool";
    case OID_BYTEA: return "bytea";
    case OID_CHAR: return "\"char\"";
    case OID_NAME: return "name";
    case OID_INT8: return "int8";
    case OID_INT2: return "int2";
    case OID_INT4: return "int4";
    case OID_TEXT: return "text";
    case OID_OID: return "oid";
    case OID_JSON: return "json";
    case OID_XML: return "xml";
    case OID_FLOAT4: return "float4";
    case OID_FLOAT8: return "float8";
    case OID_UNKNOWN: return "unknown";
    case OID_BPCHAR: return "bpchar";
    case OID_VARCHAR: return "varchar";
    case OID_DATE: return "date";
    case OID_TIME: return "time";
    case OID_TIMESTAMP: return "timestamp";
    case OID_TIMESTAMPTZ: return "timestamptz";
    case OID_INTERVAL: return "interval";
    case OID_TIMETZ: return "timetz";
    case OID_NUMERIC: return "numeric";
    case OID_UUID: return "uuid";
    case OID_JSONB: return "jsonb";
    case OID_BOOL_ARRAY: return "bool[]";
    case OID_BYTEA_ARRAY: return "bytea[]";
    case OID_CHAR_ARRAY: return "\"char\"[]";
    case OID_NAME_ARRAY: return "name[]";
    case OID_INT2_ARRAY: return "int2[]";
    case OID_INT4_ARRAY: return "int4[]";
    case OID_TEXT_ARRAY: return "text[]";
    case OID_VARCHAR_ARRAY: return "varchar[]";
    case OID_BPCHAR_ARRAY: return "bpchar[]";
    case OID_INT8_ARRAY: return "int8[]";
    case OID_FLOAT4_ARRAY: return "float4[]";
    case OID_FLOAT8_ARRAY: return "float8[]";
    case OID_OID_ARRAY: return "oid[]";
    case OID_TIMESTAMP_ARRAY: return "timestamp[]";
    case OID_DATE_ARRAY: return "date[]";
    case OID_TIME_ARRAY: return "time[]";
    case OID_TIMESTAMPTZ_ARRAY: return "timestamptz[]";
    case OID_INTERVAL_ARRAY: return "interval[]";
    case OID_NUMERIC_ARRAY: return "numeric[]";
    case OID_TIMETZ_ARRAY: return "timetz[]";
    case OID_UUID_ARRAY: return "uuid[]";
    case OID_JSON_ARRAY: return "json[]";
    case OID_JSONB_ARRAY: return "jsonb[]";
    default: return "this type";
    }
}

/* DataError "invalid input for query argument $N: <repr> (<why>)".  Returns -1. */
static int bad_arg(agentdb_state *st, int argno, PyObject *value, const char *fmt, ...)
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

static int nul_error(agentdb_state *st, int argno)
{
    PyErr_Format(data_error_class(st),
                 "invalid input for query argument $%d: a string containing NUL (\\x00) "
                 "cannot be sent to PostgreSQL",
                 argno);
    return -1;
}

/* Appends the UTF-8 of str `s`, refusing NUL.  0 => ok, -1 => error set. */
static int put_text(agentdb_state *st, agentdb_params *p, PyObject *s, int argno)
{
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    if (u == NULL) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            PyErr_Clear();
            return bad_arg(st, argno, s, "the string cannot be encoded to UTF-8");
        }
        return -1;
    }
    if (memchr(u, '\0', (size_t)n) != NULL) {
        return nul_error(st, argno);
    }
    return buf_put(p, u, (size_t)n);
}

/* ---------------------------------------------------------------------------------------
   Encoders by declared type: each appends one non-None value's bytes to p->buf.
   0 => ok, -1 => error set. */

typedef int (*encode_fn)(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno);

typedef struct {
    encode_fn fn;
    int format;        /* 0 text, 1 binary */
    int binary_elem;   /* its bytes are also the binary form (usable in binary arrays) */
} encoder;

static encoder typed_encoder(Oid oid);
static int enc_untyped_text(agentdb_state *st, agentdb_params *p, PyObject *v, int argno,
                            int depth);
static int enc_array_text(agentdb_state *st, agentdb_params *p, PyObject *v, const encoder *e,
                          Oid elemoid, int argno, int depth);

static int enc_bool(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    (void)oid;
    if (!PyBool_Check(v)) {
        return bad_arg(st, argno, v, "a bool is required for bool");
    }
    char b = v == Py_True;
    return buf_put(p, &b, 1);
}

static int enc_int(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    int overflow = 0;
    long long x;
    char b[8];

    /* Any int (bool included, as 0/1) or __index__ object; never a float or str. */
    if (PyLong_Check(v)) {
        x = PyLong_AsLongLongAndOverflow(v, &overflow);
    }
    else if (!PyFloat_Check(v) && PyIndex_Check(v)) {
        PyObject *i = PyNumber_Index(v);
        if (i == NULL) {
            return -1;
        }
        x = PyLong_AsLongLongAndOverflow(i, &overflow);
        Py_DECREF(i);
    }
    else {
        return bad_arg(st, argno, v, "an int is required for %s", type_name(oid));
    }
    if (x == -1 && PyErr_Occurred()) {
        return -1;
    }
    switch (oid) {
    case OID_INT2:
        if (overflow || x < INT16_MIN || x > INT16_MAX) {
            break;
        }
        b[0] = (char)((uint16_t)x >> 8);
        b[1] = (char)x;
        return buf_put(p, b, 2);
    case OID_INT4:
        if (overflow || x < INT32_MIN || x > INT32_MAX) {
            break;
        }
        return buf_put_u32(p, (uint32_t)(int32_t)x);
    case OID_OID:
        if (overflow || x < 0 || x > (long long)UINT32_MAX) {
            break;
        }
        return buf_put_u32(p, (uint32_t)x);
    default:
        if (overflow) {
            break;
        }
        return buf_put_u64(p, (uint64_t)x);
    }
    return bad_arg(st, argno, v, "value out of %s range", type_name(oid));
}

static int enc_float(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    double d;
    if (PyFloat_Check(v)) {
        d = PyFloat_AS_DOUBLE(v);
    }
    else if (PyLong_Check(v) || PyObject_TypeCheck(v, (PyTypeObject *)st->Decimal)) {
        d = PyFloat_AsDouble(v);
        if (d == -1.0 && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
                return -1;
            }
            PyErr_Clear();
            return bad_arg(st, argno, v, "value out of %s range", type_name(oid));
        }
    }
    else {
        return bad_arg(st, argno, v, "a float is required for %s", type_name(oid));
    }
    if (oid == OID_FLOAT4) {
        if (isfinite(d) && (d > FLT_MAX || d < -FLT_MAX)) {
            return bad_arg(st, argno, v, "value out of float4 range");
        }
        float f = (float)d;
        uint32_t bits;
        memcpy(&bits, &f, sizeof bits);
        return buf_put_u32(p, bits);
    }
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    return buf_put_u64(p, bits);
}

/* A float as PostgreSQL reads it: repr(), with NaN/Infinity spelt its way. */
static int put_float_text(agentdb_params *p, PyObject *v)
{
    double d = PyFloat_AsDouble(v);
    if (d == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (isnan(d)) {
        return buf_put(p, "NaN", 3);
    }
    if (isinf(d)) {
        return d > 0 ? buf_put(p, "Infinity", 8) : buf_put(p, "-Infinity", 9);
    }
    PyObject *f = PyFloat_FromDouble(d);
    if (f == NULL) {
        return -1;
    }
    int rc = buf_put_strof(p, f, 1);
    Py_DECREF(f);
    return rc;
}

/* A Decimal as PostgreSQL reads it: str(), any NaN (signalling, negative) as 'NaN'. */
static int put_decimal_text(agentdb_params *p, PyObject *v)
{
    PyObject *s = PyObject_Str(v);
    Py_ssize_t n;
    if (s == NULL) {
        return -1;
    }
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    int rc = u == NULL ? -1 : strstr(u, "NaN") ? buf_put(p, "NaN", 3) : buf_put(p, u, (size_t)n);
    Py_DECREF(s);
    return rc;
}

/* An int as decimal digits (also int subclasses such as bool and IntEnum). */
static int put_int_text(agentdb_params *p, PyObject *v)
{
    PyObject *i = PyNumber_Index(v);
    if (i == NULL) {
        return -1;
    }
    int rc = buf_put_strof(p, i, 1);
    Py_DECREF(i);
    return rc;
}

static int enc_numeric(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    (void)oid;
    if (PyObject_TypeCheck(v, (PyTypeObject *)st->Decimal)) {
        return put_decimal_text(p, v);
    }
    if (PyLong_Check(v)) {
        return put_int_text(p, v);
    }
    if (PyFloat_Check(v)) {
        return put_float_text(p, v);
    }
    return bad_arg(st, argno, v, "a Decimal, int or float is required for numeric");
}

static int enc_text(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    if (!PyUnicode_Check(v)) {
        return bad_arg(st, argno, v, "a str is required for %s", type_name(oid));
    }
    return put_text(st, p, v, argno);
}

static int enc_bytea(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    Py_buffer view;
    (void)oid;
    if (PyUnicode_Check(v) || !PyObject_CheckBuffer(v)) {
        return bad_arg(st, argno, v, "a bytes-like object is required for bytea");
    }
    if (PyObject_GetBuffer(v, &view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    int rc = buf_put(p, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return rc;
}

/* The 16 bytes of a uuid.UUID (from its `int`).  0 => ok, -1 => error set. */
static int uuid_bytes(agentdb_state *st, PyObject *v, char *out)
{
    PyObject *x = PyObject_GetAttr(v, CACHED(st, CACHE_STR_INT));
    if (x == NULL) {
        return -1;
    }
    if (!PyLong_Check(x)) {
        Py_DECREF(x);
        PyErr_SetString(PyExc_TypeError, "UUID.int is not an int");
        return -1;
    }
#if PY_VERSION_HEX >= 0x030D0000
    Py_ssize_t need = PyLong_AsNativeBytes(x, out, 16,
                                           Py_ASNATIVEBYTES_BIG_ENDIAN |
                                               Py_ASNATIVEBYTES_UNSIGNED_BUFFER |
                                               Py_ASNATIVEBYTES_REJECT_NEGATIVE);
    Py_DECREF(x);
    if (need < 0) {
        return -1;
    }
    if (need > 16) {
        PyErr_SetString(PyExc_OverflowError, "UUID.int does not fit in 128 bits");
        return -1;
    }
    return 0;
#else
    int rc = _PyLong_AsByteArray((PyLongObject *)x, (unsigned char *)out, 16, 0, 0);
    Py_DECREF(x);
    return rc;
#endif
}

static int enc_uuid(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    char bytes[16];
    (void)oid;
    if (PyObject_TypeCheck(v, (PyTypeObject *)st->UUID)) {
        if (uuid_bytes(st, v, bytes) < 0) {
            return -1;
        }
    }
    else if (PyUnicode_Check(v)) {
        Py_ssize_t n;
        const char *u = PyUnicode_AsUTF8AndSize(v, &n);
        if (u == NULL) {
            PyErr_Clear();
            return bad_arg(st, argno, v, "invalid UUID string");
        }
        if (n > 9 && strncmp(u, "urn:uuid:", 9) == 0) {
            u += 9;
            n -= 9;
        }
        if (parse_uuid_text(u, n, bytes) < 0) {
            return bad_arg(st, argno, v, "invalid UUID string");
        }
    }
    else {
        return bad_arg(st, argno, v, "a uuid.UUID or str is required for uuid");
    }
    return buf_put(p, bytes, 16);
}

static int is_date(agentdb_state *st, PyObject *v)
{
    return PyObject_TypeCheck(v, DT_API(st)->DateType);
}

static int is_datetime(agentdb_state *st, PyObject *v)
{
    return PyObject_TypeCheck(v, DT_API(st)->DateTimeType);
}

static int is_time(agentdb_state *st, PyObject *v)
{
    return PyObject_TypeCheck(v, DT_API(st)->TimeType);
}

static int is_timedelta(agentdb_state *st, PyObject *v)
{
    return PyObject_TypeCheck(v, DT_API(st)->DeltaType);
}

static int64_t delta_usec(PyObject *delta)
{
    return ((int64_t)PyDateTime_DELTA_GET_DAYS(delta) * 86400 +
            PyDateTime_DELTA_GET_SECONDS(delta)) *
               USECS_PER_SEC +
           PyDateTime_DELTA_GET_MICROSECONDS(delta);
}

/* v.utcoffset() in microseconds (0 when naive); *aware says whether it had one.
   0 => ok, -1 => error set. */
static int utcoffset_usec(agentdb_state *st, PyObject *v, int64_t *out, int *aware)
{
    *out = 0;
    *aware = 0;
    PyObject *tzinfo = is_datetime(st, v) ? PyDateTime_DATE_GET_TZINFO(v)
                                          : PyDateTime_TIME_GET_TZINFO(v); /* borrowed */
    if (tzinfo == Py_None) {
        return 0;
    }
    PyObject *off = PyObject_CallMethod(v, "utcoffset", NULL);
    if (off == NULL) {
        return -1;
    }
    if (off != Py_None) {
        if (!is_timedelta(st, off)) {
            Py_DECREF(off);
            PyErr_SetString(PyExc_TypeError, "utcoffset() must return a timedelta");
            return -1;
        }
        *out = delta_usec(off);
        *aware = 1;
    }
    Py_DECREF(off);
    return 0;
}

static int enc_date(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    (void)oid;
    if (!is_date(st, v)) {
        return bad_arg(st, argno, v, "a datetime.date is required for date");
    }
    int y = PyDateTime_GET_YEAR(v), m = PyDateTime_GET_MONTH(v), d = PyDateTime_GET_DAY(v);
    if (y == 9999 && m == 12 && d == 31) {
        return buf_put_u32(p, (uint32_t)INT32_MAX); /* date.max -> 'infinity' */
    }
    if (y == 1 && m == 1 && d == 1) {
        return buf_put_u32(p, (uint32_t)INT32_MIN); /* date.min -> '-infinity' */
    }
    return buf_put_u32(p, (uint32_t)(int32_t)(days_from_civil(y, m, d) - PG_EPOCH_UNIX_DAYS));
}

static int64_t time_usec(PyObject *v)
{
    return ((int64_t)PyDateTime_TIME_GET_HOUR(v) * 3600 + PyDateTime_TIME_GET_MINUTE(v) * 60 +
            PyDateTime_TIME_GET_SECOND(v)) *
               USECS_PER_SEC +
           PyDateTime_TIME_GET_MICROSECOND(v);
}

static int enc_time(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    if (!is_time(st, v)) {
        return bad_arg(st, argno, v, "a datetime.time is required for %s", type_name(oid));
    }
    if (buf_put_u64(p, (uint64_t)time_usec(v)) < 0) {
        return -1;
    }
    if (oid == OID_TIMETZ) {
        int64_t off;
        int aware;
        if (utcoffset_usec(st, v, &off, &aware) < 0) {
            return -1;
        }
        /* West-positive seconds; PostgreSQL has no sub-second offsets. */
        return buf_put_u32(p, (uint32_t)(int32_t)(-(off / USECS_PER_SEC)));
    }
    return 0;
}

/* timestamp/timestamptz: aware values are converted to UTC (for timestamp, then made
   naive); naive ones are taken as UTC for timestamptz; datetime.max/min (whatever the
   tzinfo) are 'infinity'/'-infinity'; a plain date means its midnight. */
static int enc_timestamp(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    int64_t usec = 0, off = 0;
    int aware = 0;
    if (!is_date(st, v)) {
        return bad_arg(st, argno, v, "a datetime.datetime is required for %s", type_name(oid));
    }
    int y = PyDateTime_GET_YEAR(v), m = PyDateTime_GET_MONTH(v), d = PyDateTime_GET_DAY(v);
    if (is_datetime(st, v)) {
        usec = ((int64_t)PyDateTime_DATE_GET_HOUR(v) * 3600 + PyDateTime_DATE_GET_MINUTE(v) * 60 +
                PyDateTime_DATE_GET_SECOND(v)) *
                   USECS_PER_SEC +
               PyDateTime_DATE_GET_MICROSECOND(v);
        if (y == 9999 && m == 12 && d == 31 && usec == USECS_PER_DAY - 1) {
            return buf_put_u64(p, (uint64_t)INT64_MAX);
        }
        if (y == 1 && m == 1 && d == 1 && usec == 0) {
            return buf_put_u64(p, (uint64_t)INT64_MIN);
        }
        if (utcoffset_usec(st, v, &off, &aware) < 0) {
            return -1;
        }
    }
    int64_t pg = (days_from_civil(y, m, d) - PG_EPOCH_UNIX_DAYS) * USECS_PER_DAY + usec - off;
    return buf_put_u64(p, (uint64_t)pg);
}

static int enc_interval(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    char b[16];
    (void)oid;
    if (!is_timedelta(st, v)) {
        return bad_arg(st, argno, v, "a datetime.timedelta is required for interval");
    }
    wr_u64(b, (uint64_t)((int64_t)PyDateTime_DELTA_GET_SECONDS(v) * USECS_PER_SEC +
                         PyDateTime_DELTA_GET_MICROSECONDS(v)));
    wr_u32(b + 8, (uint32_t)(int32_t)PyDateTime_DELTA_GET_DAYS(v));
    wr_u32(b + 12, 0);
    return buf_put(p, b, 16);
}

/* json/jsonb: a str is sent as JSON text unchanged, anything else as json.dumps(v);
   jsonb's binary form is a version byte (1) and the text. */
static int enc_json(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    if (oid == OID_JSONB && buf_put(p, "\x01", 1) < 0) {
        return -1;
    }
    if (PyUnicode_Check(v)) {
        return put_text(st, p, v, argno);
    }
    PyObject *s = PyObject_CallOneArg(st->json_dumps, v);
    if (s == NULL) {
        if (PyErr_ExceptionMatches(PyExc_TypeError) || PyErr_ExceptionMatches(PyExc_ValueError)) {
            PyErr_Clear();
            return bad_arg(st, argno, v, "not serializable by json.dumps for %s",
                           type_name(oid));
        }
        return -1;
    }
    int rc = PyUnicode_Check(s) ? put_text(st, p, s, argno)
                                : bad_arg(st, argno, v, "json.dumps did not return a str");
    Py_DECREF(s);
    return rc;
}

/* Types we have no codec for (enums, citext, domains of unknown OID...): text. */
static int enc_unknown(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    (void)oid;
    if (PyUnicode_Check(v)) {
        return put_text(st, p, v, argno);
    }
    if (PyBytes_Check(v) || PyByteArray_Check(v) || PyMemoryView_Check(v)) {
        PyObject *s = PyUnicode_FromEncodedObject(v, "utf-8", "strict");
        if (s == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_ValueError)) {
                return -1;
            }
            PyErr_Clear();
            return bad_arg(st, argno, v, "bytes that are not UTF-8 text");
        }
        int rc = put_text(st, p, s, argno);
        Py_DECREF(s);
        return rc;
    }
    return enc_untyped_text(st, p, v, argno, 0);
}

/* ---------------------------------------------------------------------------------------
   Arrays */

static int is_seq(PyObject *v)
{
    return PyList_Check(v) || PyTuple_Check(v);
}

PyObject *agentdb_seq_snapshot(PyObject *v, const char *errmsg)
{
    if (PyTuple_Check(v)) {
        return Py_NewRef(v);
    }
    if (PyList_Check(v)) {
        return PyList_AsTuple(v);
    }
    PyObject *it = PyObject_GetIter(v);
    if (it == NULL) {
        if (errmsg != NULL && PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_SetString(PyExc_TypeError, errmsg);
        }
        return NULL;
    }
    PyObject *items = PySequence_Tuple(it);
    Py_DECREF(it);
    return items;
}

PyObject *agentdb_iter_snapshot(PyObject *v)
{
    if (!PyList_Check(v)) {
        return PyObject_GetIter(v);
    }
    PyObject *items = PyList_AsTuple(v);
    if (items == NULL) {
        return NULL;
    }
    PyObject *it = PyObject_GetIter(items);
    Py_DECREF(items);
    return it;
}

/* The items of one array level to encode (list or tuple, new reference): `v` itself when
   encoding its items cannot run Python code, else a snapshot of it (agentdb_seq_snapshot).
   Only an element encoder can run Python code (__index__, __str__, json.dumps, whose
   allocations may also start the collector and a __del__), and none does for None or an
   exact bool, int, float, str or bytes outside json; a list of only those cannot change
   while it is encoded, and copying it (the common case: 100k ints cost a 800 KB tuple and
   its page faults, doubling the time) would buy nothing. */
static PyObject *array_level_items(PyObject *v, const encoder *e, Oid elemoid)
{
    if (PyTuple_Check(v)) {
        return Py_NewRef(v);
    }
    if (e == NULL || (elemoid != OID_JSON && elemoid != OID_JSONB)) {
        Py_ssize_t n = PyList_GET_SIZE(v), i;
        for (i = 0; i < n; i++) {
            PyObject *item = PyList_GET_ITEM(v, i);
            PyTypeObject *t = Py_TYPE(item);
            if (!(item == Py_None || t == &PyLong_Type || t == &PyBool_Type ||
                  t == &PyFloat_Type || t == &PyUnicode_Type || t == &PyBytes_Type)) {
                break;
            }
        }
        if (i == n) {
            return Py_NewRef(v);
        }
    }
    return agentdb_seq_snapshot(v, NULL);
}

/* Wraps the element text at p->buf[start:] in double quotes if the array literal
   needs it (empty, NULL, blanks, or delimiters), escaping " and backslash. */
static int quote_array_elem(agentdb_params *p, size_t start)
{
    size_t n = p->used - start, extra = 2;
    int need = n == 0;
    const char *s = p->buf + start;
    if (n == 4 && (s[0] | 0x20) == 'n' && (s[1] | 0x20) == 'u' && (s[2] | 0x20) == 'l' &&
        (s[3] | 0x20) == 'l') {
        need = 1;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '"' || c == '\\') {
            need = 1;
            extra++;
        }
        else if (c == '{' || c == '}' || c == ',' || is_array_space(c)) {
            need = 1;
        }
    }
    if (!need) {
        return 0;
    }
    if (buf_reserve(p, extra) < 0) {
        return -1;
    }
    /* Rewrite in place from the end backwards: the quoted form is only longer. */
    char *b = p->buf + start;
    size_t j = n + extra;
    b[--j] = '"';
    for (size_t i = n; i-- > 0;) {
        char c = b[i];
        b[--j] = c;
        if (c == '"' || c == '\\') {
            b[--j] = '\\';
        }
    }
    b[--j] = '"';
    p->used += extra;
    return 0;
}

/* One element of a text array literal, appended to p's buffer. */
static int enc_array_text_elem(agentdb_state *st, agentdb_params *p, PyObject *item,
                               const encoder *e, Oid elemoid, int argno, int depth)
{
    int rc;
    if (item == Py_None) {
        return buf_put(p, "NULL", 4);
    }
    if (is_seq(item) && !(e != NULL && (elemoid == OID_JSON || elemoid == OID_JSONB))) {
        return enc_array_text(st, p, item, e, elemoid, argno, depth + 1);
    }
    size_t start = p->used;
    if (e != NULL) {
        rc = e->fn(st, p, item, elemoid, argno);
    }
    else if (PyBytes_Check(item) || PyByteArray_Check(item) || PyMemoryView_Check(item)) {
        /* bytea's text form: \x and hex digits. */
        Py_buffer view;
        rc = PyObject_GetBuffer(item, &view, PyBUF_SIMPLE);
        if (rc == 0) {
            rc = buf_reserve(p, 2 + 2 * (size_t)view.len);
            if (rc == 0) {
                static const char hex[] = "0123456789abcdef";
                const unsigned char *b = view.buf;
                char *o = p->buf + p->used;
                *o++ = '\\';
                *o++ = 'x';
                for (Py_ssize_t k = 0; k < view.len; k++) {
                    *o++ = hex[b[k] >> 4];
                    *o++ = hex[b[k] & 15];
                }
                p->used += 2 + 2 * (size_t)view.len;
            }
            PyBuffer_Release(&view);
        }
    }
    else {
        rc = enc_untyped_text(st, p, item, argno, depth);
    }
    return rc < 0 ? -1 : quote_array_elem(p, start);
}

/* A text array literal {a,"b c",NULL,{...}}: elements by `e` (or untyped when e is
   NULL), nested lists as more dimensions; the server checks they are rectangular.
   The elements are read from a snapshot (array_level_items): an element's encoder may
   run Python code (__index__, __str__, json.dumps) that empties or shrinks the list. */
static int enc_array_text(agentdb_state *st, agentdb_params *p, PyObject *v, const encoder *e,
                          Oid elemoid, int argno, int depth)
{
    PyObject *items = NULL;
    int rc = -1;

    if (depth > PG_MAXDIM) {
        return bad_arg(st, argno, v, "more than %d array dimensions", PG_MAXDIM);
    }
    items = array_level_items(v, e, elemoid);
    if (items == NULL || buf_put(p, "{", 1) < 0) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(items); i++) {
        if (i > 0 && buf_put(p, ",", 1) < 0) {
            goto done;
        }
        if (enc_array_text_elem(st, p, PySequence_Fast_GET_ITEM(items, i), e, elemoid, argno,
                                depth) < 0) {
            goto done;
        }
    }
    rc = buf_put(p, "}", 1);
done:
    Py_XDECREF(items);
    return rc;
}

/* Binary array elements of one level; dims as found from the first elements.  Each
   level is read from a snapshot (array_level_items), whose size is checked against dims:
   an element's encoder may run Python code that changes this list or one not reached
   yet. */
static int array_bin_put_level(agentdb_state *st, agentdb_params *p, PyObject *v,
                               const Py_ssize_t *dims, int ndim, int level, const encoder *e,
                               Oid elemoid, int argno, int *hasnull)
{
    PyObject *items = NULL;
    int rc = -1;

    if (!is_seq(v)) {
        return bad_arg(st, argno, v, "multidimensional arrays must be rectangular lists");
    }
    items = array_level_items(v, e, elemoid);
    if (items == NULL) {
        goto done;
    }
    if (PySequence_Fast_GET_SIZE(items) != dims[level]) {
        bad_arg(st, argno, v, "multidimensional arrays must be rectangular lists");
        goto done;
    }
    for (Py_ssize_t i = 0; i < dims[level]; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(items, i); /* held by `items` */
        if (level + 1 < ndim) {
            if (array_bin_put_level(st, p, item, dims, ndim, level + 1, e, elemoid, argno,
                                    hasnull) < 0) {
                goto done;
            }
        }
        else if (item == Py_None) {
            *hasnull = 1;
            if (buf_put_u32(p, (uint32_t)-1) < 0) {
                goto done;
            }
        }
        else if (is_seq(item) && elemoid != OID_JSON && elemoid != OID_JSONB) {
            bad_arg(st, argno, v, "multidimensional arrays must be rectangular lists");
            goto done;
        }
        else {
            /* The length goes in front once known; the buffer may move meanwhile. */
            size_t lenpos = p->used;
            if (buf_put_u32(p, 0) < 0 || e->fn(st, p, item, elemoid, argno) < 0) {
                goto done;
            }
            size_t elen = p->used - lenpos - 4;
            if (elen > INT32_MAX) {
                bad_arg(st, argno, v, "array element too large");
                goto done;
            }
            wr_u32(p->buf + lenpos, (uint32_t)elen);
        }
    }
    rc = 0;
done:
    Py_XDECREF(items);
    return rc;
}

/* list/tuple -> array of type `oid` with elements by `e`: binary when e's bytes are the
   element's binary form, else a text literal.  Sets *format. */
static int enc_array_with(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid,
                          encoder e, int argno, int *format)
{
    Oid elemoid = array_elem_oid(oid);
    Py_ssize_t dims[PG_MAXDIM];
    int ndim = 0, hasnull = 0;

    if (!is_seq(v)) {
        return bad_arg(st, argno, v, "a list or tuple is required for %s", type_name(oid));
    }
    if (!e.binary_elem) {
        *format = 0;
        return enc_array_text(st, p, v, &e, elemoid, argno, 1);
    }
    *format = 1;
    /* Dimensions from the first element of each level (a json element may be a list).
       No Python code runs in this loop, so the borrowed `cur` stays valid; the
       levels are checked against dims again as they are encoded. */
    PyObject *cur = v;
    while (is_seq(cur) && !(ndim == 1 && (elemoid == OID_JSON || elemoid == OID_JSONB))) {
        if (ndim == PG_MAXDIM) {
            return bad_arg(st, argno, v, "more than %d array dimensions", PG_MAXDIM);
        }
        Py_ssize_t n = PySequence_Fast_GET_SIZE(cur);
        if (n > INT32_MAX) {
            return bad_arg(st, argno, v, "array too large");
        }
        dims[ndim++] = n;
        if (n == 0) {
            break;
        }
        cur = PySequence_Fast_GET_ITEM(cur, 0);
    }
    for (int i = 0; i < ndim; i++) {
        if (dims[i] == 0) {
            /* [] or [[], []]: PostgreSQL's empty array has no dimensions. */
            if (buf_put_u32(p, 0) < 0 || buf_put_u32(p, 0) < 0 || buf_put_u32(p, elemoid) < 0) {
                return -1;
            }
            return 0;
        }
    }
    if (buf_put_u32(p, (uint32_t)ndim) < 0) {
        return -1;
    }
    size_t flagpos = p->used;
    if (buf_put_u32(p, 0) < 0 || buf_put_u32(p, elemoid) < 0) {
        return -1;
    }
    for (int i = 0; i < ndim; i++) {
        if (buf_put_u32(p, (uint32_t)dims[i]) < 0 || buf_put_u32(p, 1) < 0) {
            return -1;
        }
    }
    if (array_bin_put_level(st, p, v, dims, ndim, 0, &e, elemoid, argno, &hasnull) < 0) {
        return -1;
    }
    wr_u32(p->buf + flagpos, (uint32_t)hasnull);
    return 0;
}

/* list/tuple -> array of the declared type: binary when the element type has a binary
   encoder, else a text literal.  Sets *format. */
static int enc_array(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno,
                     int *format)
{
    return enc_array_with(st, p, v, oid, typed_encoder(array_elem_oid(oid)), argno, format);
}

static encoder typed_encoder(Oid oid)
{
    encoder e = {enc_unknown, 0, 0};
    switch (oid) {
    case OID_BOOL: e = (encoder){enc_bool, 1, 1}; break;
    case OID_BYTEA: e = (encoder){enc_bytea, 1, 1}; break;
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
    case OID_OID: e = (encoder){enc_int, 1, 1}; break;
    case OID_FLOAT4:
    case OID_FLOAT8: e = (encoder){enc_float, 1, 1}; break;
    case OID_NUMERIC: e = (encoder){enc_numeric, 0, 0}; break;
    /* Text types go as text (the server converts encodings and applies typmods the
       same way); their bytes are also their binary form inside arrays. */
    case OID_TEXT:
    case OID_VARCHAR:
    case OID_BPCHAR:
    case OID_NAME:
    case OID_CHAR:
    case OID_XML:
    case OID_UNKNOWN: e = (encoder){enc_text, 0, 1}; break;
    case OID_JSON: e = (encoder){enc_json, 0, 1}; break;
    case OID_JSONB: e = (encoder){enc_json, 1, 1}; break;
    case OID_UUID: e = (encoder){enc_uuid, 1, 1}; break;
    case OID_DATE: e = (encoder){enc_date, 1, 1}; break;
    case OID_TIME:
    case OID_TIMETZ: e = (encoder){enc_time, 1, 1}; break;
    case OID_TIMESTAMP:
    case OID_TIMESTAMPTZ: e = (encoder){enc_timestamp, 1, 1}; break;
    case OID_INTERVAL: e = (encoder){enc_interval, 1, 1}; break;
    default: break;
    }
    return e;
}

/* ---------------------------------------------------------------------------------------
   Encoding without declared types: text the server can infer a type from. */

static int enc_untyped_text(agentdb_state *st, agentdb_params *p, PyObject *v, int argno,
                            int depth)
{
    if (PyBool_Check(v)) {
        return buf_put(p, v == Py_True ? "t" : "f", 1);
    }
    if (PyUnicode_Check(v)) {
        return put_text(st, p, v, argno);
    }
    if (PyLong_Check(v)) {
        return put_int_text(p, v);
    }
    if (PyFloat_Check(v)) {
        return put_float_text(p, v);
    }
    if (PyObject_TypeCheck(v, (PyTypeObject *)st->Decimal)) {
        return put_decimal_text(p, v);
    }
    if (is_date(st, v) || is_time(st, v)) {
        PyObject *s = PyObject_CallMethod(v, "isoformat", NULL);
        if (s == NULL) {
            return -1;
        }
        int rc = PyUnicode_Check(s) ? put_text(st, p, s, argno)
                                    : bad_arg(st, argno, v, "isoformat() did not return a str");
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
        return enc_array_text(st, p, v, NULL, 0, argno, 1);
    }
    if (PyDict_Check(v)) {
        return enc_json(st, p, v, OID_JSON, argno);
    }
    if (PyObject_TypeCheck(v, (PyTypeObject *)st->UUID)) {
        return buf_put_strof(p, v, 0);
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
        int rc = depth > 8 ? bad_arg(st, argno, v, "nested enum values")
                           : enc_untyped_text(st, p, value, argno, depth + 1);
        Py_DECREF(value);
        return rc;
    }
    PyObject *s = PyObject_Str(v);
    if (s == NULL) {
        return -1;
    }
    int rc = put_text(st, p, s, argno);
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
    return enc_untyped_text(st, p, v, argno, 0);
}

/* ---------------------------------------------------------------------------------------
   Binary send format for every value (COPY ... (FORMAT binary), where no field may be text) */

enum {
    NUMERIC_POS = 0x0000,
    NUMERIC_NEG = 0x4000,
    NUMERIC_NAN = 0xC000,
    NUMERIC_PINF = 0xD000,
    NUMERIC_NINF = 0xF000,
    NUMERIC_DSCALE_MAX = 0x3FFF,
};

static void wr_numeric_head(char *b, int ndigits, int weight, uint16_t sign, int dscale)
{
    wr_u16(b, (uint16_t)ndigits);
    wr_u16(b + 2, (uint16_t)weight);
    wr_u16(b + 4, sign);
    wr_u16(b + 6, (uint16_t)dscale);
}

/* numeric's binary form from its text s[0:n] (what enc_numeric writes: [-]digits[.digits]
   [e[+-]digits], NaN, Infinity or -Infinity): int16 ndigits, int16 weight, uint16 sign,
   uint16 dscale, then ndigits base-10000 digits, the first worth 10000^weight.
   0 => ok, -1 => error set. */
static int numeric_text_to_bin(agentdb_state *st, agentdb_params *p, const char *s, size_t n,
                               PyObject *v, int argno)
{
    char head[8], stackdigits[64];
    char *d = stackdigits; /* the significant decimal digits, 0-9 */
    uint16_t sign = NUMERIC_POS;
    size_t i = 0, nd = 0;
    int64_t frac = 0, exp = 0;
    int point = 0, any = 0, rc = -1;

    if ((n == 3 && memcmp(s, "NaN", 3) == 0) || (n == 8 && memcmp(s, "Infinity", 8) == 0) ||
        (n == 9 && memcmp(s, "-Infinity", 9) == 0)) {
        wr_numeric_head(head, 0, 0, n == 3 ? NUMERIC_NAN : n == 8 ? NUMERIC_PINF : NUMERIC_NINF,
                        0);
        return buf_put(p, head, 8);
    }
    if (n > sizeof stackdigits) {
        d = PyMem_Malloc(n);
        if (d == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    if (i < n && (s[i] == '-' || s[i] == '+')) {
        sign = s[i] == '-' ? NUMERIC_NEG : NUMERIC_POS;
        i++;
    }
    for (; i < n; i++) {
        if (s[i] >= '0' && s[i] <= '9') {
            if (nd > 0 || s[i] != '0') {
                d[nd++] = (char)(s[i] - '0'); /* leading zeros dropped */
            }
            frac += point;
            any = 1;
        }
        else if (s[i] == '.' && !point) {
            point = 1;
        }
        else {
            break;
        }
    }
    if (any && i < n && (s[i] == 'e' || s[i] == 'E')) {
        int neg = 0, expdigits = 0;
        if (++i < n && (s[i] == '-' || s[i] == '+')) {
            neg = s[i++] == '-';
        }
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, expdigits++) {
            if (exp < INT64_C(1000000000)) {
                exp = exp * 10 + (s[i] - '0');
            }
        }
        any = expdigits > 0;
        exp = neg ? -exp : exp;
    }
    if (!any || i != n) {
        bad_arg(st, argno, v, "not a number numeric accepts");
        goto done;
    }
    int64_t dscale = frac - exp > 0 ? frac - exp : 0;
    if (nd == 0) { /* zero, with its scale: 0.00 */
        if (dscale > NUMERIC_DSCALE_MAX) {
            bad_arg(st, argno, v, "value out of numeric range");
            goto done;
        }
        wr_numeric_head(head, 0, 0, NUMERIC_POS, (int)dscale);
        rc = buf_put(p, head, 8);
        goto done;
    }
    /* The value is d * 10^(exp - frac): `ip` digits before the decimal point.  `z` zeros
       in front align the point on a group of four digits. */
    int64_t ip = (int64_t)nd + exp - frac;
    int64_t z = ((-ip) % 4 + 4) % 4;
    int64_t weight = (ip + z) / 4 - 1;
    int64_t ngroups = ((int64_t)nd + z + 3) / 4;
    if (dscale > NUMERIC_DSCALE_MAX || weight < INT16_MIN || weight > INT16_MAX ||
        ngroups > INT16_MAX) {
        bad_arg(st, argno, v, "value out of numeric range");
        goto done;
    }
    if (buf_reserve(p, 8 + 2 * (size_t)ngroups) < 0) {
        goto done;
    }
    char *out = p->buf + p->used + 8;
    int kept = 0;
    for (int64_t g = 0; g < ngroups; g++) {
        int val = 0;
        for (int64_t k = g * 4 - z; k < g * 4 - z + 4; k++) {
            val = val * 10 + (k >= 0 && k < (int64_t)nd ? d[k] : 0);
        }
        out[2 * g] = (char)(val >> 8);
        out[2 * g + 1] = (char)val;
        if (val != 0) {
            kept = (int)g + 1; /* trailing zero groups are left out */
        }
    }
    wr_numeric_head(p->buf + p->used, kept, (int)weight, sign, (int)dscale);
    p->used += 8 + 2 * (size_t)kept;
    rc = 0;
done:
    if (d != stackdigits) {
        PyMem_Free(d);
    }
    return rc;
}

/* numeric in binary: the text enc_numeric would send (Decimal, int or float), converted. */
static int enc_numeric_bin(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    agentdb_params text;
    agentdb_params_scratch(&text);
    int rc = enc_numeric(st, &text, v, oid, argno);
    if (rc == 0) {
        rc = numeric_text_to_bin(st, p, text.buf, text.used, v, argno);
    }
    agentdb_params_free(&text);
    return rc;
}

/* The encoder writing `oid`'s binary send format (fn NULL when there is none). */
static encoder binary_encoder(Oid oid)
{
    if (oid == OID_NUMERIC) {
        return (encoder){enc_numeric_bin, 1, 1};
    }
    encoder e = typed_encoder(oid);
    if (!e.binary_elem) {
        e.fn = NULL;
    }
    e.format = 1;
    return e;
}

int agentdb_has_binary_encoder(Oid oid)
{
    Oid elemoid = array_elem_oid(oid);
    return binary_encoder(elemoid ? elemoid : oid).fn != NULL;
}

int agentdb_encode_binary(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    Oid elemoid = array_elem_oid(oid);
    encoder e = binary_encoder(elemoid ? elemoid : oid);
    if (e.fn == NULL) {
        PyErr_Format(PyExc_ValueError, "no binary encoder for type OID %u", (unsigned)oid);
        return -1;
    }
    if (elemoid) {
        int format;
        return enc_array_with(st, p, v, oid, e, argno, &format);
    }
    return e.fn(st, p, v, oid, argno);
}

int agentdb_params_put(agentdb_params *p, const void *data, size_t n)
{
    return buf_put(p, data, n);
}

int agentdb_params_reserve(agentdb_params *p, size_t extra)
{
    return buf_reserve(p, extra);
}

void agentdb_params_scratch(agentdb_params *p)
{
    memset(p, 0, sizeof *p);
    p->buf = p->small;
    p->cap = sizeof p->small;
}

/* ---------------------------------------------------------------------------------------
   agentdb_params */

void agentdb_params_free(agentdb_params *p)
{
    if (p->buf != NULL && p->buf != p->small) {
        PyMem_Free(p->buf);
    }
    PyMem_Free(p->arrays);
    p->n = 0;
    p->values = NULL;
    p->lengths = NULL;
    p->formats = NULL;
    p->types = NULL;
    p->offsets = NULL;
    p->arrays = NULL;
    p->buf = NULL;
    p->used = p->cap = 0;
}

/* Encodes args[i] into p's buffer and slot i.  0 => ok, -1 => error set. */
static int encode_one(agentdb_state *st, agentdb_params *p, int i, PyObject *v, int typed,
                      Oid oid)
{
    int argno = i + 1, format = 0, rc;
    Oid type = typed ? oid : 0;
    size_t start = p->used;

    if (v == Py_None) {
        p->offsets[i] = NULL_OFFSET;
        p->lengths[i] = 0;
        p->formats[i] = 0;
        p->types[i] = type;
        return 0;
    }
    if (typed) {
        if (array_elem_oid(oid)) {
            rc = enc_array(st, p, v, oid, argno, &format);
        }
        else {
            encoder e = typed_encoder(oid);
            format = e.format;
            rc = e.fn(st, p, v, oid, argno);
        }
    }
    else if (PyBytes_Check(v) || PyByteArray_Check(v) || PyMemoryView_Check(v)) {
        type = OID_BYTEA;
        format = 1;
        rc = enc_bytea(st, p, v, OID_BYTEA, argno);
    }
    else {
        if (PyBool_Check(v)) {
            type = OID_BOOL;
        }
        rc = enc_untyped_text(st, p, v, argno, 0);
    }
    if (rc < 0) {
        return -1;
    }
    size_t len = p->used - start;
    if (len > INT32_MAX - 1) {
        return bad_arg(st, argno, v, "value too large to send (%zu bytes)", len);
    }
    /* Text values are read up to a NUL by libpq: they may not contain one. */
    if (format == 0 && memchr(p->buf + start, '\0', len) != NULL) {
        return nul_error(st, argno);
    }
    if (buf_put(p, "", 1) < 0) { /* the terminator text values need */
        return -1;
    }
    p->offsets[i] = start;
    p->lengths[i] = (int)len;
    p->formats[i] = format;
    p->types[i] = type;
    return 0;
}

int agentdb_params_encode(agentdb_state *st, agentdb_params *p, PyObject *args,
                          const Oid *types, int ntypes)
{
    PyObject *seq = NULL;
    Py_ssize_t n;

    p->n = 0;
    p->values = NULL;
    p->lengths = NULL;
    p->formats = NULL;
    p->types = NULL;
    p->offsets = NULL;
    p->arrays = NULL;
    p->buf = p->small;
    p->used = 0;
    p->cap = sizeof p->small;

    /* A snapshot: encoders run Python code, which may change a list of arguments. */
    if (!is_seq(args)) {
        PyErr_Format(PyExc_TypeError, "query arguments must be a tuple or list, not %.100s",
                     Py_TYPE(args)->tp_name);
        goto error;
    }
    seq = agentdb_seq_snapshot(args, NULL);
    if (seq == NULL) {
        goto error;
    }
    n = PyTuple_GET_SIZE(seq);
    if (types != NULL && n != ntypes) {
        PyErr_Format(st->InterfaceError ? st->InterfaceError : PyExc_TypeError,
                     "the statement expects %d arguments, %zd were given", ntypes, n);
        goto error;
    }
    if (n > MAX_PARAMS) {
        PyErr_Format(st->InterfaceError ? st->InterfaceError : PyExc_TypeError,
                     "too many arguments: %zd (PostgreSQL accepts at most %d)", n, MAX_PARAMS);
        goto error;
    }
    if (n > 0) {
        /* One allocation, most aligned arrays first. */
        size_t sz = (size_t)n * (sizeof(char *) + sizeof(size_t) + 2 * sizeof(int) + sizeof(Oid));
        char *a = PyMem_Malloc(sz);
        if (a == NULL) {
            PyErr_NoMemory();
            goto error;
        }
        p->arrays = a;
        p->values = (const char **)a;
        a += (size_t)n * sizeof(char *);
        p->offsets = (size_t *)a;
        a += (size_t)n * sizeof(size_t);
        p->lengths = (int *)a;
        a += (size_t)n * sizeof(int);
        p->formats = (int *)a;
        a += (size_t)n * sizeof(int);
        p->types = (Oid *)a;
    }
    p->n = (int)n;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (encode_one(st, p, (int)i, PyTuple_GET_ITEM(seq, i), types != NULL,
                       types != NULL ? types[i] : 0) < 0) {
            goto error;
        }
    }
    /* The buffer has stopped moving: offsets become pointers. */
    for (Py_ssize_t i = 0; i < n; i++) {
        p->values[i] = p->offsets[i] == NULL_OFFSET ? NULL : p->buf + p->offsets[i];
    }
    Py_DECREF(seq);
    return 0;
error:
    Py_XDECREF(seq);
    agentdb_params_free(p);
    return -1;
}

/* ---------------------------------------------------------------------------------------
   Test hooks */

/* _decode(oid, data: bytes, binary) -> object */
PyObject *agentdb_codecs_decode_py(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    agentdb_state *st = agentdb_get_state(module);
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "_decode(oid, data, binary) takes 3 arguments");
        return NULL;
    }
    unsigned long oid = PyLong_AsUnsignedLong(args[0]);
    if (oid == (unsigned long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    if (oid > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "oid out of range");
        return NULL;
    }
    if (!PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "_decode() data must be bytes");
        return NULL;
    }
    int binary = PyObject_IsTrue(args[2]);
    if (binary < 0) {
        return NULL;
    }
    if (PyBytes_GET_SIZE(args[1]) > INT32_MAX) {
        return raise_data(st, "value too large");
    }
    agentdb_decode_fn dec = agentdb_decoder((Oid)oid, binary);
    if (dec == NULL) {
        return raise_data(st, "no binary decoder for type OID %lu", oid);
    }
    /* bytes objects are NUL-terminated, as libpq's text values are. */
    return dec(st, PyBytes_AS_STRING(args[1]), (int)PyBytes_GET_SIZE(args[1]), (Oid)oid);
}

/* _encode(oid, value) -> (bytes | None, format); oid 0 = no declared type. */
PyObject *agentdb_codecs_encode_py(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    agentdb_state *st = agentdb_get_state(module);
    agentdb_params p;
    PyObject *tuple = NULL, *data = NULL, *res = NULL;
    Oid type;

    memset(&p, 0, sizeof p);
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_encode(oid, value) takes 2 arguments");
        return NULL;
    }
    unsigned long oid = PyLong_AsUnsignedLong(args[0]);
    if (oid == (unsigned long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    if (oid > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "oid out of range");
        return NULL;
    }
    type = (Oid)oid;
    tuple = PyTuple_Pack(1, args[1]);
    if (tuple == NULL) {
        return NULL;
    }
    if (agentdb_params_encode(st, &p, tuple, oid ? &type : NULL, oid ? 1 : 0) < 0) {
        goto done;
    }
    if (p.values[0] == NULL) {
        data = Py_NewRef(Py_None);
    }
    else {
        data = PyBytes_FromStringAndSize(p.values[0], p.lengths[0]);
        if (data == NULL) {
            goto done;
        }
    }
    res = Py_BuildValue("(Oi)", data, p.formats[0]);
done:
    agentdb_params_free(&p);
    Py_XDECREF(tuple);
    Py_XDECREF(data);
    return res;
}

/* ---------------------------------------------------------------------------------------
   Setup */

static PyObject *import_attr(const char *module, const char *name)
{
    PyObject *mod = PyImport_ImportModule(module);
    if (mod == NULL) {
        return NULL;
    }
    PyObject *attr = PyObject_GetAttrString(mod, name);
    Py_DECREF(mod);
    return attr;
}

/* Imports what the codecs use into the state.  0 => ok, -1 => error set. */
int agentdb_codecs_setup(PyObject *module, agentdb_state *st)
{
    PyObject *safe_uuid = NULL, *items[CACHE_SIZE] = {NULL};
    (void)module;

    PyDateTime_CAPI *api = PyCapsule_Import(PyDateTime_CAPSULE_NAME, 0);
    if (api == NULL) {
        return -1;
    }
    st->datetime_capi = api;
    st->timezone_utc = Py_NewRef(api->TimeZone_UTC);
    if ((st->Decimal = import_attr("decimal", "Decimal")) == NULL ||
        (st->UUID = import_attr("uuid", "UUID")) == NULL ||
        (st->json_loads = import_attr("json", "loads")) == NULL ||
        (st->json_dumps = import_attr("json", "dumps")) == NULL) {
        goto error;
    }
    if (!PyType_Check(st->UUID) || !PyType_Check(st->Decimal)) {
        PyErr_SetString(PyExc_TypeError, "uuid.UUID and decimal.Decimal must be classes");
        goto error;
    }
    /* orjson, when installed, parses JSON several times faster than json.loads;
       json.loads stays the fallback for what orjson refuses (integers beyond
       64 bits, which jsonb can hold). */
    st->json_loads_fast = import_attr("orjson", "loads");
    if (st->json_loads_fast == NULL) {
        PyErr_Clear();
    }
    safe_uuid = import_attr("uuid", "SafeUUID");
    if (safe_uuid == NULL) {
        goto error;
    }
    items[CACHE_TZ] = PyDict_New();
    items[CACHE_SAFE_UNKNOWN] = PyObject_GetAttrString(safe_uuid, "unknown");
    items[CACHE_STR_INT] = PyUnicode_InternFromString("int");
    items[CACHE_STR_IS_SAFE] = PyUnicode_InternFromString("is_safe");
    items[CACHE_ENUM] = import_attr("enum", "Enum");
    items[CACHE_STR_VALUE] = PyUnicode_InternFromString("value");
    for (int i = 0; i < CACHE_SIZE; i++) {
        if (items[i] == NULL) {
            goto error;
        }
    }
    st->codec_cache = PyTuple_New(CACHE_SIZE);
    if (st->codec_cache == NULL) {
        goto error;
    }
    for (int i = 0; i < CACHE_SIZE; i++) {
        PyTuple_SET_ITEM(st->codec_cache, i, items[i]); /* steals */
        items[i] = NULL;
    }
    Py_DECREF(safe_uuid);
    return 0;
error:
    Py_XDECREF(safe_uuid);
    for (int i = 0; i < CACHE_SIZE; i++) {
        Py_XDECREF(items[i]);
    }
    return -1;
}

/* module.c visits and clears st->codec_cache (and the other codec objects) itself;
   visiting them here too would count their references twice. */
int agentdb_codecs_traverse(agentdb_state *st, visitproc visit, void *arg)
{
    (void)st;
    (void)visit;
    (void)arg;
    return 0;
}

void agentdb_codecs_clear(agentdb_state *st)
{
    /* Not a reference: the capsule's struct lives as long as the datetime module. */
    st->datetime_capi = NULL;
}
