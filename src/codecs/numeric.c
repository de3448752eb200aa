/* codecs/numeric.c: numeric <-> decimal.Decimal, text and binary (ints and floats encoded too). */
#include "codecs_int.h"

/* ---------------------------------------------------------------------------------------
   Decoders */

static PyObject *decimal_from_ascii(agentdb_state *st, const char *data, Py_ssize_t len)
{
    PyObject *text = PyUnicode_DecodeASCII(data, len, NULL);
    if (text == NULL) {
        return agentdb_reraise_as_data(st, "invalid numeric received from PostgreSQL");
    }
    PyObject *res = PyObject_CallOneArg(st->Decimal, text);
    Py_DECREF(text);
    if (res == NULL) {
        return agentdb_reraise_as_data(st, "invalid numeric received from PostgreSQL");
    }
    return res;
}

/* numeric: int16 ndigits, int16 weight, uint16 sign, uint16 dscale, then ndigits
   base-10000 digits; value = sum(digit[i] * 10000^(weight - i)), shown with dscale
   decimals.  Rendered as the text PostgreSQL would print, then Decimal(text): one
   C-level parse, faster than building a digits tuple. */
PyObject *agentdb_dec_numeric_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    char stackbuf[160];
    char *buf = stackbuf, *o;
    PyObject *res;
    (void)oid;

    if (len < 8) {
        return agentdb_bad_length(st, "numeric", len);
    }
    int ndigits = (int16_t)rd_u16(data);
    int weight = (int16_t)rd_u16(data + 2);
    unsigned sign = rd_u16(data + 4);
    int dscale = rd_u16(data + 6);
    if (ndigits < 0 || len != 8 + 2 * ndigits) {
        return agentdb_bad_length(st, "numeric", len);
    }
    switch (sign) {
    case 0x0000:
    case 0x4000: break;
    case 0xC000: return decimal_from_ascii(st, "NaN", 3);
    case 0xD000: return decimal_from_ascii(st, "Infinity", 8);
    case 0xF000: return decimal_from_ascii(st, "-Infinity", 9);
    default: return agentdb_raise_data(st, "invalid binary numeric value: sign 0x%04x", sign);
    }
    if (dscale > 0x3FFF) {
        return agentdb_raise_data(st, "invalid binary numeric value: scale %d", dscale);
    }
    const char *digits = data + 8;
    for (int i = 0; i < ndigits; i++) {
        if (rd_u16(digits + 2 * i) > 9999) {
            return agentdb_raise_data(st, "invalid binary numeric value: digit out of range");
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

PyObject *agentdb_dec_numeric_text(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    for (int i = 0; i < len; i++) {
        /* Decimal() also takes spaces, underscores and non-ASCII digits: PostgreSQL
           never sends those, so they mean a corrupt value. */
        char c = data[i];
        if (!((c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' ||
              c == 'E' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) {
            return agentdb_raise_data(st, "invalid numeric received from PostgreSQL: %.40s", data);
        }
    }
    return decimal_from_ascii(st, data, len);
}

/* ---------------------------------------------------------------------------------------
   Encoding as text (how parameters are sent) */

/* A Decimal as PostgreSQL reads it: str(), any NaN (signalling, negative) as 'NaN'. */
int agentdb_put_decimal_text(agentdb_params *p, PyObject *v)
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

int agentdb_enc_numeric(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    (void)oid;
    if (PyObject_TypeCheck(v, (PyTypeObject *)st->Decimal)) {
        return agentdb_put_decimal_text(p, v);
    }
    if (PyLong_Check(v)) {
        return agentdb_put_int_text(p, v);
    }
    if (PyFloat_Check(v)) {
        return agentdb_put_float_text(p, v);
    }
    return agentdb_bad_arg(st, argno, v, "a Decimal, int or float is required for numeric");
}

/* ---------------------------------------------------------------------------------------
   Binary send format (COPY ... (FORMAT binary), where no field may be text) */

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

/* numeric's binary form from its text s[0:n] (what agentdb_enc_numeric writes: [-]digits[.digits]
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
        agentdb_bad_arg(st, argno, v, "not a number numeric accepts");
        goto done;
    }
    int64_t dscale = frac - exp > 0 ? frac - exp : 0;
    if (nd == 0) { /* zero, with its scale: 0.00 */
        if (dscale > NUMERIC_DSCALE_MAX) {
            agentdb_bad_arg(st, argno, v, "value out of numeric range");
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
        agentdb_bad_arg(st, argno, v, "value out of numeric range");
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

/* numeric in binary: the text agentdb_enc_numeric would send (Decimal, int or float), converted. */
int agentdb_enc_numeric_bin(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    agentdb_params text;
    agentdb_params_scratch(&text);
    int rc = agentdb_enc_numeric(st, &text, v, oid, argno);
    if (rc == 0) {
        rc = numeric_text_to_bin(st, p, text.buf, text.used, v, argno);
    }
    agentdb_params_free(&text);
    return rc;
}
