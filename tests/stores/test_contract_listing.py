"""The Store contract, the listing filters: text, created_from and created_until, with every other filter and paging.

Every test here runs on MemoryStore, SqliteStore and PostgresStore (the ``store`` fixture).
"""

from __future__ import annotations

from typing import Any

import pytest

from jobkit.errors import ValidationError
from jobkit.model import JobStatus
from jobkit.store import Store
from tests.stores.contract import NAIVE, US, at, claim_one, snapshot
from tests.stores.test_contract_reading import newest_first, page_through
from tests.support import T0, make_job

PARAMS = {
    "png": '{"url": "A.PNG", "w": 3}',
    "jpg": '{"url": "b.jpg", "w": 30}',
    "umlaut": '{"name": "Ünïcode Straße"}',
    "percent": '{"p": "50%_off"}',
    "letters": '{"p": "50xyoff"}',
    "empty": "{}",
}


@pytest.fixture
def texts(store: Store) -> None:
    """A job for each of PARAMS, created a second apart in that order, and one failed with an error."""
    store.add([make_job(key, params=params, created_at=at(n)) for n, (key, params) in enumerate(PARAMS.items())])
    store.add(
        [
            make_job(
                "failed",
                params='{"url": "c.gif"}',
                status=JobStatus.FAILED,
                error="ValueError: Could not OPEN c.gif",
                created_at=at(10),
                completed_at=at(11),
            )
        ]
    )


def ids(store: Store, **filters: Any) -> list[str]:
    return [job.id for job in store.list_jobs(limit=10**6, **filters)]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("url", ["failed", "jpg", "png"]),
        ("a.png", ["png"]),  # ASCII letters match in either case
        ("URL", ["failed", "jpg", "png"]),
        ('"w": 3', ["jpg", "png"]),  # the JSON text as stored
        ("could not open", ["failed"]),  # the error too
        ("c.GIF", ["failed"]),  # in params and error: listed once
        ("ü", []),  # only ASCII letters are folded
        ("Ü", ["umlaut"]),
        ("STRASSE", []),
        ("straße", ["umlaut"]),
        ("%_", ["percent"]),  # no wildcards: % and _ are themselves
        ("_", ["percent"]),
        ("%", ["percent"]),
        ("50", ["letters", "percent"]),
        ("{}", ["empty"]),
        ("nothing like it", []),
    ],
)
def test_text_keeps_jobs_whose_params_or_error_hold_it(store: Store, texts: None, text: str, found: list[str]) -> None:
    assert ids(store, text=text) == found


def test_text_combines_with_the_other_filters(store: Store, texts: None) -> None:
    claim_one(store, "jpg", now=at(20))
    assert ids(store, text="URL", status=JobStatus.PENDING) == ["png"]
    assert ids(store, text="url", status=JobStatus.RUNNING) == ["jpg"]
    assert ids(store, text="url", status=JobStatus.FAILED) == ["failed"]
    assert ids(store, text="url", status=JobStatus.COMPLETED) == []
    assert ids(store, text="url", name="shop.tasks:resize", created_from=at(1)) == ["failed", "jpg"]
    assert ids(store, text="url", queue="default", created_until=at(10)) == ["jpg", "png"]
    assert ids(store, text="url", correlation_id="none") == []
    assert [j.id for j in store.list_jobs(text="url", limit=2)] == ["failed", "jpg"]
    assert [j.id for j in store.list_jobs(text="url", after=(at(1), "jpg"))] == ["png"]


def test_created_from_is_inclusive_and_created_until_exclusive(store: Store) -> None:
    store.add([make_job(f"job-{n}", created_at=at(n)) for n in range(6)])
    store.add([make_job("job-3b", created_at=at(3) + US), make_job("job-3a", created_at=at(3))])
    assert ids(store, created_from=at(3)) == ["job-5", "job-4", "job-3b", "job-3a", "job-3"]
    assert ids(store, created_until=at(3)) == ["job-2", "job-1", "job-0"]
    assert ids(store, created_from=at(3), created_until=at(3) + US) == ["job-3a", "job-3"]
    assert ids(store, created_from=at(1), created_until=at(1)) == []
    assert ids(store, created_from=at(4), created_until=at(2)) == []
    assert ids(store, created_from=at(2), created_until=at(4), after=(at(3), "job-3a")) == ["job-3", "job-2"]


def test_times_in_another_zone_are_the_same_instants(store: Store) -> None:
    from datetime import timedelta, timezone

    store.add([make_job(f"job-{n}", created_at=at(n)) for n in range(4)])
    elsewhere = timezone(timedelta(hours=-5))
    assert ids(store, created_from=at(1).astimezone(elsewhere), created_until=at(3).astimezone(elsewhere)) == [
        "job-2",
        "job-1",
    ]


@pytest.mark.parametrize(
    "filters",
    [
        {"text": '"name": "b"'},  # in either case
        {"text": "A", "status": JobStatus.CANCELLED},
        {"created_from": at(5), "created_until": at(20)},
        {"created_from": at(3), "status": JobStatus.PENDING, "text": '"n": 1'},
        {"created_until": at(20), "name": "b:two", "text": "N"},
    ],
    ids=",".join,
)
def test_paging_keeps_to_the_new_filters(store: Store, filters: dict[str, Any]) -> None:
    jobs = [
        make_job(
            f"job-{n:02d}",
            job_name="a:resize" if n % 2 else "b:two",
            params=f'{{"n": {n % 4}, "Name": "{"ABC"[n % 3]}"}}',
            created_at=at(n // 2),  # two jobs at each time
        )
        for n in range(50)
    ]
    store.add(jobs)
    for job in jobs[::5]:
        store.cancel(job.id, now=at(100))
    listed = store.list_jobs(limit=10**6, **filters)
    assert 3 < len(listed) < 50  # the filter matters, and there is more than one page of 3
    wanted = {job.id for job in listed}
    expected = newest_first([job for job in jobs if job.id in wanted])
    for limit in (10, 3):
        pages = page_through(store, limit, **filters)
        assert all(len(page) == limit for page in pages[:-1])
        assert [job_id for page in pages for job_id in page] == expected


# -- refused ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("filters", "named"),
    [
        ({"text": ""}, "text"),
        ({"text": "", "status": JobStatus.PENDING}, "text"),
        ({"text": 42}, "text"),
        ({"text": "a\x00b"}, "text"),
        ({"text": "\ud800"}, "text"),
        ({"created_from": NAIVE}, "created_from"),
        ({"created_until": NAIVE}, "created_until"),
        ({"created_from": "2026-01-01T00:00:00Z"}, "created_from"),
        ({"created_until": 1767225600}, "created_until"),
        ({"after": (NAIVE, "a")}, "after"),
        ({"after": "a"}, "after"),
        ({"after": (T0, 7)}, "after"),
    ],
    ids=repr,
)
def test_bad_filters_are_refused_naming_them(store: Store, filters: dict[str, Any], named: str) -> None:
    store.add([make_job("a"), make_job("b", status=JobStatus.COMPLETED, completed_at=T0)])
    before = snapshot(store)
    with pytest.raises(ValidationError, match=rf"^{named}\b") as refused:
        store.list_jobs(**filters)
    assert isinstance(refused.value, ValueError)
    assert refused.value.value == next(iter(filters.values()))
    assert snapshot(store) == before


# -- cursor_after: where a listing that reads about n jobs ends -------------------------------
def test_cursor_after_is_the_nth_job_newest_first_counting_every_job(store: Store) -> None:
    # Two jobs share a creation time: the cursor orders them by id, as list_jobs does.
    store.add([make_job(f"j{n}", created_at=at(n // 2), status=JobStatus.PENDING) for n in range(7)])
    claim_one(store, "j3")  # a running job counts like any other
    order = [(job.created_at, job.id) for job in store.list_jobs(limit=100)]
    assert [store.cursor_after(n) for n in range(1, 8)] == order
    assert store.cursor_after(8) is None, "fewer jobs than that follow"
    assert store.cursor_after(2, after=order[2]) == order[4]
    assert store.cursor_after(4, after=order[2]) == order[6]
    assert store.cursor_after(5, after=order[2]) is None
    assert store.cursor_after(1, after=order[6]) is None


def test_a_listing_bounded_by_cursor_after_reads_on_without_gap_or_repeat(store: Store, texts: None) -> None:
    """created_from the cursor's time, then created_until it: every match once, as an unbounded listing has them."""
    store.add([make_job(f"twin{n}", params='{"url": "twin"}', created_at=at(20)) for n in range(3)])
    everything = ids(store, text="url")
    seen: list[str] = []
    until = None
    for _ in range(20):
        edge = store.cursor_after(2, after=None if until is None else (until, ""))
        bounded = {"created_from": edge[0]} if edge else {}
        seen += ids(store, text="url", **bounded, **({"created_until": until} if until else {}))
        if edge is None:
            break
        until = edge[0]
    assert seen == everything


@pytest.mark.parametrize(
    ("count", "after", "named"),
    [(0, None, "count"), (-1, None, "count"), (True, None, "count"), ("2", None, "count"), (1, (NAIVE, "x"), "after")],
    ids=["zero", "negative", "bool", "text", "naive-after"],
)
def test_cursor_after_refuses_bad_arguments_naming_them(store: Store, count: Any, after: Any, named: str) -> None:
    store.add([make_job("only", created_at=at(0))])
    before = snapshot(store)
    with pytest.raises(ValidationError, match=named):
        store.cursor_after(count, after=after)
    assert snapshot(store) == before
