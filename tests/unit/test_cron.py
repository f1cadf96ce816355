"""Cron arithmetic with chosen datetimes: aliases, steps, timezones, DST, boundaries, misfires, refusals.

Everything here is pure: each call takes the instant it works from and returns a value.
Fire times come back in UTC; the comments give the local wall time they stand for.
"""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobkit import cron
from jobkit.cron import Firing
from jobkit.errors import JobkitError, ScheduleError

UTC = timezone.utc
US = timedelta(microseconds=1)
BERLIN, NEW_YORK = "Europe/Berlin", "America/New_York"


def at(month: int, day: int, hour: int = 0, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def fires(expression: str, tz: str, after: datetime, until: datetime) -> list[datetime]:
    """Every fire time in (after, until], by repeated next_fire."""
    found = []
    while (after := cron.next_fire(expression, tz, after)) <= until:
        found.append(after)
    return found


# -- aliases and plain expressions ------------------------------------------------------
WEDNESDAY = at(3, 18, 10, 20)  # 2026-03-18 is a Wednesday


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("@yearly", at(1, 1, year=2027)),
        ("@annually", at(1, 1, year=2027)),
        ("@monthly", at(4, 1)),
        ("@weekly", at(3, 22)),  # the Sunday after
        ("@daily", at(3, 19)),
        ("@midnight", at(3, 19)),
        ("@hourly", at(3, 18, 11)),
        ("@HOURLY", at(3, 18, 11)),
        ("  @daily ", at(3, 19)),
    ],
)
def test_each_alias_fires_when_its_expansion_does(alias: str, expected: datetime) -> None:
    assert cron.next_fire(alias, "UTC", WEDNESDAY) == expected
    assert cron.latest_fire(alias, "UTC", expected) == expected
    assert cron.validate(alias, "UTC", WEDNESDAY) == expected


def test_every_alias_is_tested() -> None:
    """A new alias in cron.ALIASES needs a row in the table above."""
    tested = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
    assert set(cron.ALIASES) == tested


def test_every_five_minutes() -> None:
    assert fires("*/5 * * * *", "UTC", at(3, 18, 10, 20), at(3, 18, 10, 40)) == [
        at(3, 18, 10, 25),
        at(3, 18, 10, 30),
        at(3, 18, 10, 35),
        at(3, 18, 10, 40),
    ]
    assert cron.next_fire("*/5 * * * *", "UTC", at(3, 18, 10, 21) + timedelta(seconds=30)) == at(3, 18, 10, 25)
    assert cron.next_fire("*/5 * * * *", "UTC", at(3, 18, 23, 59)) == at(3, 19)  # across midnight


def test_fire_times_are_utc_and_aware() -> None:
    found = cron.next_fire("0 9 * * *", BERLIN, at(3, 18))
    assert found.tzinfo is UTC
    assert found == at(3, 18, 8)  # 09:00 CET


def test_next_fire_from_a_non_utc_instant_is_the_same_instant() -> None:
    tokyo = at(3, 18, 10, 20).astimezone(timezone(timedelta(hours=9)))
    assert cron.next_fire("*/5 * * * *", "UTC", tokyo) == at(3, 18, 10, 25)


# -- boundaries: a fire time exactly at the instant given ---------------------------------
def test_next_fire_is_strictly_after_and_latest_fire_is_at_or_before() -> None:
    exactly = at(3, 18, 10, 25)
    assert cron.next_fire("*/5 * * * *", "UTC", exactly) == at(3, 18, 10, 30)
    assert cron.next_fire("*/5 * * * *", "UTC", exactly - US) == exactly
    assert cron.latest_fire("*/5 * * * *", "UTC", exactly) == exactly
    assert cron.latest_fire("*/5 * * * *", "UTC", exactly - US) == at(3, 18, 10, 20)
    assert cron.latest_fire("*/5 * * * *", "UTC", exactly + timedelta(minutes=5) - US) == exactly


def test_latest_fire_of_a_sparse_expression_looks_far_back() -> None:
    assert cron.latest_fire("@yearly", "UTC", at(12, 31, 23, 59)) == at(1, 1)
    assert cron.latest_fire("0 0 29 2 *", "UTC", at(3, 18)) == at(2, 29, year=2024)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        cron.next_fire("* * * * *", "UTC", datetime(2026, 3, 18))
    with pytest.raises(ValueError, match="naive"):
        cron.latest_fire("* * * * *", "UTC", datetime(2026, 3, 18))


# -- timezones ----------------------------------------------------------------------------
def test_a_fixed_hour_is_the_schedules_local_hour() -> None:
    # 09:00 on weekdays in Tokyo (UTC+9, no DST) is midnight UTC; Wednesday 09:30 JST is past it.
    assert fires("0 9 * * 1-5", "Asia/Tokyo", at(3, 18, 0, 30), at(3, 23)) == [at(3, 19), at(3, 20), at(3, 23)]
    # Kolkata is UTC+5:30: its whole hours are half hours in UTC, its midnight 18:30 the day before.
    assert fires("0 * * * *", "Asia/Kolkata", at(3, 18, 0, 30), at(3, 18, 2, 30)) == [
        at(3, 18, 1, 30),
        at(3, 18, 2, 30),
    ]
    assert cron.next_fire("@daily", "Asia/Kolkata", at(3, 18, 0, 30)) == at(3, 18, 18, 30)


def test_the_same_expression_fires_at_different_instants_in_different_zones() -> None:
    utc = cron.next_fire("0 9 * * *", "UTC", at(7, 1))
    berlin = cron.next_fire("0 9 * * *", BERLIN, at(7, 1))  # CEST, UTC+2
    new_york = cron.next_fire("0 9 * * *", NEW_YORK, at(7, 1))  # EDT, UTC-4
    assert (utc, berlin, new_york) == (at(7, 1, 9), at(7, 1, 7), at(7, 1, 13))


# -- daylight saving time -------------------------------------------------------------------
# Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST (01:00 UTC); 2026-10-25 03:00 CEST -> 02:00 CET (01:00 UTC).
# America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT (07:00 UTC); 2026-11-01 02:00 EDT -> 01:00 EST (06:00 UTC).


def test_berlin_spring_forward_a_fixed_time_in_the_gap_runs_once_just_after_it() -> None:
    assert fires("30 2 * * *", BERLIN, at(3, 27, 12), at(3, 30, 12)) == [
        at(3, 28, 1, 30),  # 02:30 CET
        at(3, 29, 1, 0),  # 02:30 does not exist: 03:00 CEST, the first moment after the gap
        at(3, 30, 0, 30),  # 02:30 CEST
    ]


def test_berlin_spring_forward_an_hourly_job_loses_the_hour_that_does_not_exist() -> None:
    day = fires("30 * * * *", BERLIN, at(3, 28, 23), at(3, 29, 22))  # local midnight to midnight
    assert len(day) == 23
    assert at(3, 29, 0, 30) in day  # 01:30 CET
    assert at(3, 29, 1, 30) in day  # 03:30 CEST
    assert all(later - earlier == timedelta(hours=1) for earlier, later in itertools.pairwise(day))


def test_berlin_fall_back_a_fixed_time_in_the_repeated_hour_runs_once() -> None:
    assert fires("30 2 * * *", BERLIN, at(10, 23, 12), at(10, 26, 12)) == [
        at(10, 24, 0, 30),  # 02:30 CEST
        at(10, 25, 0, 30),  # 02:30 CEST, the first of the two; not again at 02:30 CET (01:30 UTC)
        at(10, 26, 1, 30),  # 02:30 CET
    ]


def test_berlin_fall_back_an_hourly_job_runs_in_both_repeated_hours() -> None:
    day = fires("30 * * * *", BERLIN, at(10, 24, 22), at(10, 25, 23))  # local midnight to midnight
    assert len(day) == 25
    assert [f for f in day if at(10, 25) <= f < at(10, 25, 3)] == [
        at(10, 25, 0, 30),  # 02:30 CEST
        at(10, 25, 1, 30),  # 02:30 CET
        at(10, 25, 2, 30),  # 03:30 CET
    ]


def test_a_wildcard_minute_at_a_fixed_hour_follows_the_wall_clock() -> None:
    """Debian's DST rule is for fixed times only: "*/20 2" has no 02:xx on the spring night, two on the fall night."""
    assert fires("*/20 2 * * *", BERLIN, at(3, 28, 12), at(3, 29, 12)) == []
    assert fires("*/20 2 * * *", BERLIN, at(10, 24, 12), at(10, 25, 12)) == [
        at(10, 25, 0, 0),  # 02:00 CEST
        at(10, 25, 0, 20),
        at(10, 25, 0, 40),
        at(10, 25, 1, 0),  # 02:00 CET
        at(10, 25, 1, 20),
        at(10, 25, 1, 40),
    ]


def test_new_york_spring_forward() -> None:
    assert fires("30 2 * * *", NEW_YORK, at(3, 6, 12), at(3, 9, 12)) == [
        at(3, 7, 7, 30),  # 02:30 EST
        at(3, 8, 7, 0),  # 02:30 does not exist: 03:00 EDT
        at(3, 9, 6, 30),  # 02:30 EDT
    ]
    assert fires("30 * * * *", NEW_YORK, at(3, 8, 5), at(3, 8, 8, 30)) == [
        at(3, 8, 5, 30),  # 00:30 EST
        at(3, 8, 6, 30),  # 01:30 EST
        at(3, 8, 7, 30),  # 03:30 EDT: 02:30 was skipped
        at(3, 8, 8, 30),  # 04:30 EDT
    ]


def test_new_york_fall_back() -> None:
    assert fires("30 1 * * *", NEW_YORK, at(10, 31, 12), at(11, 2, 12)) == [
        at(11, 1, 5, 30),  # 01:30 EDT, once
        at(11, 2, 6, 30),  # 01:30 EST the next day
    ]
    assert fires("30 * * * *", NEW_YORK, at(11, 1, 4), at(11, 1, 7, 30)) == [
        at(11, 1, 4, 30),  # 00:30 EDT
        at(11, 1, 5, 30),  # 01:30 EDT
        at(11, 1, 6, 30),  # 01:30 EST: the hour again
        at(11, 1, 7, 30),  # 02:30 EST
    ]


def test_next_fire_in_a_fall_back_overlap_is_after_now() -> None:
    """At 02:10 CET the wall clock says 02:30 is ahead, but 02:30 CEST was 40 minutes ago."""
    for minute in (0, 10, 29):
        assert cron.next_fire("30 2 * * *", BERLIN, at(10, 25, 1, minute)) == at(10, 26, 1, 30)  # 02:30 CET
        assert cron.next_fire("30 1 * * *", NEW_YORK, at(11, 1, 6, minute)) == at(11, 2, 6, 30)  # 01:30 EST


def test_latest_fire_in_a_fall_back_overlap_is_the_fixed_time_that_ran() -> None:
    # 01:10 UTC on 2026-10-25 is 02:10 CET, in the repeated hour: 02:30 CEST (00:30 UTC) ran 40 minutes ago.
    assert cron.latest_fire("30 2 * * *", BERLIN, at(10, 25, 1, 10)) == at(10, 25, 0, 30)
    # 06:10 UTC on 2026-11-01 is 01:10 EST: 01:30 EDT (05:30 UTC) ran 40 minutes ago.
    assert cron.latest_fire("30 1 * * *", NEW_YORK, at(11, 1, 6, 10)) == at(11, 1, 5, 30)


EXPRESSIONS = (
    "30 2 * * *",
    "0 2 * * *",
    "30 1 * * *",
    "59 1 * * *",
    "0 3 * * *",
    "30 * * * *",
    "*/5 * * * *",
    "*/15 2 * * *",
    "0 1-3 * * *",
    "30 2 * * 0",
    "@daily",
    "@hourly",
)
TRANSITIONS = {BERLIN: (at(3, 29, 1), at(10, 25, 1)), NEW_YORK: (at(3, 8, 7), at(11, 1, 6))}


@settings(deadline=None, max_examples=300)
@given(
    expression=st.sampled_from(EXPRESSIONS),
    zone_and_change=st.sampled_from([(z, t) for z, ts in TRANSITIONS.items() for t in ts]),
    offset=st.integers(min_value=-6 * 3_600, max_value=30 * 3_600),
)
def test_latest_fire_and_next_fire_agree_around_dst_changes(
    expression: str, zone_and_change: tuple[str, datetime], offset: int
) -> None:
    """next_fire(t) is after t, latest_fire(t) is the last fire time at or before it, even when the clocks change."""
    tz, change = zone_and_change
    instant = change + timedelta(seconds=offset)
    upcoming = cron.next_fire(expression, tz, instant)
    assert upcoming > instant, "next_fire went back in time"
    assert cron.latest_fire(expression, tz, upcoming) == upcoming
    latest = cron.latest_fire(expression, tz, instant)
    assert latest <= instant
    assert cron.next_fire(expression, tz, latest - US) == latest, "latest_fire gave a time next_fire never fires"
    assert cron.next_fire(expression, tz, latest) > instant, "latest_fire skipped a later fire time"


def test_latest_fire_does_not_trust_a_reverse_walk_that_lands_between_fire_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If cronsim's reverse walk gives a time the forward walk never fires, latest_fire looks further back."""
    real_step = cron._step
    invented = at(3, 18, 10, 24)  # not a fire time of */5

    def first_reverse_walk_invents(expression: str, tz: str, start: datetime, *, reverse: bool) -> datetime:
        if reverse and start > invented:
            return invented
        return real_step(expression, tz, start, reverse=reverse)

    monkeypatch.setattr(cron, "_step", first_reverse_walk_invents)
    assert cron.latest_fire("*/5 * * * *", "UTC", at(3, 18, 10, 24) + timedelta(seconds=30)) == at(3, 18, 10, 20)


# -- what a tick owes a schedule: due() and the misfire policy --------------------------------
def test_not_due_before_next_run_at_or_without_one() -> None:
    assert cron.due("*/5 * * * *", "UTC", at(3, 18, 10, 25), at(3, 18, 10, 25) - US) is None
    assert cron.due("*/5 * * * *", "UTC", None, at(3, 18, 10, 25)) is None


def test_due_exactly_at_next_run_at() -> None:
    firing = cron.due("*/5 * * * *", "UTC", at(3, 18, 10, 25), at(3, 18, 10, 25))
    assert firing == Firing(fire_time=at(3, 18, 10, 25), next_run_at=at(3, 18, 10, 30))


def test_a_little_late_still_runs_for_the_fire_time_it_missed() -> None:
    firing = cron.due("*/5 * * * *", "UTC", at(3, 18, 10, 25), at(3, 18, 10, 28))
    assert firing == Firing(fire_time=at(3, 18, 10, 25), next_run_at=at(3, 18, 10, 30))


def test_after_hours_of_downtime_one_run_for_the_latest_missed_time_then_the_regular_times() -> None:
    # Due at 10:25, nothing ran until 14:47: 53 fire times were missed; one run is owed, for 14:45.
    firing = cron.due("*/5 * * * *", "UTC", at(3, 18, 10, 25), at(3, 18, 14, 47))
    assert firing == Firing(fire_time=at(3, 18, 14, 45), next_run_at=at(3, 18, 14, 50))


def test_downtime_ending_exactly_on_a_fire_time_runs_that_time() -> None:
    firing = cron.due("*/5 * * * *", "UTC", at(3, 18, 10, 25), at(3, 18, 15))
    assert firing == Firing(fire_time=at(3, 18, 15), next_run_at=at(3, 18, 15, 5))


def test_days_of_downtime_for_a_daily_job_in_a_timezone() -> None:
    # 06:00 New York time (EDT, 10:00 UTC) every day; due on Monday, nothing ran until Thursday 12:00 UTC.
    firing = cron.due("0 6 * * *", NEW_YORK, at(6, 1, 10), at(6, 4, 12))
    assert firing == Firing(fire_time=at(6, 4, 10), next_run_at=at(6, 5, 10))


def test_a_run_missed_just_before_a_fall_back_overlap_is_owed_once() -> None:
    # Due at 02:30 CEST (00:30 UTC); the worker came back at 02:10 CET (01:10 UTC), when the wall clock reads
    # before 02:30 again. One run is owed, and the next is tomorrow: not 02:30 CEST again, which would be due
    # at once and fire on every tick until 02:30 CET.
    firing = cron.due("30 2 * * *", BERLIN, at(10, 25, 0, 30), at(10, 25, 1, 10))
    assert firing == Firing(fire_time=at(10, 25, 0, 30), next_run_at=at(10, 26, 1, 30))
    assert cron.due("30 2 * * *", BERLIN, firing.next_run_at, at(10, 25, 1, 11)) is None


def test_downtime_across_a_fall_back_night_runs_for_the_latest_missed_time() -> None:
    # 02:30 Berlin every day; due 2026-10-24 (00:30 UTC), nothing ran until 02:10 CET on the 25th (01:10 UTC).
    firing = cron.due("30 2 * * *", BERLIN, at(10, 24, 0, 30), at(10, 25, 1, 10))
    assert firing == Firing(fire_time=at(10, 25, 0, 30), next_run_at=at(10, 26, 1, 30))


# -- refusals ------------------------------------------------------------------------------
BOUND = 1.0  # seconds: a refusal must come quickly, whatever the expression


def refused(expression: object, tz: object = "UTC") -> ScheduleError:
    started = time.monotonic()
    with pytest.raises(ScheduleError) as caught:
        cron.validate(expression, tz, WEDNESDAY)  # type: ignore[arg-type]
    assert time.monotonic() - started < BOUND
    return caught.value


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "   ",
        "* * *",
        "* * * * * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "* * * * 8",
        "*/0 * * * *",
        "5-1 * * * *",
        "a b c d e",
        "H * * * *",
        "@reboot",
        "@every 5m",
        "@fortnightly",
    ],
)
def test_invalid_expressions_are_refused(expression: str) -> None:
    error = refused(expression)
    assert isinstance(error, ValueError) and isinstance(error, JobkitError)
    assert error.value == expression
    assert "cron expression" in str(error)


@pytest.mark.parametrize("expression", [None, 5, b"* * * * *", ["*/5", "*", "*", "*", "*"]])
def test_expressions_that_are_not_text_are_refused(expression: object) -> None:
    assert refused(expression).value == expression


@pytest.mark.parametrize("expression", ["* * * * * *", "0 */5 * * * *", "*/10 0 * * * *"])
def test_six_fields_are_refused_not_read_as_seconds(expression: str) -> None:
    """cronsim reads a sixth field as seconds: "* * * * * *" would enqueue a job every second."""
    assert "five fields" in str(refused(expression))


@pytest.mark.parametrize(
    "expression",
    [
        "0 0 30 2 *",  # 30 February
        "0 0 31 2 *",
        "0 0 31 4,6,9,11 *",  # the 31st of 30-day months
        "0 0 * 2 1#5",  # a fifth Monday in February: next in 2044, past the search bound
    ],
)
def test_expressions_that_never_fire_are_refused_quickly(expression: str) -> None:
    assert refused(expression).value == expression


def test_a_rare_expression_within_the_bound_is_accepted() -> None:
    assert cron.validate("0 0 29 2 *", "UTC", WEDNESDAY) == at(2, 29, year=2028)


@pytest.mark.parametrize("tz", ["Mars/Olympus", "", "Europe/Berlin ", "../etc/passwd", "/etc/localtime", None, 3])
def test_unknown_timezones_are_refused(tz: object) -> None:
    error = refused("*/5 * * * *", tz)
    assert error.value == tz
    assert "timezone" in str(error)


def test_the_search_bound_is_years_not_forever() -> None:
    # The same fifth-Monday-of-February expression from 2040 fires within the bound.
    assert cron.validate("0 0 * 2 1#5", "UTC", at(1, 1, year=2040)) == at(2, 29, year=2044)
