"""The statement classifier (src/sqlclass.c): what a statement's text says it does to
its session, which decides where a pool shortcut may run and what a release resets."""

from __future__ import annotations

import pytest

from agentdb import _core

SESSION, BEGIN, END, PREPARE, ENCODING = 1, 2, 4, 8, 16

CASES = [
    # reads, writes, DDL: nothing outlives the statement
    ("SELECT 1", 0),
    ("  select * from t where a = $1", 0),
    ("(SELECT 1) UNION (SELECT 2)", 0),
    ("WITH x AS (SELECT 1) SELECT * FROM x", 0),
    ("INSERT INTO t VALUES ($1)", 0),
    ("INSERT INTO temp VALUES (1)", 0),  # a table named temp
    ("UPDATE t SET a = 1", 0),
    ("DELETE FROM t", 0),
    ("VALUES (1)", 0),
    ("TABLE t", 0),
    ("EXPLAIN ANALYZE SELECT 1", 0),
    ("COPY t TO STDOUT", 0),
    ("SHOW search_path", 0),
    ("CREATE TABLE t (a int)", 0),
    ("CREATE TABLE temp (a int)", 0),
    ("CREATE UNLOGGED TABLE u (a int)", 0),
    ("ALTER TABLE t ADD COLUMN b int", 0),
    ("DROP TABLE IF EXISTS t", 0),
    ("TRUNCATE t", 0),
    ("NOTIFY ch, 'x'", 0),
    ("SELECT pg_notify('ch', 'x')", 0),
    ("SELECT pg_advisory_xact_lock(1)", 0),  # released with its transaction
    ("", 0),  # the pool's ping
    ("-- a comment\nSELECT 1", 0),
    ("/* nested /* comment */ SET x = 1 */ SELECT 1", 0),
    ("SELECT 'SET search_path = x; set_config'", 0),  # words in a literal don't count
    ("SELECT $$ pg_advisory_lock(1) $$", 0),
    ("SELECT $tag$ ; SET x = 1 $tag$", 0),
    ("SELECT E'\\' ; SET x = 1'", 0),
    ('SELECT 1 AS "set_config"', 0),
    ("SAVEPOINT a", 0),
    ("RELEASE SAVEPOINT a", 0),
    ("ROLLBACK TO SAVEPOINT a", 0),
    ("ROLLBACK WORK TO a", 0),
    ("SET LOCAL statement_timeout = 5", 0),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", 0),
    ("SET CONSTRAINTS ALL DEFERRED", 0),
    ("LOCK TABLE t", 0),
    ("COMMIT PREPARED 'x'", 0),
    ("ROLLBACK PREPARED 'x'", 0),
    ("COMMIT AND CHAIN", 0),
    # transaction blocks
    ("BEGIN", BEGIN),
    ("begin isolation level serializable", BEGIN),
    ("START TRANSACTION READ ONLY", BEGIN),
    ("COMMIT", END),
    ("END", END),
    ("ROLLBACK", END),
    ("ABORT", END),
    ("PREPARE TRANSACTION 'x'", END),
    ("BEGIN; INSERT INTO t VALUES (1); COMMIT", END),
    ("COMMIT; BEGIN", BEGIN),
    # the session
    ("SET search_path = x", SESSION),
    ("SET SESSION statement_timeout = 5", SESSION),
    ("set statement_timeout to '1234ms'", SESSION),
    ("SET ROLE nobody", SESSION),
    ("SET SESSION AUTHORIZATION nobody", SESSION),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", SESSION),
    ("RESET ALL", SESSION),
    ("LISTEN ch", SESSION),
    ("UNLISTEN *", SESSION),
    ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", SESSION),
    ("FETCH 10 FROM c", SESSION),
    ("CLOSE c", SESSION),
    ("LOAD 'auto_explain'", SESSION),
    ("DO $$BEGIN PERFORM 1; END$$", SESSION),
    ("CALL p()", SESSION),
    ("DISCARD TEMP", SESSION),
    ("CREATE TEMP TABLE x (a int)", SESSION),
    ("CREATE TEMPORARY VIEW v AS SELECT 1", SESSION),
    ("CREATE GLOBAL TEMPORARY TABLE x (a int)", SESSION),
    ("CREATE OR REPLACE TEMP VIEW v AS SELECT 1", SESSION),
    ("CREATE TABLE pg_temp.x (a int)", SESSION),
    ("SELECT * INTO TEMP x FROM t", SESSION),
    ("SELECT * INTO LOCAL TEMPORARY x FROM t", SESSION),
    ("SELECT set_config('search_path', 'x', false)", SESSION),
    ("select pg_advisory_lock(1)", SESSION),
    ("SELECT pg_try_advisory_lock_shared(1)", SESSION),
    ("SELECT pg_advisory_unlock_all()", SESSION),
    ("SELECT dblink_connect('c', 'dbname=x')", SESSION),
    ("EXECUTE userstmt(1)", SESSION),
    ("FROBNICATE everything", SESSION),  # unknown: assume the worst
    ("SELECT 1; SET x = 1", SESSION),
    ("BEGIN; SET x = 1", BEGIN | SESSION),
    # prepared statements of the user's own
    ("PREPARE p AS SELECT 1", SESSION | PREPARE),
    ("DEALLOCATE ALL", SESSION | PREPARE),
    ("DISCARD ALL", SESSION | PREPARE),
    # client encoding: refused unless it names UTF-8
    ("SET client_encoding = 'LATIN1'", ENCODING),
    ("SET NAMES 'latin1'", ENCODING),
    ("SET LOCAL client_encoding TO sql_ascii", ENCODING),
    ("SET SESSION client_encoding = latin1", ENCODING),
    ("SET client_encoding TO 'UTF8'", SESSION),
    ("set client_encoding = 'utf-8'", SESSION),
    ("SET NAMES unicode", SESSION),
    ("SET client_encoding TO DEFAULT", SESSION),
    ("SET LOCAL client_encoding = 'UTF8'", 0),
]


@pytest.mark.parametrize(("sql", "flags"), CASES)
def test_classify(sql: str, flags: int) -> None:
    assert _core._classify_sql(sql) == flags


def test_unterminated_quotes_and_comments_do_not_crash() -> None:
    for sql in ["SELECT 'abc", 'SELECT "abc', "SELECT $x$ abc", "SELECT /* abc", "SET x = '"]:
        _core._classify_sql(sql)  # any flags; no crash, no exception


def test_non_ascii_text() -> None:
    assert _core._classify_sql("SELECT 'é' AS ñ") == 0
    assert _core._classify_sql("SET application_name = 'ü'") == SESSION
