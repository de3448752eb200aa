/* codecs/registry.c: the OID -> decoder/encoder tables, their entry points, test hooks, setup. */
#include "codecs_int.h"

/* ---------------------------------------------------------------------------------------
   Type OIDs: array element types, names */

/* Element OID of the array types we know, 0 for anything else. */
Oid agentdb_array_elem_oid(Oid oid)
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

const char *agentdb_type_name(Oid oid)
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

/* The built-in array types whose elements we have no codec for (inet[], cidr[], money[],
   macaddr[], bit[], xml[], the ranges, the geometric and reg* types, ...): their text form
   is parsed into a list of the elements' text, as for text[], never handed over as one
   string (which a caller expecting a list would iterate character by character).  The
   element delimiter (';' for box[], ',' for the rest), 0 for any other OID.
   int2vector/oidvector are not here: their text is "1 2 3", not an array literal. */
char agentdb_text_elem_array_delim(Oid oid)
{
    switch (oid) {
    case 143:  /* xml[] */
    case 271:  /* xid8[] */
    case 629:  /* line[] */
    case 651:  /* cidr[] */
    case 719:  /* circle[] */
    case 775:  /* macaddr8[] */
    case 791:  /* money[] */
    case 1006: /* int2vector[] */
    case 1008: /* regproc[] */
    case 1010: /* tid[] */
    case 1011: /* xid[] */
    case 1012: /* cid[] */
    case 1013: /* oidvector[] */
    case 1017: /* point[] */
    case 1018: /* lseg[] */
    case 1019: /* path[] */
    case 1027: /* polygon[] */
    case 1034: /* aclitem[] */
    case 1040: /* macaddr[] */
    case 1041: /* inet[] */
    case 1263: /* cstring[] */
    case 1561: /* bit[] */
    case 1563: /* varbit[] */
    case 2201: /* refcursor[] */
    case 2207: /* regprocedure[] */
    case 2208: /* regoper[] */
    case 2209: /* regoperator[] */
    case 2210: /* regclass[] */
    case 2211: /* regtype[] */
    case 2287: /* record[] */
    case 2949: /* txid_snapshot[] */
    case 3221: /* pg_lsn[] */
    case 3643: /* tsvector[] */
    case 3644: /* gtsvector[] */
    case 3645: /* tsquery[] */
    case 3735: /* regconfig[] */
    case 3770: /* regdictionary[] */
    case 3905: /* int4range[] */
    case 3907: /* numrange[] */
    case 3909: /* tsrange[] */
    case 3911: /* tstzrange[] */
    case 3913: /* daterange[] */
    case 3927: /* int8range[] */
    case 4073: /* jsonpath[] */
    case 4090: /* regnamespace[] */
    case 4097: /* regrole[] */
    case 4192: /* regcollation[] */
    case 5039: /* pg_snapshot[] */
    case 6150: /* int4multirange[] */
    case 6151: /* nummultirange[] */
    case 6152: /* tsmultirange[] */
    case 6153: /* tstzmultirange[] */
    case 6155: /* datemultirange[] */
    case 6157: /* int8multirange[] */
        return ',';
    case 1020: /* box[]: a box's text has commas */
        return ';';
    default: return 0;
    }
}

/* ---------------------------------------------------------------------------------------
   Decoder lookup */

/* json_text: json and jsonb (and arrays of them) come back as their JSON text (a str), as
   asyncpg returns them, for code that parses them itself. */
agentdb_decode_fn agentdb_decoder_opts(Oid oid, int binary, int json_text)
{
    if (json_text) {
        switch (oid) {
        case OID_JSON: return agentdb_dec_text_any;
        case OID_JSONB: return binary ? agentdb_dec_jsonb_bin_as_text : agentdb_dec_text_any;
        case OID_JSON_ARRAY:
        case OID_JSONB_ARRAY:
            return binary ? agentdb_dec_json_array_bin_as_text
                          : agentdb_dec_json_array_text_as_text;
        default: break;
        }
    }
    return agentdb_decoder(oid, binary);
}

agentdb_decode_fn agentdb_decoder(Oid oid, int binary)
{
    if (binary) {
        switch (oid) {
        case OID_BOOL: return agentdb_dec_bool_bin;
        case OID_INT2: return agentdb_dec_int2_bin;
        case OID_INT4: return agentdb_dec_int4_bin;
        case OID_INT8: return agentdb_dec_int8_bin;
        case OID_OID: return agentdb_dec_oid_bin;
        case OID_FLOAT4: return agentdb_dec_float4_bin;
        case OID_FLOAT8: return agentdb_dec_float8_bin;
        case OID_NUMERIC: return agentdb_dec_numeric_bin;
        case OID_TEXT:
        case OID_VARCHAR:
        case OID_BPCHAR:
        case OID_NAME:
        case OID_CHAR:
        case OID_XML:
        case OID_UNKNOWN: return agentdb_dec_text_any;
        case OID_JSON: return agentdb_dec_json_any;
        case OID_JSONB: return agentdb_dec_jsonb_bin;
        case OID_BYTEA: return agentdb_dec_bytea_bin;
        case OID_DATE: return agentdb_dec_date_bin;
        case OID_TIME: return agentdb_dec_time_bin;
        case OID_TIMETZ: return agentdb_dec_timetz_bin;
        case OID_TIMESTAMP:
        case OID_TIMESTAMPTZ: return agentdb_dec_timestamp_bin;
        case OID_INTERVAL: return agentdb_dec_interval_bin;
        case OID_UUID: return agentdb_dec_uuid_bin;
        default: return agentdb_array_elem_oid(oid) ? agentdb_dec_array_bin : NULL;
        }
    }
    switch (oid) {
    case OID_BOOL: return agentdb_dec_bool_text;
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
    case OID_OID: return agentdb_dec_int_text;
    case OID_FLOAT4:
    case OID_FLOAT8: return agentdb_dec_float_text;
    case OID_NUMERIC: return agentdb_dec_numeric_text;
    case OID_JSON:
    case OID_JSONB: return agentdb_dec_json_any;
    case OID_BYTEA: return agentdb_dec_bytea_text;
    case OID_DATE: return agentdb_dec_date_text;
    case OID_TIME:
    case OID_TIMETZ: return agentdb_dec_time_text;
    case OID_TIMESTAMP:
    case OID_TIMESTAMPTZ: return agentdb_dec_timestamp_text;
    case OID_INTERVAL: return agentdb_dec_interval_text;
    case OID_UUID: return agentdb_dec_uuid_text;
    default:
        return agentdb_array_elem_oid(oid) || agentdb_text_elem_array_delim(oid)
                   ? agentdb_dec_array_text
                   : agentdb_dec_text_any;
    }
}

/* The extension types first (their OIDs are the connection's), then the built-in ones. */
agentdb_decode_fn agentdb_decoder_for(const agentdb_typeopts *o, Oid oid, int binary)
{
    agentdb_decode_fn custom;
    if (agentdb_custom_decoder(o, oid, binary, &custom)) {
        return custom;
    }
    if (oid != 0 && oid == o->vector_oid) {
        return binary ? agentdb_dec_vector_bin : agentdb_dec_vector_text;
    }
    if (oid != 0 && oid == o->halfvec_oid) {
        return binary ? agentdb_dec_halfvec_bin : agentdb_dec_vector_text;
    }
    return agentdb_decoder_opts(oid, binary, o->json_text);
}

/* ---------------------------------------------------------------------------------------
   Encoder lookup */

encoder agentdb_typed_encoder_for(const agentdb_typeopts *o, Oid oid)
{
    encoder custom;
    if (o != NULL && agentdb_custom_encoder(o, oid, &custom)) {
        return custom;
    }
    if (o != NULL && oid != 0 && oid == o->vector_oid) {
        return (encoder){agentdb_enc_vector, 1, 1};
    }
    if (o != NULL && oid != 0 && oid == o->halfvec_oid) {
        return (encoder){agentdb_enc_halfvec, 1, 1};
    }
    return agentdb_typed_encoder(oid);
}

encoder agentdb_typed_encoder(Oid oid)
{
    encoder e = {agentdb_enc_unknown, 0, 0};
    switch (oid) {
    case OID_BOOL: e = (encoder){agentdb_enc_bool, 1, 1}; break;
    case OID_BYTEA: e = (encoder){agentdb_enc_bytea, 1, 1}; break;
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
    case OID_OID: e = (encoder){agentdb_enc_int, 1, 1}; break;
    case OID_FLOAT4:
    case OID_FLOAT8: e = (encoder){agentdb_enc_float, 1, 1}; break;
    case OID_NUMERIC: e = (encoder){agentdb_enc_numeric, 0, 0}; break;
    /* Text types go as text (the server converts encodings and applies typmods the
       same way); their bytes are also their binary form inside arrays. */
    case OID_TEXT:
    case OID_VARCHAR:
    case OID_BPCHAR:
    case OID_NAME:
    case OID_CHAR:
    case OID_XML:
    case OID_UNKNOWN: e = (encoder){agentdb_enc_text, 0, 1}; break;
    case OID_JSON: e = (encoder){agentdb_enc_json, 0, 1}; break;
    case OID_JSONB: e = (encoder){agentdb_enc_json, 1, 1}; break;
    case OID_UUID: e = (encoder){agentdb_enc_uuid, 1, 1}; break;
    case OID_DATE: e = (encoder){agentdb_enc_date, 1, 1}; break;
    case OID_TIME:
    case OID_TIMETZ: e = (encoder){agentdb_enc_time, 1, 1}; break;
    case OID_TIMESTAMP:
    case OID_TIMESTAMPTZ: e = (encoder){agentdb_enc_timestamp, 1, 1}; break;
    case OID_INTERVAL: e = (encoder){agentdb_enc_interval, 1, 1}; break;
    default: break;
    }
    return e;
}

/* The encoder writing `oid`'s binary send format (fn NULL when there is none), with the
   types of the connection in use (st->cur_types) when there is one. */
static encoder binary_encoder(agentdb_state *st, Oid oid)
{
    encoder e = agentdb_typed_encoder_for(st->cur_types, oid);
    if (e.fn == agentdb_enc_numeric) {
        return (encoder){agentdb_enc_numeric_bin, 1, 1};
    }
    if (!e.binary_elem) {
        e.fn = NULL;
    }
    e.format = 1;
    return e;
}

int agentdb_has_binary_encoder(agentdb_state *st, Oid oid)
{
    Oid elemoid = agentdb_array_elem_oid(oid);
    return binary_encoder(st, elemoid ? elemoid : oid).fn != NULL;
}

int agentdb_encode_binary(agentdb_state *st, agentdb_params *p, PyObject *v, Oid oid, int argno)
{
    Oid elemoid = agentdb_array_elem_oid(oid);
    encoder e = binary_encoder(st, elemoid ? elemoid : oid);
    if (e.fn == NULL) {
        PyErr_Format(PyExc_ValueError, "no binary encoder for type OID %u", (unsigned)oid);
        return -1;
    }
    if (elemoid) {
        int format;
        return agentdb_enc_array_with(st, p, v, oid, e, argno, &format);
    }
    return e.fn(st, p, v, oid, argno);
}

/* ---------------------------------------------------------------------------------------
   Test hooks */

/* A test hook's oid argument: 0 and *out set, or -1 with an error set. */
static int oid_arg(PyObject *arg, Oid *out)
{
    unsigned long oid = PyLong_AsUnsignedLong(arg);
    if (oid == (unsigned long)-1 && PyErr_Occurred()) {
        return -1;
    }
    if (oid > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "oid out of range");
        return -1;
    }
    *out = (Oid)oid;
    return 0;
}

/* _decode(oid, data: bytes, binary) -> object */
PyObject *agentdb_codecs_decode_py(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    agentdb_state *st = agentdb_get_state(module);
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "_decode(oid, data, binary) takes 3 arguments");
        return NULL;
    }
    Oid oid;
    if (oid_arg(args[0], &oid) < 0) {
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
        return agentdb_raise_data(st, "value too large");
    }
    agentdb_decode_fn dec = agentdb_decoder(oid, binary);
    if (dec == NULL) {
        return agentdb_raise_data(st, "no binary decoder for type OID %lu", (unsigned long)oid);
    }
    /* bytes objects are NUL-terminated, as libpq's text values are. */
    return dec(st, PyBytes_AS_STRING(args[1]), (int)PyBytes_GET_SIZE(args[1]), oid);
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
    if (oid_arg(args[0], &type) < 0) {
        return NULL;
    }
    tuple = PyTuple_Pack(1, args[1]);
    if (tuple == NULL) {
        return NULL;
    }
    if (agentdb_params_encode(st, &p, tuple, type ? &type : NULL, type ? 1 : 0) < 0) {
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
    PyObject *safe_uuid = NULL, *array_type = NULL, *items[CACHE_SIZE] = {NULL};
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
    array_type = import_attr("array", "array");
    if (safe_uuid == NULL || array_type == NULL) {
        goto error;
    }
    items[CACHE_TZ] = PyDict_New();
    items[CACHE_SAFE_UNKNOWN] = PyObject_GetAttrString(safe_uuid, "unknown");
    items[CACHE_STR_INT] = PyUnicode_InternFromString("int");
    items[CACHE_STR_IS_SAFE] = PyUnicode_InternFromString("is_safe");
    items[CACHE_ENUM] = import_attr("enum", "Enum");
    items[CACHE_STR_VALUE] = PyUnicode_InternFromString("value");
    items[CACHE_FLOAT_ARRAY] = PyObject_CallFunction(array_type, "s[d]", "f", 0.0);
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
    Py_DECREF(array_type);
    return 0;
error:
    Py_XDECREF(safe_uuid);
    Py_XDECREF(array_type);
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
