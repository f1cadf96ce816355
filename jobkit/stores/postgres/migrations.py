"""Knowing the schema: refuse what is not jobkit's, build a new one, bring an older one up to date.

A schema is jobkit's when it holds a ``meta`` table that says so and only tables jobkit
makes. One that holds anything else is refused before anything is written. Changes run
in one transaction under an advisory lock on the schema's name, so that processes
starting together serialise: the first builds or upgrades, the others then find it done.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from jobkit.errors import NotAJobkitDatabase, SchemaTooNew, StoreError
from jobkit.stores.postgres.schema import MARK, TABLES, VERSION, sql_of, steps_after

logger = logging.getLogger("jobkit")

LOCK = "SELECT pg_advisory_xact_lock(hashtext('jobkit.migrate'), hashtext(%s))"
RELATIONS = """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f') ORDER BY c.relname"""
EXISTS = "SELECT 1 FROM pg_namespace WHERE nspname = %s"


def state(conn: psycopg.Connection[tuple[object, ...]], schema: str, place: str) -> int | None:
    """The version of jobkit's tables in *schema*; 0 for a schema that is empty or absent; None when none exists.

    Raises :class:`NotAJobkitDatabase` for a schema that holds tables jobkit did not make.
    """
    exists = conn.execute(EXISTS, (schema,)).fetchone() is not None
    tables = {str(row[0]) for row in conn.execute(RELATIONS, (schema,))}
    if not exists:
        return None
    foreign = sorted(tables - TABLES)
    if foreign or (tables and "meta" not in tables):
        shown = ", ".join(foreign or sorted(tables))
        raise NotAJobkitDatabase(
            f"{place}: schema {schema!r} holds tables jobkit did not make ({shown}); it was left unchanged: "
            "give PostgresStore another schema=",
            path=place,
        )
    if not tables:
        return 0
    row = conn.execute(sql.SQL("SELECT made_by, version FROM {}.meta").format(sql.Identifier(schema))).fetchone()
    if row is None or row[0] != MARK or not isinstance(row[1], int):
        raise NotAJobkitDatabase(
            f"{place}: schema {schema!r} has a meta table jobkit did not write; it was left unchanged", path=place
        )
    return row[1]


def judge(version: int | None, schema: str, place: str, *, create: bool, upgrade: bool) -> bool:
    """Whether *schema* at *version* (see :func:`state`) needs changes; raises when they are not allowed."""
    if version is not None and version > VERSION:
        raise SchemaTooNew(
            f"{place}: schema {schema!r} is at jobkit schema version {version}, newer than this jobkit's "
            f"{VERSION}; upgrade jobkit to use it (it was left unchanged)",
            path=place,
        )
    if not version and not create:
        raise StoreError(
            f"{place}: no jobkit tables in schema {schema!r}; give create=True, or run python -m jobkit migrate",
            path=place,
        )
    if version and version < VERSION and not upgrade:
        raise StoreError(
            f"{place}: schema {schema!r} is at jobkit schema version {version}, this jobkit needs {VERSION}; "
            "run python -m jobkit migrate TARGET, or open with upgrade=True",
            path=place,
        )
    return version != VERSION


def migrate(
    conn: psycopg.Connection[tuple[object, ...]], schema: str, place: str, *, create: bool, upgrade: bool
) -> int:
    """Make *schema* hold this version's tables, or refuse; the version it was at (0: made now)."""
    before = state(conn, schema, place)
    if not judge(before, schema, place, create=create, upgrade=upgrade):
        return VERSION
    with conn.transaction():
        conn.execute(LOCK, (schema,))
        found = state(conn, schema, place)  # again, under the lock: another process may have done it
        if not judge(found, schema, place, create=create, upgrade=upgrade):
            return VERSION
        quoted = sql.Identifier(schema).as_string(conn)
        if found is None:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        for step in steps_after(found or 0):
            logger.info("jobkit: %s schema %s: version %d, %s", place, schema, step.version, step.description)
            conn.execute(sql_of(step, quoted).encode())
        meta = sql.SQL(
            "INSERT INTO {}.meta (made_by, version) VALUES (%s, %s) "
            "ON CONFLICT (singleton) DO UPDATE SET version = excluded.version, updated_at = now()"
        ).format(sql.Identifier(schema))
        conn.execute(meta, (MARK, VERSION))
    return found or 0
