/* codecs/array.c: arrays: text and binary decoders (lists of the known element types; of
   the elements' text for other built-in array types), parse_array(), encoders. */
#include "codecs_int.h"

#include <limits.h>

#define PG_MAXDIM 6

/* ---------------------------------------------------------------------------------------
   Binary decoders */

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
            item = agentdb_raise_data(st, "invalid binary array: truncated");
        }
        else {
            int32_t elen = (int32_t)rd_u32(*pos);
            *pos += 4;
            if (elen == -1) {
                item = Py_NewRef(Py_None);
            }
            else if (elen < 0 || elen > end - *pos) {
                item = agentdb_raise_data(st, "invalid binary array: bad element length %d", elen);
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
        return agentdb_bad_length(st, "array", len);
    }
    int32_t ndim = (int32_t)rd_u32(data);
    Oid elemoid = rd_u32(data + 8);
    if (ndim == 0) {
        return PyList_New(0);
    }
    if (ndim < 0 || ndim > PG_MAXDIM) {
        return agentdb_raise_data(st, "invalid binary array: %d dimensions", ndim);
    }
    if (len < 12 + 8 * ndim) {
        return agentdb_bad_length(st, "array", len);
    }
    /* Every element takes at least 4 bytes: bounds the lists we allocate. */
    int64_t total = 1, room = (len - 12 - 8 * ndim) / 4;
    for (int i = 0; i < ndim; i++) {
        dims[i] = (int32_t)rd_u32(data + 12 + 8 * i);
        if (dims[i] < 0) {
            return agentdb_raise_data(st, "invalid binary array: negative dimension");
        }
        total *= dims[i];
        if (total > room) {
            return agentdb_raise_data(st, "invalid binary array: truncated");
        }
    }
    if (total == 0) {
        return PyList_New(0);
    }
    /* Arrays of arrays do not exist; refusing them also bounds the recursion. */
    agentdb_decode_fn dec =
        agentdb_array_elem_oid(elemoid) ? NULL : agentdb_decoder_opts(elemoid, 1, json_text);
    if (dec == NULL) {
        return agentdb_raise_data(st, "no binary decoder for array elements of type OID %u",
                                  (unsigned)elemoid);
    }
    const char *pos = data + 12 + 8 * ndim, *end = data + len;
    PyObject *res = array_bin_level(st, dims, ndim, 0, &pos, end, dec, elemoid);
    if (res != NULL && pos != end) {
        Py_DECREF(res);
        return agentdb_raise_data(st, "invalid binary array: %d trailing bytes", (int)(end - pos));
    }
    return res;
}

PyObject *agentdb_dec_array_bin(agentdb_state *st, const char *data, int len, Oid oid)
{
    (void)oid;
    return array_bin(st, data, len, 0);
}

PyObject *agentdb_dec_json_array_bin_as_text(agentdb_state *st, const char *data, int len,
                                             Oid oid)
{
    (void)oid;
    return array_bin(st, data, len, 1);
}

/* ---------------------------------------------------------------------------------------
   Text decoders (data is NUL-terminated, but only `len` bytes are trusted) */

static int is_array_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* One {...} level of a text array at data[*pos]; elements separated by `delim`,
   unescaped into `scratch` (as large as the input) and decoded with `dec`. */
static PyObject *array_text_level(agentdb_state *st, const char *data, int len, int *pos,
                                  int depth, agentdb_decode_fn dec, Oid elemoid, char delim,
                                  char *scratch)
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
            item = array_text_level(st, data, len, pos, depth + 1, dec, elemoid, delim,
                                    scratch);
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
                /* Unquoted: up to the delimiter or }; backslash escapes; trailing blanks
                   dropped. */
                while (*pos < len && data[*pos] != delim && data[*pos] != '}') {
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
        if (*pos < len && data[*pos] == delim) {
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
    agentdb_raise_data(st, "invalid array received from PostgreSQL: %.60s", data);
error:
    Py_XDECREF(item);
    Py_XDECREF(list);
    return NULL;
}

/* Text array: optional "[lo:hi]..=" bounds decoration, then {...} with quoted or bare
   elements, NULL, and nested braces for more dimensions.  Arrays of types we have no
   codec for (agentdb_text_elem_array_delim) give their elements' text. */
static PyObject *array_text(agentdb_state *st, const char *data, int len, Oid oid,
                            int json_text)
{
    int pos = 0;
    Oid elemoid = agentdb_array_elem_oid(oid);
    char delim = ',';
    if (elemoid == 0) {
        char d = agentdb_text_elem_array_delim(oid);
        elemoid = OID_TEXT;
        delim = d ? d : ',';
    }
    agentdb_decode_fn dec = agentdb_decoder_opts(elemoid, 0, json_text);
    char *scratch;
    PyObject *res;

    if (len > 0 && data[0] == '[') {
        while (pos < len && data[pos] != '=') {
            pos++;
        }
        if (pos >= len) {
            return agentdb_raise_data(st, "invalid array received from PostgreSQL: %.60s", data);
        }
        pos++;
    }
    scratch = PyMem_Malloc((size_t)len + 1);
    if (scratch == NULL) {
        return PyErr_NoMemory();
    }
    res = array_text_level(st, data, len, &pos, 1, dec, elemoid, delim, scratch);
    PyMem_Free(scratch);
    if (res != NULL && pos != len) {
        Py_DECREF(res);
        return agentdb_raise_data(st, "invalid array received from PostgreSQL: %.60s", data);
    }
    return res;
}

PyObject *agentdb_dec_array_text(agentdb_state *st, const char *data, int len, Oid oid)
{
    return array_text(st, data, len, oid, 0);
}

/* parse_array(text) -> list: an array's text form (the value of an array type the core
   cannot know by OID, e.g. hstore[] or an enum's array, which arrives as str) as nested
   lists of the elements' text and None.  The dialect's ARRAY type uses it. */
PyObject *agentdb_parse_array_py(PyObject *module, PyObject *arg)
{
    Py_ssize_t len;
    if (!PyUnicode_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "parse_array() takes a str, not %.100s",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    const char *data = PyUnicode_AsUTF8AndSize(arg, &len);
    if (data == NULL) {
        return NULL;
    }
    if (len > INT_MAX - 1) {
        PyErr_SetString(PyExc_ValueError, "parse_array(): text too long");
        return NULL;
    }
    return array_text(agentdb_get_state(module), data, (int)len, OID_TEXT_ARRAY, 0);
}

PyObject *agentdb_dec_json_array_text_as_text(agentdb_state *st, const char *data, int len,
                                              Oid oid)
{
    return array_text(st, data, len, oid, 1);
}

/* ---------------------------------------------------------------------------------------
   Encoders */

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
        return agentdb_enc_array_text(st, p, item, e, elemoid, argno, depth + 1);
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
        rc = agentdb_enc_untyped_text(st, p, item, argno, depth);
    }
    return rc < 0 ? -1 : quote_array_elem(p, start);
}

/* A text array literal {a,"b c",NULL,{...}}: elements by `e` (or untyped when e is
   NULL), nested lists as more dimensions; the server checks they are rectangular.
   The elements are read from a snapshot (array_level_items): an element's encoder may
   run Python code (__index__, __str__, json.dumps) that empties or shrinks the list. */
int agentdb_enc_array_text(agentdb_state *st, agentdb_params *p, PyObject *v, const encoder *e,
                           Oid elemoid, int argno, int depth)
{
    PyObject *items = NULL;
    int rc = -1;

    if (depth > PG_MAXDIM) {
        return agentdb_bad_arg(st, argno, v, "more than %d array dimensions", PG_MAXDIM);
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
        return agentdb_bad_arg(st, argno, v, "multidimensional arrays must be rectangular lists");
    }
    items = array_level_items(v, e, elemoid);
    if (items == NULL) {
        goto done;
    }
    if (PySequence_Fast_GET_SIZE(items) != dims[level]) {
        agentdb_bad_arg(st, argno, v, "multidimensional arrays must be rectangular lists");
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
            agentdb_bad_arg(st, argno, v, "multidimensional arrays must be rectangular lists");
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
                agentdb_bad_arg(st, argno, v, "array element too large");
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
int agentdb_enc_array_with(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid,
                           encoder e, int argno, int *format)
{
    Oid elemoid = agentdb_array_elem_oid(oid);
    Py_ssize_t dims[PG_MAXDIM];
    int ndim = 0, hasnull = 0;

    if (!is_seq(v)) {
        return agentdb_bad_arg(st, argno, v, "a list or tuple is required for %s",
                               agentdb_type_name(oid));
    }
    if (!e.binary_elem) {
        *format = 0;
        return agentdb_enc_array_text(st, p, v, &e, elemoid, argno, 1);
    }
    *format = 1;
    /* Dimensions from the first element of each level (a json element may be a list).
       No Python code runs in this loop, so the borrowed `cur` stays valid; the
       levels are checked against dims again as they are encoded. */
    PyObject *cur = v;
    while (is_seq(cur) && !(ndim == 1 && (elemoid == OID_JSON || elemoid == OID_JSONB))) {
        if (ndim == PG_MAXDIM) {
            return agentdb_bad_arg(st, argno, v, "more than %d array dimensions", PG_MAXDIM);
        }
        Py_ssize_t n = PySequence_Fast_GET_SIZE(cur);
        if (n > INT32_MAX) {
            return agentdb_bad_arg(st, argno, v, "array too large");
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
int agentdb_enc_array(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno,
                      int *format)
{
    return agentdb_enc_array_with(st, p, v, oid,
                                  agentdb_typed_encoder(agentdb_array_elem_oid(oid)), argno,
                                  format);
}
