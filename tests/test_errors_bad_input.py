"""Bad input, end to end: the exact error a user sees, and nothing written or changed."""

import gc
import math
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

import jobkit
from jobkit import errors
from jobkit.store import Store
from jobkit.stores.sqlite import SCHEMA_VERSION

# -- the error tree ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("leaf", "builtin"),
    [
        (jobkit.ValidationError, ValueError),
        (jobkit.PayloadTooLarge, ValueError),
        (jobkit.DuplicateJobError, ValueError),
        (jobkit.UnknownJobError, LookupError),
        (jobkit.JobStateError, RuntimeError),
        (jobkit.JobFailed, RuntimeError),
        (jobkit.ScheduleError, ValueError),
        (jobkit.StoreError, RuntimeError),
        (jobkit.NotAJobkitDatabase, RuntimeError),
        (jobkit.SchemaTooNew, RuntimeError),
    ],
)
def test_every_leaf_has_one_root_and_a_builtin(leaf: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(leaf, jobkit.JobkitError)
    assert issubclass(leaf, builtin)


def test_store_file_errors_are_store_errors() -> None:
    assert issubclass(jobkit.NotAJobkitDatabase, jobkit.StoreError)
    assert issubclass(jobkit.SchemaTooNew, jobkit.StoreError)
    assert issubclass(jobkit.PayloadTooLarge, jobkit.ValidationError)


def test_errors_keep_what_caused_them() -> None:
    assert jobkit.ValidationError("m", errors=["e @ params"], value=3).value == 3
    assert jobkit.PayloadTooLarge("m", size=9, limit=4, value="x").size == 9
    assert jobkit.UnknownJobError("a:b").name == "a:b"
    assert str(jobkit.UnknownJobError("a:b")) == "no job named 'a:b'"
    assert str(jobkit.UnknownJobError("a:b", "module a not found")) == "no job named 'a:b': module a not found"
    assert jobkit.StoreError("m", path="/x").path == "/x"
    assert jobkit.ScheduleError("m", value="* *").value == "* *"


def test_every_public_error_is_in_the_docstring_tree() -> None:
    doc = errors.__doc__ or ""
    for name in jobkit.__all__:
        obj = getattr(jobkit, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert name in doc, f"{name} is missing from the tree in jobkit/errors.py"


# -- bad params and results, as users see them ---------------------------------------------
@attrs.frozen
class Order:
    sku: str
    qty: int = 1
    meta: dict[str, Any] = attrs.field(factory=dict)


jobs = jobkit.Registry(max_payload_bytes=4_096)


@jobs.job(name="orders.ship")
def ship(params: Order, ctx: jobkit.Context) -> int:
    return params.qty


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"sku": "a", "qty": "2"}, "invalid params: invalid value for type, expected int @ params.qty"),
        ({"sku": "a", "qty": 2.0}, "invalid params: invalid value for type, expected int @ params.qty"),
        ({"qty": 2}, "invalid params: required field missing @ params.sku"),
        ({"sku": "a", "qtty": 2}, "invalid params: extra fields found (qtty) @ params"),
        ({"sku": "a", "meta": {"x": math.nan}}, "params.meta.x is nan; JSON cannot store NaN or infinity"),
        ({"sku": "a", "meta": {"x": [math.inf]}}, "params.meta.x[0] is inf; JSON cannot store NaN or infinity"),
        (
            {"sku": "a", "meta": {"tags": {"red"}}},
            "params.meta.tags is a set, which JSON cannot store; use a list, or declare the field as set[...]",
        ),
        (
            {"sku": "a", "meta": {"raw": b"\xff"}},
            "params.meta.raw is a bytes, which JSON cannot store; encode it as text (e.g. base64) first",
        ),
        (
            {"sku": "a", "meta": {"by_id": {1: "x"}}},
            "params.meta.by_id has the key 1 of type int; JSON objects take only string keys",
        ),
        (
            {"sku": "a" * 5_000},
            "params encode to 5,028 bytes, over the limit of 4,096 (max_payload_bytes)",
        ),
    ],
)
def test_bad_params_give_the_exact_error_and_write_nothing(store: Store, params: Any, message: str) -> None:
    for attempt in (
        lambda: ship.now(params, store=store),
        lambda: ship.later(params, store),
        lambda: ship.later_many([{"sku": "fine"}, params], store),
        lambda: ship.batch([{"sku": "fine"}, params], store=store),
    ):
        with pytest.raises(jobkit.ValidationError) as caught:
            attempt()
        assert str(caught.value).replace("params[1]", "params") == message
    assert sum(store.counts().values()) == 0


@pytest.mark.parametrize(
    ("returned", "error"),
    [
        ("three", "ValidationError: invalid result: invalid type (expected int, got str 'three') @ result"),
        (None, "ValidationError: invalid result: invalid type (expected int, got NoneType None) @ result"),
    ],
)
def test_result_that_does_not_fit_is_a_recorded_failure(store: Store, returned: Any, error: str) -> None:
    def handler(params: int, ctx: jobkit.Context) -> int:
        return returned  # type: ignore[no-any-return]

    result = jobkit.Registry().job(name="fit")(handler).now(1, store=store)
    assert (result.ok, result.error) == (False, error)
    record = store.get(result.job_id)
    assert record is not None
    assert (record.status, record.error) == (jobkit.JobStatus.FAILED, error)


def test_handler_exception_is_a_recorded_failure_with_its_traceback(store: Store) -> None:
    def handler(params: int, ctx: jobkit.Context) -> int:
        return {"a": 1}[str(params)]

    result = jobkit.Registry().job(name="keyerror")(handler).now(7, store=store)
    assert (result.ok, result.error) == (False, "KeyError: '7'")
    record = store.get(result.job_id)
    assert record is not None
    assert record.traceback is not None
    assert 'return {"a": 1}[str(params)]' in record.traceback


# -- bad SQLite files ----------------------------------------------------------------------
def _foreign(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
    conn.close()


def _foreign_wal(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('keep me')")
    conn.commit()
    conn.close()


def _text(path: Path) -> None:
    path.write_text("id,name\n1,not a database\n" * 50)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _newer(path: Path) -> None:
    jobkit.SqliteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()


def _jobkit_mark_without_version(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA application_id = {0x4A4F424B}")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()


BAD_FILES: list[tuple[str, Callable[[Path], None], type[jobkit.StoreError], str]] = [
    ("foreign", _foreign, jobkit.NotAJobkitDatabase, "a SQLite database that jobkit did not create (application_id 0)"),
    (
        "foreign-wal",
        _foreign_wal,
        jobkit.NotAJobkitDatabase,
        "a SQLite database that jobkit did not create (application_id 0)",
    ),
    ("text", _text, jobkit.NotAJobkitDatabase, "not a SQLite database"),
    ("empty", _empty, jobkit.NotAJobkitDatabase, "the file is empty, not a jobkit database"),
    (
        "newer",
        _newer,
        jobkit.SchemaTooNew,
        f"schema version {SCHEMA_VERSION + 1} is newer than this jobkit understands ({SCHEMA_VERSION}); upgrade jobkit",
    ),
    ("unversioned", _jobkit_mark_without_version, jobkit.NotAJobkitDatabase, "jobkit mark without a schema version"),
]
WAL_MODE = {"foreign-wal", "newer"}


def _sidecars(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


@pytest.mark.parametrize("case", BAD_FILES, ids=[b[0] for b in BAD_FILES])
@pytest.mark.parametrize("opener", [jobkit.SqliteStore, jobkit.open_store], ids=["SqliteStore", "open_store"])
def test_bad_file_is_refused_clearly_and_left_unchanged(tmp_path: Path, case: Any, opener: Any) -> None:
    _, make, error, message = case
    path = tmp_path / "jobs.sqlite"
    make(path)
    assert _sidecars(path) == []
    before = path.read_bytes()

    with pytest.raises(error) as caught:
        opener(str(path))
    text = str(caught.value)
    assert text.startswith(f"{path}: {message}")
    assert "untouched" in text
    assert caught.value.path == str(path)  # type: ignore[attr-defined]
    assert isinstance(caught.value, jobkit.StoreError)

    del caught
    gc.collect()
    assert path.read_bytes() == before
    assert _sidecars(path) == []


@pytest.mark.parametrize(
    ("kind", "make"),
    [
        pytest.param(
            kind,
            make,
        )
        for kind, make, *_ in BAD_FILES
    ],
)
def test_refused_file_has_no_wal_or_shm_beside_it_even_while_the_error_is_held(
    tmp_path: Path, kind: str, make: Callable[[Path], None]
) -> None:
    path = tmp_path / "jobs.sqlite"
    make(path)
    before = path.read_bytes()
    with pytest.raises(jobkit.StoreError) as caught:
        jobkit.SqliteStore(path)
    assert caught.value is not None  # the error, and the traceback it carries, are still alive here
    assert _sidecars(path) == []
    assert path.read_bytes() == before


def test_foreign_database_content_survives(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    _foreign(path)
    with pytest.raises(jobkit.NotAJobkitDatabase):
        jobkit.SqliteStore(path)
    gc.collect()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT body FROM notes").fetchall() == [("keep me",)]
    assert conn.execute("PRAGMA user_version").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'jobs'").fetchone() == (0,)
    conn.close()


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(jobkit.NotAJobkitDatabase, match="is a directory, not a database file"):
        jobkit.SqliteStore(tmp_path)


def test_missing_folder_is_a_clear_store_error(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "jobs.sqlite"
    with pytest.raises(jobkit.StoreError, match="does not exist"):
        jobkit.SqliteStore(path)
    assert not (tmp_path / "no").exists()


def test_missing_file_with_create_false(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    with pytest.raises(jobkit.StoreError, match="no such database file"):
        jobkit.SqliteStore(path, create=False)
    assert not path.exists()


@pytest.mark.parametrize("target", ["", ":memory:", "file:jobs.sqlite?mode=memory"])
def test_in_memory_sqlite_targets_point_to_memory_store(target: str) -> None:
    with pytest.raises(jobkit.StoreError, match=r"SqliteStore needs a file path.*use MemoryStore\(\)"):
        jobkit.SqliteStore(target)


def test_a_good_file_still_opens_after_a_bad_one(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite"
    _text(bad)
    with pytest.raises(jobkit.NotAJobkitDatabase):
        jobkit.SqliteStore(bad)
    with jobkit.SqliteStore(tmp_path / "good.sqlite") as store:
        assert store.health()[0]
        assert store.get(ship.later({"sku": "x"}, store)) is not None
