"""Hostile enqueue input on every store: a ValidationError that names the field, and nothing written.

Each of these raised something else before (UnicodeEncodeError from the SQLite driver,
OverflowError, RecursionError, a bare ValueError), and on SQLite some only once the
row was being written.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jobkit
from jobkit.store import Store
from tests.unit.run_jobs import _count

jobs = jobkit.Registry()


@attrs.frozen
class Upload:
    path: str
    data: Any = None


@jobs.job(name="upload")
def upload(params: Upload, ctx: jobkit.Context) -> None:
    pass


@jobs.job(name="anything")
def anything(params: Any, ctx: jobkit.Context) -> None:
    pass


def _deep(levels: int) -> Any:
    value: Any = []
    for _ in range(levels):
        value = [value]
    return value


EAST, WEST = timezone(timedelta(hours=5)), timezone(timedelta(hours=-5))
NAME = "caf\udce9.txt"  # os.fsdecode(b"caf\xe9.txt")


@pytest.mark.parametrize(
    ("params", "options", "names"),
    [
        ({"path": NAME}, {}, "params.path holds text that UTF-8 cannot encode"),
        ({"path": "a", "data": {"k": [NAME]}}, {}, "params.data.k[0] holds text"),
        (Upload("a", {NAME: 1}), {}, "params.data (the key"),
        ({"path": "a"}, {"correlation_id": f"order-{NAME}"}, "correlation_id holds text"),
        ({"path": "a"}, {"priority": 2**63}, "priority must be from"),
        ({"path": "a"}, {"priority": -(2**63) - 1}, "priority must be from"),
        ({"path": "a"}, {"max_attempts": 2**64}, "max_attempts must be at most"),
        ({"path": "a"}, {"at": datetime(9999, 12, 31, 23, tzinfo=WEST)}, "at=datetime.datetime(9999"),
        ({"path": "a"}, {"at": datetime(1, 1, 1, 1, tzinfo=EAST)}, "at=datetime.datetime(1,"),
        ({"path": "a", "data": _deep(5000)}, {}, "params nest too deeply"),
        ({"path": "a", "data": [1, 10**5000]}, {}, "params.data[1] is an int too long"),
    ],
    ids=[
        "surrogate",
        "nested-surrogate",
        "surrogate-key",
        "correlation-id",
        "priority-high",
        "priority-low",
        "max-attempts",
        "at-9999",
        "at-year-1",
        "deep",
        "long-int",
    ],
)
def test_later_and_later_many_refuse_hostile_input_naming_the_field(
    store: Store, params: Any, options: dict[str, Any], names: str
) -> None:
    with pytest.raises(jobkit.ValidationError) as refused:
        upload.later(params, store, **options)
    assert names in str(refused.value)
    with pytest.raises(jobkit.ValidationError):
        upload.now(params, store) if not options else upload.later_many([params], store, **options)
    assert _count(store) == 0


def test_later_many_refuses_the_whole_call_naming_the_item(store: Store) -> None:
    with pytest.raises(jobkit.ValidationError) as refused:
        upload.later_many([{"path": "a"}, {"path": "b"}, {"path": NAME}], store)
    assert str(refused.value).startswith("params[2].path holds text that UTF-8 cannot encode")
    with pytest.raises(jobkit.ValidationError, match=r"^params\[1\] nest too deeply"):
        anything.later_many([1, _deep(5000)], store)
    with pytest.raises(jobkit.ValidationError, match=r"^params\[0\] is an int too long"):
        anything.later_many([10**5000], store)
    assert _count(store) == 0


def test_the_edges_of_the_ranges_are_accepted(store: Store) -> None:
    first = upload.later({"path": "a"}, store, priority=2**63 - 1, max_attempts=2**63 - 1)
    second = upload.later({"path": "b"}, store, priority=-(2**63), at=datetime(1, 1, 1, tzinfo=timezone.utc))
    third = upload.later({"path": "c"}, store, at=datetime(9999, 12, 31, 18, tzinfo=WEST))
    records = [store.get(i) for i in (first, second, third)]
    assert [(r.priority, r.max_attempts) for r in records if r] == [(2**63 - 1, 2**63 - 1), (-(2**63), 3), (0, 3)]
    assert all(r and r.scheduled_for.utcoffset() == timedelta(0) for r in records)


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.text(),
    priority=st.integers(min_value=-(2**70), max_value=2**70),
)
def test_any_text_and_any_priority_is_stored_or_refused_with_a_validation_error(
    store: Store, text: str, priority: int
) -> None:
    before = _count(store)
    try:
        job_id = anything.later({"name": text}, store, correlation_id=text, priority=priority)
    except jobkit.ValidationError:
        assert _count(store) == before
        return
    stored = store.get(job_id)
    assert stored is not None and stored.correlation_id == text and stored.priority == priority
