"""src/errors.c: the exception hierarchy and the server-error builder."""

from __future__ import annotations

import pytest

from agentdb import _core

FIELDS = (
    "sqlstate",
    "severity",
    "server_message",
    "detail",
    "hint",
    "position",
    "context",
    "schema_name",
    "table_name",
    "column_name",
    "constraint_name",
    "data_type_name",
)

PEP249 = (
    "DataError",
    "OperationalError",
    "IntegrityError",
    "InternalError",
    "ProgrammingError",
    "NotSupportedError",
)


def test_pep249_hierarchy() -> None:
    assert issubclass(_core.Error, Exception)
    assert issubclass(_core.Warning, Exception)
    assert not issubclass(_core.Warning, _core.Error)
    assert issubclass(_core.InterfaceError, _core.Error)
    assert issubclass(_core.DatabaseError, _core.Error)
    assert not issubclass(_core.InterfaceError, _core.DatabaseError)
    for name in PEP249:
        assert issubclass(getattr(_core, name), _core.DatabaseError), name


def test_special_classes() -> None:
    assert issubclass(_core.ConnectionLostError, _core.OperationalError)
    assert issubclass(_core.PoolTimeout, TimeoutError)
    assert not issubclass(_core.PoolTimeout, _core.Error)


@pytest.mark.parametrize(
    ("name", "base"),
    [
        ("UniqueViolation", "IntegrityError"),
        ("ForeignKeyViolation", "IntegrityError"),
        ("NotNullViolation", "IntegrityError"),
        ("SerializationFailure", "OperationalError"),
        ("DeadlockDetected", "OperationalError"),
        ("QueryCanceled", "OperationalError"),
        ("UndefinedTable", "ProgrammingError"),
        ("SyntaxError", "ProgrammingError"),
        ("DivisionByZero", "DataError"),
        ("FeatureNotSupported", "NotSupportedError"),
        ("InvalidPassword", "OperationalError"),
        ("InternalError_", "InternalError"),
        ("RaiseException", "ProgrammingError"),
        ("SqlStatementNotYetComplete", "DatabaseError"),
    ],
)
def test_sqlstate_class_bases(name: str, base: str) -> None:
    cls = getattr(_core, name)
    assert cls.__bases__ == (getattr(_core, base),)
    assert issubclass(cls, _core.DatabaseError)
    assert issubclass(cls, _core.Error)


def test_unique_violation_chain() -> None:
    mro = _core.UniqueViolation.__mro__
    assert mro[:4] == (
        _core.UniqueViolation,
        _core.IntegrityError,
        _core.DatabaseError,
        _core.Error,
    )


def test_names_and_module() -> None:
    assert _core.UniqueViolation.__name__ == "UniqueViolation"
    assert _core.UniqueViolation.__module__ == "agentdb.errors"
    assert repr(_core.UniqueViolation) == "<class 'agentdb.errors.UniqueViolation'>"
    assert _core.Error.__module__ == "agentdb.errors"


def test_duplicate_spec_names_get_suffix() -> None:
    # null_value_not_allowed is both 22004 and 39004 in errcodes.txt (psycopg's names).
    assert _core.NullValueNotAllowed.sqlstate == "22004"
    assert _core.NullValueNotAllowedExt.sqlstate == "39004"
    assert _core.ModifyingSqlDataNotPermittedExt.sqlstate == "38002"


def test_class_level_sqlstate() -> None:
    assert _core.UniqueViolation.sqlstate == "23505"
    assert _core.SerializationFailure.sqlstate == "40001"
    assert _core.DeadlockDetected.sqlstate == "40P01"
    assert _core.Error.sqlstate is None


def test_user_instances_have_attributes() -> None:
    e = _core.UniqueViolation("x")
    assert str(e) == "x"
    assert e.sqlstate == "23505"
    for attr in FIELDS[1:]:
        assert getattr(e, attr) is None, attr
    e = _core.Error("y")
    for attr in FIELDS:
        assert getattr(e, attr) is None, attr
    e = _core.InterfaceError()
    assert e.detail is None


def test_from_fields_all_attributes() -> None:
    e = _core._error_from_fields(
        {
            "sqlstate": "23505",
            "severity": "ERROR",
            "message": 'duplicate key value violates unique constraint "t_pkey"',
            "detail": "Key (id)=(1) already exists.",
            "hint": "some hint",
            "position": "15",
            "context": "SQL statement",
            "schema_name": "public",
            "table_name": "t",
            "column_name": "id",
            "constraint_name": "t_pkey",
            "data_type_name": "int4",
        }
    )
    assert type(e) is _core.UniqueViolation
    assert isinstance(e, _core.IntegrityError)
    assert str(e) == 'duplicate key value violates unique constraint "t_pkey"'
    assert e.args == ('duplicate key value violates unique constraint "t_pkey"',)
    assert e.server_message == str(e)
    assert e.sqlstate == "23505"
    assert e.severity == "ERROR"
    assert e.detail == "Key (id)=(1) already exists."
    assert e.hint == "some hint"
    assert e.position == 15
    assert e.context == "SQL statement"
    assert e.schema_name == "public"
    assert e.table_name == "t"
    assert e.column_name == "id"
    assert e.constraint_name == "t_pkey"
    assert e.data_type_name == "int4"


def test_from_fields_absent_are_none() -> None:
    e = _core._error_from_fields({"sqlstate": "42P01", "message": "no table"})
    assert type(e) is _core.UndefinedTable
    assert e.sqlstate == "42P01"
    for attr in FIELDS[3:]:
        assert getattr(e, attr) is None, attr
    assert "detail" in vars(e)  # set on the instance, not only inherited


def test_from_fields_none_values_and_bad_position() -> None:
    e = _core._error_from_fields({"sqlstate": "22012", "message": "m", "position": "x1"})
    assert type(e) is _core.DivisionByZero
    assert e.position is None
    e = _core._error_from_fields({"sqlstate": "22012", "message": "m", "detail": None})
    assert e.detail is None


def test_unknown_code_in_known_class() -> None:
    assert type(_core._error_from_fields({"sqlstate": "23ZZZ"})) is _core.IntegrityError
    assert type(_core._error_from_fields({"sqlstate": "08ZZZ"})) is _core.OperationalError
    assert type(_core._error_from_fields({"sqlstate": "42ZZZ"})) is _core.ProgrammingError
    # One-letter classes, as psycopg: P (PL/pgSQL), X (internal), F, H.
    assert type(_core._error_from_fields({"sqlstate": "P0ZZZ"})) is _core.ProgrammingError
    assert type(_core._error_from_fields({"sqlstate": "XXZZZ"})) is _core.InternalError
    assert type(_core._error_from_fields({"sqlstate": "HVZZZ"})) is _core.OperationalError


def test_fully_unknown_is_database_error() -> None:
    e = _core._error_from_fields({"sqlstate": "ZZ999", "message": "odd"})
    assert type(e) is _core.DatabaseError
    assert e.sqlstate == "ZZ999"
    assert str(e) == "odd"
    assert type(_core._error_from_fields({})) is _core.DatabaseError
    assert str(_core._error_from_fields({})) == "unknown error"


def test_from_fields_rejects_bad_input() -> None:
    with pytest.raises(TypeError):
        _core._error_from_fields([("sqlstate", "23505")])
    with pytest.raises(KeyError):
        _core._error_from_fields({"nope": "x"})
    with pytest.raises(TypeError):
        _core._error_from_fields({"detail": 1})


def test_non_ascii_message() -> None:
    e = _core._error_from_fields({"sqlstate": "22P02", "message": "syntaxe invalide : « é »"})
    assert str(e) == "syntaxe invalide : « é »"


def test_sqlstate_classes_exported() -> None:
    # Every error class of errcodes.txt (class 03 and up); none for 00/01/02.
    classes = [
        v
        for v in vars(_core).values()
        if isinstance(v, type) and issubclass(v, _core.DatabaseError) and v.sqlstate
    ]
    assert len(classes) > 200
    codes = {c.sqlstate for c in classes}
    assert len(codes) == len(classes)
    assert not any(c.startswith(("00", "01", "02")) for c in codes)
    for cls in classes:
        assert type(_core._error_from_fields({"sqlstate": cls.sqlstate})) is cls


def test_raise_and_catch() -> None:
    with pytest.raises(_core.IntegrityError) as info:
        raise _core._error_from_fields({"sqlstate": "23503", "message": "fk"})
    assert type(info.value) is _core.ForeignKeyViolation
    assert info.value.sqlstate == "23503"


# agentdb_error_from_conn's password masking needs a PGconn: it is tested through real
# connections in test_connection.py (test_connect_errors_name_the_problem_and_hide_the_password,
# test_wrong_password_against_a_password_cluster).
