"""The dashboard's pure parts: the filter and cursor in URLs, the chart's geometry, the run-time histogram, SSE."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobkit.errors import ValidationError
from jobkit.model import JobStatus
from jobkit.web.filters import FIELDS, JobFilter, format_cursor, parse_cursor, parse_time
from jobkit.web.security import check_bind, csrf_token, parse_auth, token_matches
from jobkit.web.tally import BUCKETS, STEP, WINDOW, Bar, Histogram
from jobkit.web.views import CHART_HEIGHT, CHART_WIDTH, actions_for, chart
from tests.support import T0, make_job

UTC = timezone.utc

values = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=30).filter(
    lambda text: text == text.strip() and text != ""
)
zones = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))])
whole_seconds = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=zones).map(
    lambda moment: moment.replace(microsecond=0)
)
filters = st.builds(
    JobFilter,
    status=st.none() | st.sampled_from(list(JobStatus)),
    queue=st.none() | values,
    name=st.none() | values,
    correlation_id=st.none() | values,
    text=st.none() | values,
    created_from=st.none() | whole_seconds,
    created_until=st.none() | whole_seconds,
)


# -- the filter -----------------------------------------------------------------------------
@given(filters)
def test_a_filter_survives_its_query_string(chosen: JobFilter) -> None:
    assert JobFilter.parse(chosen.query()) == chosen
    url = chosen.url("/jobs")
    again = JobFilter.parse(dict(parse_qsl(urlsplit(url).query, keep_blank_values=True)))
    assert again == chosen
    assert set(chosen.query()) <= set(FIELDS)


ids = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)
moments = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=zones)


@given(filters, moments, ids)
def test_a_paging_url_keeps_the_filter_and_the_cursor(chosen: JobFilter, created: datetime, job_id: str) -> None:
    url = chosen.url("/jobs", after=format_cursor(created, job_id))
    fields = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    assert JobFilter.parse(fields) == chosen
    assert parse_cursor(fields["after"]) == (created, job_id)


def test_an_empty_filter_is_the_bare_url() -> None:
    assert JobFilter().url("/jobs") == "/jobs"
    assert JobFilter().is_empty()
    assert JobFilter().describe() == "every job"
    assert JobFilter.parse({"status": "", "queue": "  ", "text": ""}) == JobFilter()


def test_a_filter_describes_itself() -> None:
    chosen = JobFilter.parse({"status": "failed", "queue": "emails", "created_from": "2026-01-01T10:00"})
    assert chosen.describe() == "status=failed, queue=emails, created_from=2026-01-01T10:00:00"
    assert chosen.store_arguments()["created_from"] == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert chosen.store_arguments()["status"] is JobStatus.FAILED


def test_a_filter_time_keeps_its_fraction_of_a_second() -> None:
    # a URL may say it (a link, a script); the page after it, and a bulk action's form, must mean the same jobs
    chosen = JobFilter.parse({"created_from": "2026-01-01T00:00:10.500000", "created_until": "2026-01-01T00:00:11.25"})
    assert JobFilter.parse(chosen.query()) == chosen


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-04T19:00", datetime(2026, 12, 4, 19, tzinfo=UTC)),
        ("2026-12-04T19:00:05", datetime(2026, 12, 4, 19, 0, 5, tzinfo=UTC)),
        ("2026-12-04T19:00:05Z", datetime(2026, 12, 4, 19, 0, 5, tzinfo=UTC)),
        ("2026-12-04T21:00:05+02:00", datetime(2026, 12, 4, 19, 0, 5, tzinfo=UTC)),
        (" 2026-12-04 ", datetime(2026, 12, 4, tzinfo=UTC)),
    ],
)
def test_times_are_read_as_utc_unless_they_say_otherwise(text: str, expected: datetime) -> None:
    assert parse_time("created_from", text) == expected


@pytest.mark.parametrize("field", ["created_from", "created_until"])
@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "12:00", "2026-12-04T25:00"])
def test_a_bad_time_names_its_field(field: str, text: str) -> None:
    with pytest.raises(ValidationError, match=rf"^{field} must be a time") as caught:
        JobFilter.parse({field: text})
    assert caught.value.value == text


def test_a_bad_status_names_the_statuses() -> None:
    with pytest.raises(ValidationError, match=r"^status must be one of pending, running, completed, failed, cancelled"):
        JobFilter.parse({"status": "done"})


# -- the cursor -----------------------------------------------------------------------------
@given(moments, ids)
def test_a_cursor_survives_its_text(created: datetime, job_id: str) -> None:
    assert parse_cursor(format_cursor(created, job_id)) == (created, job_id)


@pytest.mark.parametrize("text", ["garbage", "2026-01-01T00:00:00+00:00~", "~01a2", "soon~01a2"])
def test_a_bad_cursor_names_after(text: str) -> None:
    with pytest.raises(ValidationError, match=r"^after "):
        parse_cursor(text)


def test_no_cursor_is_the_first_page() -> None:
    assert parse_cursor(None) is None
    assert parse_cursor("") is None


# -- the chart ------------------------------------------------------------------------------
bars = st.lists(
    st.builds(Bar, at=st.just(T0), completed=st.integers(0, 10**6), failed=st.integers(0, 10**6)),
    min_size=1,
    max_size=int(WINDOW / STEP),
)


@given(bars)
def test_no_bar_is_taller_than_the_box_and_the_peak_fills_it(drawn: list[Bar]) -> None:
    made = chart(drawn)
    assert made.peak == max(bar.completed + bar.failed for bar in drawn)
    assert made.completed == sum(bar.completed for bar in drawn)
    assert made.failed == sum(bar.failed for bar in drawn)
    assert (made.width, made.height) == (CHART_WIDTH, CHART_HEIGHT)
    for bar in made.bars:
        assert bar.completed >= 0 and bar.failed >= 0
        assert bar.completed + bar.failed <= CHART_HEIGHT + 1e-9
        assert bar.x >= 0 and bar.x + bar.width <= CHART_WIDTH + 1e-9
    if made.peak:
        assert max(bar.completed + bar.failed for bar in made.bars) == pytest.approx(CHART_HEIGHT)
    xs = [bar.x for bar in made.bars]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)


def test_an_idle_hour_is_a_flat_chart() -> None:
    made = chart([Bar(T0 + STEP * n, 0, 0) for n in range(60)])
    assert made.peak == 0
    assert all(bar.completed == bar.failed == 0 for bar in made.bars)
    assert chart([]).bars == [] and chart([]).peak == 0


def test_a_bar_is_labelled_with_its_minute_and_counts() -> None:
    (bar,) = chart([Bar(datetime(2026, 1, 1, 9, 5, tzinfo=UTC), 3, 1)]).bars
    assert bar.label == "09:05Z: 3 completed, 1 failed"
    assert bar.completed == pytest.approx(CHART_HEIGHT * 3 / 4) and bar.failed == pytest.approx(CHART_HEIGHT / 4)


# -- the histogram --------------------------------------------------------------------------
@given(st.lists(st.floats(0, 10_000, allow_nan=False)))
def test_histogram_buckets_are_cumulative(seconds: list[float]) -> None:
    seen = Histogram()
    for value in seconds:
        seen.observe(value)
    assert seen.total == len(seconds)
    assert seen.seconds == pytest.approx(sum(seconds))
    assert seen.counts == [sum(1 for value in seconds if value <= bound) for bound in BUCKETS]
    assert seen.counts == sorted(seen.counts)


def test_a_run_on_a_bound_counts_in_that_bucket() -> None:
    seen = Histogram()
    seen.observe(0.5)
    assert seen.counts[BUCKETS.index(0.5)] == 1
    assert seen.counts[BUCKETS.index(0.25)] == 0


# -- actions, auth, the event stream --------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (JobStatus.PENDING, ["cancel"]),
        (JobStatus.RUNNING, ["cancel"]),
        (JobStatus.COMPLETED, ["purge"]),
        (JobStatus.FAILED, ["retry", "purge"]),
        (JobStatus.CANCELLED, ["retry", "purge"]),
    ],
)
def test_each_status_offers_its_actions(status: JobStatus, expected: list[str]) -> None:
    assert actions_for(make_job("j", status=status)) == expected


@pytest.mark.parametrize("text", ["nocolon", ":pw", "user:", ""])
def test_auth_needs_both_parts(text: str) -> None:
    with pytest.raises(ValidationError, match="USER:PASSWORD"):
        parse_auth(text)
    assert parse_auth("u:p:q") == ("u", "p:q")


def test_only_loopback_goes_without_auth() -> None:
    for host in ("127.0.0.1", "localhost", "::1"):
        check_bind(host, None)
    for host in ("0.0.0.0", "::", "10.0.0.1", "127.0.0.2"):
        with pytest.raises(ValidationError, match="--auth"):
            check_bind(host, None)
        check_bind(host, ("u", "p"))


def test_the_token_is_the_secrets() -> None:
    assert token_matches(b"one", csrf_token(b"one"))
    assert not token_matches(b"two", csrf_token(b"one"))
    assert not token_matches(b"one", None)
    assert not token_matches(b"one", "")


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_a_time_that_utc_cannot_hold_is_refused_naming_its_field(text: str) -> None:
    with pytest.raises(ValidationError, match=r"^created_from "):
        JobFilter.parse({"created_from": text}).query()
