"""Defining jobs as a new user does: ``@jobs.job`` with or without parentheses, and again in a notebook."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import jobkit
from jobkit.spec import JobSpec

# What a notebook does with a cell: compile its text and run it in the user's namespace,
# whose __name__ is "__main__" (IPython's run_cell, Jupyter's kernel).
CELL = """
@jobs.job(max_attempts=2)
def double(params: int, ctx: jobkit.Context) -> int:
    return params * {factor}
"""


def run_cell(namespace: dict[str, Any], source: str, **values: Any) -> None:
    exec(compile(source.format(**values), "<cell>", "exec"), namespace)


def notebook(registry: jobkit.Registry) -> dict[str, Any]:
    return {"__name__": "__main__", "jobkit": jobkit, "jobs": registry}


# -- @jobs.job without parentheses ------------------------------------------------------------------
def test_a_bare_decorator_makes_a_spec_as_the_called_one_does() -> None:
    jobs = jobkit.Registry()

    @jobs.job
    def bare(params: int, ctx: jobkit.Context) -> str:
        return str(params)

    @jobs.job()
    def called(params: int, ctx: jobkit.Context) -> str:
        return str(params)

    assert isinstance(bare, JobSpec)
    assert bare.name == f"{__name__}:test_a_bare_decorator_makes_a_spec_as_the_called_one_does.<locals>.bare"
    assert (bare.params_type, bare.result_type, bare.max_attempts) == (int, str, 3)
    assert jobs.get(bare.name) is bare and jobs.get(called.name) is called
    assert bare.now(7).unwrap() == "7"


def test_a_bare_decorator_takes_async_handlers() -> None:
    jobs = jobkit.Registry()

    @jobs.job
    async def later(params: int, ctx: jobkit.Context) -> int:
        return params + 1

    assert isinstance(later, JobSpec) and later.is_async
    assert later.now(1).unwrap() == 2


@pytest.mark.parametrize("name", [5, b"bytes", ["a"]])
def test_a_name_that_is_not_a_str_is_refused_at_once(name: Any) -> None:
    jobs = jobkit.Registry()
    with pytest.raises(TypeError, match=r"job\(name=\.\.\.\) takes a str"):
        jobs.job(name)
    assert len(jobs) == 0


TYPED = """
import jobkit

jobs = jobkit.Registry()


@jobs.job
def bare(params: int, ctx: jobkit.Context) -> str:
    return str(params)


@jobs.job(max_attempts=2)
def called(params: list[int], ctx: jobkit.Context) -> float:
    return 1.0


@jobs.job
async def bare_async(params: int, ctx: jobkit.Context) -> bytes:
    return b""


@jobs.job(name="n")
async def called_async(params: str, ctx: jobkit.Context) -> int:
    return 1


reveal_type(bare)
reveal_type(called)
reveal_type(bare_async)
reveal_type(called_async)
reveal_type(bare.now(1).value)
reveal_type(bare_async.wait("id", jobkit.MemoryStore()))
"""


def test_mypy_strict_sees_a_typed_spec_with_and_without_parentheses(tmp_path: Path) -> None:
    (tmp_path / "typed.py").write_text(TYPED)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "typed.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PYTHONPATH": str(Path(jobkit.__file__).parent.parent), "PATH": ""},
    )
    revealed = [line.split("Revealed type is ")[1] for line in done.stdout.splitlines() if "Revealed type" in line]
    assert revealed == [
        '"jobkit.spec.JobSpec[int, str]"',
        '"jobkit.spec.JobSpec[list[int], float]"',
        '"jobkit.spec.JobSpec[int, bytes]"',
        '"jobkit.spec.JobSpec[str, int]"',
        '"str | None"',
        '"bytes"',
    ], done.stdout
    assert done.returncode == 0, done.stdout


# -- a notebook cell run again ------------------------------------------------------------------------
def test_running_a_cell_again_replaces_the_job_it_defines() -> None:
    jobs = jobkit.Registry()
    cell = notebook(jobs)
    run_cell(cell, CELL, factor=2)
    first = cell["double"]
    run_cell(cell, CELL, factor=2)  # the same cell, unchanged
    run_cell(cell, CELL, factor=3)  # edited, then run again
    assert jobs.names() == ["__main__:double"]
    assert jobs.get("__main__:double") is cell["double"] is not first
    assert cell["double"].now(5).unwrap() == 15, "the last definition is the one that runs"


def test_running_a_cell_with_a_schedule_again_replaces_the_declaration() -> None:
    jobs = jobkit.Registry()
    cell = notebook(jobs)
    source = CELL + '\njobs.cron("{expression}", double, 1, name="every-so-often")\n'
    run_cell(cell, source, factor=2, expression="*/5 * * * *")
    run_cell(cell, source, factor=2, expression="0 * * * *")
    [entry] = jobs.crons()
    assert (entry.expression, entry.spec) == ("0 * * * *", cell["double"])

    @jobs.job(name="other")
    def other(params: int, ctx: jobkit.Context) -> int:
        return params

    with pytest.raises(jobkit.ScheduleError, match="'every-so-often' is already declared"):
        jobs.cron("0 * * * *", other, 1, name="every-so-often")
    with pytest.raises(jobkit.ScheduleError, match="'every-so-often' is already declared"):
        jobs.cron("0 * * * *", cell["double"], 1, name="every-so-often")  # the same spec, declared twice
    assert jobs.crons() == [entry]


def test_two_different_functions_under_one_name_still_conflict() -> None:
    jobs = jobkit.Registry()
    cell = notebook(jobs)
    run_cell(cell, '@jobs.job(name="send")\ndef send_mail(params: str, ctx: jobkit.Context) -> None: ...\n')
    with pytest.raises(jobkit.DuplicateJobError) as caught:
        run_cell(cell, '@jobs.job(name="send")\ndef send_sms(params: str, ctx: jobkit.Context) -> None: ...\n')
    # Two handlers, one name: the advice is to rename one of them, and it fits.
    assert str(caught.value) == (
        "a job named 'send' is already registered; give one of them another name with job(name=...)"
    )
    assert jobs.get("send") is cell["send_mail"]
    assert "send_sms" not in cell


def test_a_lambda_is_never_taken_for_the_same_definition() -> None:
    from jobkit.spec import spec_from_function

    jobs = jobkit.Registry().register(spec_from_function(lambda params, ctx: 1, name="l"))
    with pytest.raises(jobkit.DuplicateJobError):
        jobs.register(spec_from_function(lambda params, ctx: 2, name="l"))


@pytest.fixture
def module_dir(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("reloaded_jobs", None)


def test_reloading_a_module_replaces_its_jobs(module_dir: Path) -> None:
    source = textwrap.dedent(
        """
        import jobkit

        jobs = jobkit.Registry()
        shared = jobkit.Registry()


        @jobs.job
        def square(params: int, ctx: jobkit.Context) -> int:
            return params * params
        """
    )
    (module_dir / "reloaded_jobs.py").write_text(source)
    module = importlib.import_module("reloaded_jobs")
    outside = jobkit.Registry().register(module.square)  # a registry that outlives the reload
    module = importlib.reload(module)
    outside.register(module.square)
    assert outside.get("reloaded_jobs:square") is module.square
