/* codecs/datetime.c: date, time, timetz, timestamp(tz), interval: decoders and encoders. */
#include "codecs_int.h"

#define USECS_PER_SEC INT64_C(1000000)
#define USECS_PER_DAY INT64_C(86400000000)
/* 2000-01-01 (PostgreSQL's epoch) in days since 1970-01-01. */
#define PG_EPOCH_UNIX_DAYS 10957
/* datetime.date.min / max in days since 1970-01-01. */
#define PY_MIN_UNIX_DAYS (-719162)
#define PY_MAX_UNIX_DAYS 2932896
#define PY_MAX_DELTA_DAYS 999999999
/* Bound on the fixed-offset timezones kept for timetz decoding. */
#define TZ_CACHE_MAX 1024

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
        return agentdb_raise_data(st,
                                  "date is out of the range of datetime.date (years 1 to 9999)");
    }
    civil_from_days(unix_days, &y, &m, &d);
    return DT_API(st)->Date_FromDate(y, m, d, DT_API(st)->DateType);
}

/* A datetime from days since 1970 and microseconds into that day, with tzinfo `tz`. */
static PyObject *make_datetime(agentdb_state *st, int64_t unix_days, int64_t usec, PyObject *tz)
{
    int y, m, d;
    if (unix_days < PY_MIN_UNIX_DAYS || unix_days > PY_MAX_UNIX_DAYS) {
        return agentdb_raise_data(
            st, "timestamp is out of the range of datetime.datetime (years 1 to 9999)");
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
        return agentdb_raise_data(st, "time of day out of the range of datetime.time "
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
        return agentdb_raise_data(st, "time zone offset out of range: %lld seconds",
                                  (long long)east);
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
        return agentdb_raise_data(st, "interval is out of the range of datetime.timedelta");
    }
    return DT_API(st)->Delta_FromDelta((int)total, (int)(rem / USECS_PER_SEC),
                                       (int)(rem % USECS_PER_SEC), 1, DT_API(st)->DeltaType);
}

/* ---------------------------------------------------------------------------------------
   Binary decoders */

PyObject *agentdb_dec_date_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len != 4) {
        return agentdb_bad_length(st, "date", len);
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

PyObject *agentdb_dec_time_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len != 8) {
        return agentdb_bad_length(st, "time", len);
    }
    return make_time(st, (int64_t)rd_u64(data), Py_None);
}

PyObject *agentdb_dec_timetz_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len != 12) {
        return agentdb_bad_length(st, "timetz", len);
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

PyObject *agentdb_dec_timestamp_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    PyObject *tz = oid == OID_TIMESTAMPTZ ? st->timezone_utc : Py_None;
    if (len != 8) {
        return agentdb_bad_length(st, "timestamp", len);
    }
    int64_t v = (int64_t)rd_u64(data);
    if (v == INT64_MAX || v == INT64_MIN) {
        return timestamp_infinity(st, v == INT64_MAX, tz);
    }
    return make_timestamp(st, v, tz);
}

PyObject *agentdb_dec_interval_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    if (len != 16) {
        return agentdb_bad_length(st, "interval", len);
    }
    return make_timedelta(st, (int32_t)rd_u32(data + 12), (int32_t)rd_u32(data + 8),
                          (int64_t)rd_u64(data));
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
        agentdb_raise_data(st, "BC dates cannot be represented by Python's datetime: %.40s", s);
        return -1;
    }
    if (parse_digits(s, len, pos, 9, &year) < 0 || *pos - start < 4) {
        goto bad;
    }
    if (year > 9999) {
        agentdb_raise_data(st, "date out of the range of Python's datetime (year > 9999): %.40s",
                           s);
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
    agentdb_raise_data(st, "invalid date received from PostgreSQL: %.40s", s);
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
        agentdb_raise_data(st, "time 24:00:00 cannot be represented by datetime.time");
        return -1;
    }
    if (h > 23 || m > 59 || sec > 59) {
        goto bad;
    }
    *usec = ((int64_t)h * 3600 + m * 60 + sec) * USECS_PER_SEC + frac;
    return 0;
bad:
    agentdb_raise_data(st, "invalid time received from PostgreSQL: %.40s", s);
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
    agentdb_raise_data(st, "invalid time zone offset received from PostgreSQL: %.40s", s);
    return -1;
}

/* ---------------------------------------------------------------------------------------
   Text decoders (data is NUL-terminated, but only `len` bytes are trusted) */

PyObject *agentdb_dec_date_text(agentdb_state *st, const char *data, int len, Oid oid)
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
        return agentdb_raise_data(st, "invalid date received from PostgreSQL: %.40s", data);
    }
    return DT_API(st)->Date_FromDate(y, m, d, DT_API(st)->DateType);
}

PyObject *agentdb_dec_time_text(agentdb_state *st, const char *data, int len, Oid oid)
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
        return agentdb_raise_data(st, "invalid time received from PostgreSQL: %.40s", data);
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

PyObject *agentdb_dec_timestamp_text(agentdb_state *st, const char *data, int len, Oid oid)
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
        return agentdb_raise_data(st, "invalid timestamp received from PostgreSQL: %.40s", data);
    }
    pos++;
    if (parse_time(st, data, len, &pos, &usec) < 0) {
        return NULL;
    }
    if (tz && parse_offset(st, data, len, &pos, &east) < 0) {
        return NULL;
    }
    if (pos != len) {
        return agentdb_raise_data(st, "invalid timestamp received from PostgreSQL: %.40s", data);
    }
    /* Shift to UTC in microseconds since 1970: the day can change. */
    int64_t total = days_from_civil(y, m, d) * USECS_PER_DAY + usec - east * USECS_PER_SEC;
    int64_t rem;
    int64_t days = floor_divmod(total, USECS_PER_DAY, &rem);
    return make_datetime(st, days, rem, tzinfo);
}

/* Interval in the default 'postgres' IntervalStyle:
   "1 year 2 mons 3 days 04:05:06.789", "-1 years -2 mons +3 days -04:05:06", "00:00:00". */
PyObject *agentdb_dec_interval_text(agentdb_state *st, const char *data, int len, Oid oid)
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
    return agentdb_raise_data(st, "invalid interval received from PostgreSQL: %.60s", data);
}

/* ---------------------------------------------------------------------------------------
   Encoders by declared type: each appends one non-None value's bytes to p->buf.
   0 => ok, -1 => error set. */

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

int agentdb_enc_date(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    (void)oid;
    if (!is_date(st, v)) {
        return agentdb_bad_arg(st, argno, v, "a datetime.date is required for date");
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

int agentdb_enc_time(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    if (!is_time(st, v)) {
        return agentdb_bad_arg(st, argno, v, "a datetime.time is required for %s",
                               agentdb_type_name(oid));
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
int agentdb_enc_timestamp(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    int64_t usec = 0, off = 0;
    int aware = 0;
    if (!is_date(st, v)) {
        return agentdb_bad_arg(st, argno, v, "a datetime.datetime is required for %s",
                               agentdb_type_name(oid));
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

int agentdb_enc_interval(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    char b[16];
    (void)oid;
    if (!is_timedelta(st, v)) {
        return agentdb_bad_arg(st, argno, v, "a datetime.timedelta is required for interval");
    }
    wr_u64(b, (uint64_t)((int64_t)PyDateTime_DELTA_GET_SECONDS(v) * USECS_PER_SEC +
                         PyDateTime_DELTA_GET_MICROSECONDS(v)));
    wr_u32(b + 8, (uint32_t)(int32_t)PyDateTime_DELTA_GET_DAYS(v));
    wr_u32(b + 12, 0);
    return buf_put(p, b, 16);
}
