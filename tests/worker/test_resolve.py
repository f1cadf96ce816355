"""Which jobs a worker runs: registries, import on demand, load_registry, merge, Resolver.

Multi-process scenarios (signals, kill -9, several workers on one file) live in tests/chaos/.
Nothing here sleeps to wait: handlers and tests meet on Events, and conditions are polled
with a deadline.
"""

from __future__ import annotations

import sys
import types
from datetime import timedelta

import pytest

import jobkit
from jobkit.errors import UnknownJobError
from jobkit.model import utc_now
from jobkit.store import Store
from jobkit.worker import Report, Resolver, load_registry, merge
from jobkit.worker.resolve import JobsModuleError
from tests import worker_jobs
from tests.support import (
    COMPLETED,
    FAILED,
    PENDING,
    Background,
    burst,
    raw_job,
    record,
    status_is,
    wait_until,
)


# -- which names a worker runs --------------------------------------------------------------------
def test_with_a_registry_other_jobs_are_not_claimed_and_nothing_is_imported(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, "tests.worker_lazy", raising=False)
    others = jobkit.Registry()

    @others.job(name="t:someone_elses")
    def someone_elses(params: int, ctx: jobkit.Context) -> int:
        raise AssertionError("a worker ran a job it was not given")

    # Older than ours, so a worker that ignored names would claim them first.
    foreign = someone_elses.later(1, store)
    importable = raw_job("tests.worker_lazy:triple", "2")
    store.add([importable])
    mine = worker_jobs.add.later({"a": 1}, store)

    with Background(store, worker_jobs.jobs) as bg:
        wait_until(status_is(store, mine, COMPLETED), "the registered job")
        report = bg.stop()
    assert report == Report(claimed=1, completed=1)
    for job_id in (foreign, importable.id):
        job = record(store, job_id)
        assert (job.status, job.attempt_count, job.worker_id) == (PENDING, 0, None)
    assert "tests.worker_lazy" not in sys.modules


def test_burst_with_a_registry_returns_while_jobs_of_other_names_are_due(store: Store) -> None:
    foreign = raw_job("somebody.else:job", "1")
    store.add([foreign])
    mine = worker_jobs.add.later({"a": 1}, store)
    report = burst(store, worker_jobs.jobs, within=1.0)
    assert report == Report(claimed=1, completed=1)
    assert record(store, mine).status is COMPLETED
    assert record(store, foreign.id).status is PENDING


def test_without_a_registry_names_are_imported_on_demand(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "tests.worker_lazy", raising=False)
    job = raw_job("tests.worker_lazy:triple", "14")
    store.add([job])
    assert burst(store) == Report(claimed=1, completed=1)
    assert record(store, job.id).result == "42"
    assert "tests.worker_lazy" in sys.modules


def test_a_name_that_leads_to_no_spec_fails_alone(store: Store) -> None:
    ok = worker_jobs.add.later_many([{"a": 1}, {"a": 2, "b": 3}], store)
    unknown = {
        "tests.worker_jobs:missing": "no job named 'tests.worker_jobs:missing'",
        "tests.worker_jobs:not_a_spec": "is not a job spec",
        "tests.worker_jobs:alias": "is registered as 'elsewhere:alias'",
        "no_such_module_for_jobkit_tests:f": "cannot import 'no_such_module_for_jobkit_tests'",
        "not-a-module-path": "not of the form 'module:function'",
        "__main__:handler": "__main__",
    }
    last_tries = [raw_job(name, "1", max_attempts=1) for name in unknown]
    retried = [raw_job(name, "1", max_attempts=3) for name in unknown]
    store.add([*last_tries, *retried])
    before = utc_now()

    report = burst(store, unresolved_backoff=600)

    n = len(unknown)
    assert report == Report(claimed=2 + 2 * n, completed=2, failed=n, retried=n)
    assert [record(store, job_id).result for job_id in ok] == ["1", "5"]
    for job in [*last_tries, *retried]:
        found = record(store, job.id)
        assert found.attempt_count == 1
        assert found.error is not None
        assert f"no job named {job.job_name!r}" in found.error
        assert unknown[job.job_name] in found.error
    assert {record(store, job.id).status for job in last_tries} == {FAILED}
    for job in retried:  # as a raising handler's job would be: tried again later, attempts permitting
        found = record(store, job.id)
        assert found.status is PENDING
        assert found.scheduled_for >= before + timedelta(seconds=600 * 0.75)


@pytest.mark.parametrize(
    ("params", "complaint"),
    [
        pytest.param(
            "{not json",
            "params",
            id="not-json",
        ),
        pytest.param('{"a": "one"}', "params.a", id="wrong-type"),
        pytest.param('{"b": 1}', "params.a", id="missing-field"),
        pytest.param('{"a": 1, "zzz": 2}', "zzz", id="unknown-field"),
        pytest.param("[1, 2]", "params", id="wrong-shape"),
    ],
)
def test_corrupt_params_fail_alone(store: Store, params: str, complaint: str) -> None:
    good = worker_jobs.add.later({"a": 20, "b": 22}, store)
    corrupt = raw_job(worker_jobs.add.name, params, max_attempts=3)
    store.add([corrupt])

    assert burst(store, worker_jobs.jobs) == Report(claimed=2, completed=1, failed=1)

    assert record(store, good).result == "42"
    job = record(store, corrupt.id)
    assert (job.status, job.attempt_count) == (FAILED, 1)
    assert job.error is not None and complaint in job.error


def test_params_that_break_the_decoder_fail_alone(store: Store) -> None:
    deep = raw_job(worker_jobs.add.name, "[" * 100_000 + "]" * 100_000)
    store.add([deep])
    good = worker_jobs.add.later({"a": 1}, store)
    died = None
    try:
        report = burst(store, worker_jobs.jobs, grace=0.2)
    except RecursionError:  # kept out of the failure: pytest cannot render a traceback this deep
        died = "the worker died of a RecursionError"
    assert died is None
    assert report == Report(claimed=2, completed=1, failed=1)
    assert record(store, good).status is COMPLETED
    assert record(store, deep.id).status is FAILED


# -- load_registry and merge ------------------------------------------------------------------------------
def test_load_registry_finds_the_one_registry_of_a_module() -> None:
    assert load_registry("tests.worker_jobs") is worker_jobs.jobs
    assert load_registry("tests.worker_jobs:jobs") is worker_jobs.jobs


def test_load_registry_refuses_what_is_not_a_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"expected one jobkit\.Registry in json, found 0"):
        load_registry("json")
    with pytest.raises(ValueError, match=r"'not_a_spec' is not a jobkit\.Registry"):
        load_registry("tests.worker_jobs:not_a_spec")
    with pytest.raises(ValueError, match=r"'nothing_here' is not a jobkit\.Registry"):
        load_registry("tests.worker_jobs:nothing_here")
    two = types.ModuleType("jobkit_tests_two_registries")
    two.first, two.second = jobkit.Registry(), jobkit.Registry()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, two.__name__, two)
    with pytest.raises(ValueError, match="found 2; name it as MODULE:NAME"):
        load_registry(two.__name__)
    assert load_registry(f"{two.__name__}:second") is two.second  # type: ignore[attr-defined]
    with pytest.raises(JobsModuleError, match="no module named 'no_such_module_for_jobkit_tests' here"):
        load_registry("no_such_module_for_jobkit_tests")


def test_merge_joins_registries_and_refuses_a_name_twice() -> None:
    other = jobkit.Registry()

    @other.job(name="elsewhere:alias")
    def clash(params: int, ctx: jobkit.Context) -> int:
        return params

    @other.job(name="t:distinct")
    def distinct(params: int, ctx: jobkit.Context) -> int:
        return params

    assert merge([worker_jobs.jobs, jobkit.Registry().register(distinct)]).names() == sorted(
        [*worker_jobs.jobs.names(), "t:distinct"]
    )
    with pytest.raises(jobkit.DuplicateJobError):
        merge([worker_jobs.jobs, other])


# -- Resolver -----------------------------------------------------------------------------------------------
def test_the_resolver_finds_registered_and_importable_specs() -> None:
    registered = Resolver(worker_jobs.jobs, import_on_demand=False)
    assert registered.resolve(worker_jobs.add.name) is worker_jobs.add
    assert registered.names() == set(worker_jobs.jobs.names())

    anything = Resolver(jobkit.Registry(), import_on_demand=True)
    assert anything.names() is None
    assert anything.resolve("tests.worker_jobs:add") is worker_jobs.add
    assert anything.resolve("tests.worker_jobs:add") is worker_jobs.add


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("__main__:handler", "defined in a script run as __main__, which a worker cannot import"),
        ("tests.worker_jobs:not_a_spec", "tests.worker_jobs.not_a_spec is not a job spec"),
        ("tests.worker_jobs:Pair", "is not a job spec"),
        ("tests.worker_jobs:add.fn", "is not a job spec"),
        ("tests.worker_jobs:missing", "is not a job spec"),
        ("tests.worker_jobs:alias", "tests.worker_jobs.alias is registered as 'elsewhere:alias'"),
        ("no_such_module_for_jobkit_tests:f", "cannot import 'no_such_module_for_jobkit_tests': ModuleNotFoundError"),
        ("tests.worker_jobs", "not of the form 'module:function'"),
        (":add", "not of the form 'module:function'"),
    ],
)
def test_the_resolver_refuses_names_that_lead_to_no_spec(name: str, reason: str) -> None:
    resolver = Resolver(jobkit.Registry(), import_on_demand=True)
    for _ in range(2):  # the refusal is remembered, and stays the same
        with pytest.raises(UnknownJobError) as caught:
            resolver.resolve(name)
        assert str(caught.value).startswith(f"no job named {name!r}: ")
        assert reason in str(caught.value)
        assert caught.value.name == name


def test_the_resolver_refuses_a_main_name_even_when_main_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules["__main__"], "add", worker_jobs.add, raising=False)
    with pytest.raises(UnknownJobError, match="__main__"):
        Resolver(jobkit.Registry(), import_on_demand=True).resolve("__main__:add")


def test_a_resolver_without_import_on_demand_imports_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "tests.worker_lazy", raising=False)
    with pytest.raises(UnknownJobError, match="only the jobs given with --jobs"):
        Resolver(worker_jobs.jobs, import_on_demand=False).resolve("tests.worker_lazy:triple")
    assert "tests.worker_lazy" not in sys.modules
