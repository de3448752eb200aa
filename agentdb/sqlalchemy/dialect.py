"""Dialect layer: the dialect class ``postgresql+agentdb``: types, URL arguments, disconnects.

Modelled on SQLAlchemy's asyncpg dialect: parameters are ``$n`` placeholders typed by the
server, so the types whose parameters the server cannot infer render a cast
(``render_bind_cast``); values come back as native Python objects (json decoded too).
"""

from __future__ import annotations

import decimal
import json as _json
import weakref
from typing import Any

from sqlalchemy import exc, util
from sqlalchemy.dialects.postgresql import json as pg_json
from sqlalchemy.dialects.postgresql.array import ARRAY as PGARRAY
from sqlalchemy.dialects.postgresql.base import (  # type: ignore[attr-defined]
    _DECIMAL_TYPES,
    _FLOAT_TYPES,
    _INT_TYPES,
    ENUM,
    INTERVAL,
    OID,
    REGCLASS,
    REGCONFIG,
    PGCompiler,
    PGDialect,
    PGExecutionContext,
    PGIdentifierPreparer,
)
from sqlalchemy.dialects.postgresql.pg_catalog import INT2VECTOR, OIDVECTOR
from sqlalchemy.dialects.postgresql.types import BYTEA, CITEXT
from sqlalchemy.engine import processors
from sqlalchemy.engine.url import URL
from sqlalchemy.sql import sqltypes

from agentdb._core import parse_array
from agentdb._sql import ISOLATION_LEVELS

from .dbapi import AgentdbAdaptConnection, AgentdbDBAPI
from .pool import AgentdbPool

_DISCONNECT_MESSAGES = (
    "server closed the connection unexpectedly",
    "connection is closed",
    "connection was closed",
    "no connection to the server",
    "terminating connection",
    "could not receive data from server",
    "could not send data to server",
    "connection lost",
    "connection to server",
    "ssl connection has been closed unexpectedly",
)

# URL query keys that are arguments of agentdb.connect(), not libpq keywords.
_INT_ARGS = ("statement_cache_size",)
_FLOAT_ARGS = ("command_timeout", "timeout")


class _String(sqltypes.String):
    render_bind_cast = True


class _ARRAY(PGARRAY):  # type: ignore[type-arg]
    """ARRAY; a value that arrives as its text form (an array of a type the core cannot
    know by OID: hstore[], an enum's or a domain's array) is parsed into lists first, so
    SQLAlchemy's item processing sees elements, not the characters of one string."""

    render_bind_cast = True

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        process = super().result_processor(dialect, coltype)

        def parse_then_process(value: Any) -> Any:
            if isinstance(value, str):
                value = parse_array(value)
            return process(value) if process is not None else value

        return parse_then_process


class _REGCONFIG(REGCONFIG):
    render_bind_cast = True


class _Time(sqltypes.Time):
    render_bind_cast = True


class _ByteA(BYTEA):
    render_bind_cast = True


class _Date(sqltypes.Date):
    render_bind_cast = True


class _DateTime(sqltypes.DateTime):
    render_bind_cast = True


class _Boolean(sqltypes.Boolean):
    render_bind_cast = True


class _Interval(INTERVAL):
    render_bind_cast = True

    @classmethod
    def adapt_emulated_to_native(cls, interval: Any, **kw: Any) -> _Interval:  # type: ignore[override]
        return _Interval(precision=interval.second_precision)


class _Enum(ENUM):
    render_bind_cast = True


class _Integer(sqltypes.Integer):
    render_bind_cast = True


class _SmallInteger(sqltypes.SmallInteger):
    render_bind_cast = True


class _BigInteger(sqltypes.BigInteger):
    render_bind_cast = True


class _JSONIndexType(sqltypes.JSON.JSONIndexType):
    pass


class _JSONIntIndexType(sqltypes.JSON.JSONIntIndexType):
    __visit_name__ = "json_int_index"
    render_bind_cast = True


class _JSONStrIndexType(sqltypes.JSON.JSONStrIndexType):
    __visit_name__ = "json_str_index"
    render_bind_cast = True


class _JSONPathType(pg_json.JSONPathType):
    def bind_processor(self, dialect: Any) -> Any:
        def process(value: Any) -> Any:
            if isinstance(value, str):
                return value
            if value:
                return [str(elem) for elem in value]
            return []

        return process


class _NumericCommon:
    """Numeric/Float result handling by result OID (a mixin: SQLAlchemy 2.0 has no
    ``sqltypes.NumericCommon``, 2.1 has)."""

    render_bind_cast = True
    asdecimal: bool
    _effective_decimal_return_scale: Any

    def bind_processor(self, dialect: Any) -> Any:
        return None

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        if self.asdecimal:
            if coltype in _FLOAT_TYPES:
                return processors.to_decimal_processor_factory(
                    decimal.Decimal, self._effective_decimal_return_scale
                )
            if coltype in _DECIMAL_TYPES or coltype in _INT_TYPES:
                return None
            raise exc.InvalidRequestError(f"Unknown PG numeric type: {coltype}")
        if coltype in _FLOAT_TYPES:
            return None
        if coltype in _DECIMAL_TYPES or coltype in _INT_TYPES:
            return processors.to_float
        raise exc.InvalidRequestError(f"Unknown PG numeric type: {coltype}")


class _Numeric(_NumericCommon, sqltypes.Numeric):  # type: ignore[misc,type-arg]
    pass


class _Float(_NumericCommon, sqltypes.Float):  # type: ignore[misc,type-arg]
    pass


class _SpaceVectorMixin:
    """int2vector/oidvector arrive as text ("1 2 3"): a list of ints, as PG reflection wants."""

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        def process(value: Any) -> Any:
            if value is None or isinstance(value, list):
                return value
            return [int(p) for p in str(value).split()]

        return process


class _INT2VECTOR(_SpaceVectorMixin, INT2VECTOR):
    pass


class _OIDVECTOR(_SpaceVectorMixin, OIDVECTOR):
    pass


class _OID(OID):
    render_bind_cast = True


class _REGCLASS(REGCLASS):
    render_bind_cast = True


class _CHAR(sqltypes.CHAR):
    """The catalogs' one-byte ``"char"`` columns are typed CHAR by PG reflection.

    The core decodes a zero ``"char"`` (``attgenerated``/``attidentity`` of an ordinary
    column) as ``"\x00"``, where PostgreSQL's text form (and psycopg) give ``""``;
    reflection takes anything else for a generated column. Text values never hold NUL.
    """

    render_bind_cast = True

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        def process(value: Any) -> Any:
            return "" if value == "\x00" else value

        return process


def _json_result(self: Any, dialect: Any, coltype: Any) -> Any:
    """json/jsonb arrive decoded; a custom ``json_deserializer`` still gets to run."""
    deserializer = dialect._json_deserializer
    if deserializer is None:
        return None

    def process(value: Any) -> Any:
        if value is None:
            return None
        return deserializer(_json.dumps(value))

    return process


class _PGJSON(pg_json.JSON):
    """json; also the generic ``sqltypes.JSON`` (as PGDialect maps it), so its parameters
    render ``::JSON`` like PostgreSQL's JSON type: without the cast the server cannot
    type a parameter outside a column's context (``UPDATE ... FROM (VALUES ...)``)."""

    result_processor = _json_result


class _PGJSONB(pg_json.JSONB):
    result_processor = _json_result


class AgentdbExecutionContext(PGExecutionContext):
    def create_server_side_cursor(self) -> Any:
        return self._dbapi_connection.cursor(server_side=True)


class AgentdbCompiler(PGCompiler):
    pass


class AgentdbIdentifierPreparer(PGIdentifierPreparer):
    pass


class AgentdbDialect(PGDialect):
    """``postgresql+agentdb``: SQLAlchemy async over agentdb's C driver and pool."""

    driver = "agentdb"
    supports_statement_cache = True
    is_async = True
    has_terminate = True

    supports_server_side_cursors = True
    render_bind_cast = True
    default_paramstyle = "numeric_dollar"
    supports_sane_multi_rowcount = False
    supports_native_uuid = True

    supports_native_json_serialization = False
    supports_native_json_deserialization = True
    dialect_injects_custom_json_deserializer = True

    execution_ctx_cls = AgentdbExecutionContext
    statement_compiler = AgentdbCompiler
    preparer = AgentdbIdentifierPreparer
    poolclass = AgentdbPool

    colspecs = util.update_copy(
        PGDialect.colspecs,
        {
            sqltypes.String: _String,
            sqltypes.ARRAY: _ARRAY,
            CITEXT: CITEXT,
            REGCONFIG: _REGCONFIG,
            sqltypes.Time: _Time,
            sqltypes.Date: _Date,
            sqltypes.DateTime: _DateTime,
            sqltypes.Interval: _Interval,
            INTERVAL: _Interval,
            sqltypes.Boolean: _Boolean,
            sqltypes.Integer: _Integer,
            sqltypes.SmallInteger: _SmallInteger,
            sqltypes.BigInteger: _BigInteger,
            sqltypes.Numeric: _Numeric,
            sqltypes.Float: _Float,
            sqltypes.LargeBinary: _ByteA,
            sqltypes.JSON: _PGJSON,
            pg_json.JSON: _PGJSON,
            pg_json.JSONB: _PGJSONB,
            sqltypes.JSON.JSONPathType: _JSONPathType,
            sqltypes.JSON.JSONIndexType: _JSONIndexType,
            sqltypes.JSON.JSONIntIndexType: _JSONIntIndexType,
            sqltypes.JSON.JSONStrIndexType: _JSONStrIndexType,
            sqltypes.Enum: _Enum,
            OID: _OID,
            INT2VECTOR: _INT2VECTOR,
            OIDVECTOR: _OIDVECTOR,
            REGCLASS: _REGCLASS,
            sqltypes.CHAR: _CHAR,
        },
    )

    _agentdb_pool_ref: weakref.ReferenceType[AgentdbPool] | None = None

    @classmethod
    def import_dbapi(cls) -> AgentdbDBAPI:  # type: ignore[override]
        return AgentdbDBAPI()

    @classmethod
    def get_pool_class(cls, url: URL) -> type[AgentdbPool]:  # type: ignore[override]
        return AgentdbPool

    def retrieve_dbapi_version(self, dbapi: Any) -> Any:
        import agentdb

        return util.parse_version_string(agentdb.__version__)

    # -- connecting -------------------------------------------------------

    def create_connect_args(self, url: URL) -> Any:
        opts: dict[str, Any] = url.translate_connect_args(username="user", database="database")
        multihosts, multiports = self._split_multihost_from_url(url)
        query = dict(url.query)
        query.pop("host", None)
        query.pop("port", None)
        if multihosts:
            opts["host"] = ",".join(h or "" for h in multihosts)
            if multiports and any(p is not None for p in multiports):
                opts["port"] = ",".join("" if p is None else str(p) for p in multiports)
        elif "port" in opts:
            opts["port"] = str(opts["port"])
        if "prepared_statement_cache_size" in query:
            query["statement_cache_size"] = query.pop("prepared_statement_cache_size")
        for key, value in query.items():
            if isinstance(value, (list, tuple)):
                value = ",".join(value)
            if key in _INT_ARGS:
                opts[key] = int(value)
            elif key in _FLOAT_ARGS:
                opts[key] = float(value)
            else:
                opts[key] = value
        return ([], opts)

    def connect(self, *cargs: Any, **cparams: Any) -> Any:
        """A checkout from the native pool (or a connection of its own without one)."""
        ref = self._agentdb_pool_ref
        pool = ref() if ref is not None else None
        if pool is not None and not cargs:
            return pool.checkout_native(self.loaded_dbapi, cparams)  # type: ignore[arg-type]
        return self.loaded_dbapi.connect(*cargs, **cparams)

    def on_connect(self) -> Any:
        return None  # per checkout work must be free: nothing to set up per connection

    def get_driver_connection(self, connection: Any) -> Any:
        return connection._connection

    # -- isolation, readonly, deferrable ----------------------------------

    @util.memoized_property
    def _isolation_lookup(self) -> dict[str, str]:
        """SQLAlchemy's isolation level names -> the adapter's (``agentdb._sql``'s)."""
        levels = {sql: name for name, sql in ISOLATION_LEVELS.items()}
        return {"AUTOCOMMIT": "autocommit", **levels}

    def get_isolation_level_values(self, dbapi_connection: Any) -> list[str]:  # type: ignore[override]
        return list(self._isolation_lookup)

    def set_isolation_level(self, dbapi_connection: Any, level: str) -> None:
        dbapi_connection.set_isolation_level(self._isolation_lookup[level])

    def detect_autocommit_setting(self, dbapi_conn: Any) -> bool:
        return bool(dbapi_conn.autocommit)

    def set_readonly(self, connection: Any, value: bool) -> None:
        connection.readonly = value

    def get_readonly(self, connection: Any) -> bool:
        return bool(connection.readonly)

    def set_deferrable(self, connection: Any, value: bool) -> None:
        connection.deferrable = value

    def get_deferrable(self, connection: Any) -> bool:
        return bool(connection.deferrable)

    # -- liveness -----------------------------------------------------------

    def do_ping(self, dbapi_connection: Any) -> bool:
        dbapi_connection.ping()
        return True

    def do_terminate(self, dbapi_connection: Any) -> None:
        dbapi_connection.terminate()

    def is_disconnect(self, e: Any, connection: Any, cursor: Any) -> bool:
        if isinstance(connection, AgentdbAdaptConnection) and connection._connection.is_closed():
            return True
        import agentdb.errors as errors

        if isinstance(e, errors.ConnectionLostError):
            return True
        sqlstate = getattr(e, "sqlstate", None) or ""
        if sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03"):
            return True
        if isinstance(e, (errors.InterfaceError, errors.OperationalError)):
            text = str(e).lower()
            return any(m in text for m in _DISCONNECT_MESSAGES)
        return False


dialect = AgentdbDialect
