"""The ``--processes`` supervisor: children never outlive it, and any child that exits is replaced.

Real processes and real signals; every process a test starts is ended by its pid, and
every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator

import pytest

from jobkit.model import JobStatus
from tests.chaos.chaos_jobs import Nap, nap
from tests.chaos.harness import ROOT, Harness, Proc, children_of, process_state, stop_all, wait_until
from tests.support import TIMEOUT

pytestmark = pytest.mark.slow

OPTIONS = ("--processes", "2", "--concurrency", "1", "--poll-interval", "0.1")


def gone(pid: int) -> bool:
    """Whether process *pid* has ended (a zombie that nobody has reaped yet has ended too)."""
    return process_state(pid) in ("", "Z")


@contextlib.contextmanager
def ended_by_pid(pids: Iterable[int] | None = None) -> Iterator[set[int]]:
    """A set of pids the test adds to; whichever still runs at the end is SIGKILLed by its pid."""
    found = set(pids or ())
    try:
        yield found
    finally:
        for pid in found:
            if not gone(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def at_work(h: Harness, supervisor: Proc, count: int) -> set[int]:
    """The supervisor's children once *count* of them have started a job (else an empty set: keep waiting)."""
    children = children_of(supervisor.pid)
    return children if len(children) == count and children <= {t.pid for t in h.traces()} else set()


def test_children_stop_when_the_supervisor_is_sigkilled_and_give_their_jobs_back(h: Harness) -> None:
    # A lock far longer than the test: a job is pending again only if its worker gave it back.
    long = nap.later_many([Nap([30.0])] * 2, h.store)
    supervisor = h.worker(*OPTIONS, "--lock-timeout", "600", "--grace", "0.2", name="supervisor")
    with ended_by_pid() as orphans:
        children = h.wait(lambda: at_work(h, supervisor, 2), 15, "both children to start a job")
        orphans |= children

        supervisor.signal(signal.SIGKILL)
        assert supervisor.wait_exit(5) == -signal.SIGKILL

        wait_until(lambda: all(gone(pid) for pid in children), 15, "every child to end", describe=h.describe)
        records = h.records()
        assert [(records[i].status, records[i].attempt_count) for i in long] == [(JobStatus.PENDING, 0)] * 2, (
            supervisor.tail(40)
        )
        # Each stopped gracefully (one SIGTERM), not at once: a second would not give jobs back.
        assert supervisor.stderr().count("gave back 1 unfinished jobs") == 2, supervisor.tail()


def test_a_restarted_supervisor_leaves_no_orphans_behind(h: Harness) -> None:
    ids = nap.later_many([Nap([0.2])] * 24, h.store)
    with ended_by_pid() as started:
        first = h.worker(*OPTIONS, "--lock-timeout", "1", "--grace", "0.2", name="first")
        orphans = h.wait(lambda: at_work(h, first, 2), 15, "the first supervisor's children to work")
        started |= orphans
        first.signal(signal.SIGKILL)
        first.wait_exit(5)
        second = h.worker(*OPTIONS, "--lock-timeout", "1", name="second")
        wait_until(lambda: all(gone(pid) for pid in orphans), 15, "the orphans to end", describe=h.describe)
        h.wait(lambda: h.all_done(ids), 20, "every job completed by the second supervisor")
        stop_all([second])


def test_children_stopped_with_sigterm_are_replaced_and_the_jobs_drain(h: Harness) -> None:
    ids = nap.later_many([Nap([0.2])] * 30, h.store)
    supervisor = h.worker(*OPTIONS, "--lock-timeout", "5", name="supervisor")
    first = h.wait(lambda: at_work(h, supervisor, 2), 15, "both children to start jobs")
    for child in first:  # each finishes its job and exits 0, as if an operator had stopped it
        os.kill(child, signal.SIGTERM)

    h.wait(lambda: at_work(h, supervisor, 2) - first == children_of(supervisor.pid), 15, "two new children at work")
    h.wait(lambda: h.all_done(ids), 20, "every job completed")
    for child in first:
        assert f"worker {child} exited with 0; starting another" in supervisor.stderr(), supervisor.tail(30)
    assert supervisor.alive(), "the supervisor exited with jobs pending"
    stop_all([supervisor])
    assert not children_of(supervisor.pid)
    h.assert_clean()


FLAKY_JOBS = """
import os
if os.environ.get("JOBKIT_SUPERVISED") and os.path.exists(os.environ["FLAKY_FLAG"]):
    raise RuntimeError("this child cannot start while the flag file is there")
from tests.chaos.chaos_jobs import jobs
"""


def test_children_that_cannot_start_are_restarted_ever_later_until_they_can(h: Harness) -> None:
    modules, flag = h.folder / "modules", h.folder / "flag"
    modules.mkdir()
    (modules / "flaky_jobs.py").write_text(FLAKY_JOBS)
    h.env.update(PYTHONPATH=str(modules), FLAKY_FLAG=str(flag))
    argv = [sys.executable, "-m", "jobkit.worker", str(h.db), "--jobs", "flaky_jobs", "--processes", "2"]
    supervisor = h.spawn([*argv, "--concurrency", "1", "--poll-interval", "0.1", "--lock-timeout", "5"], "supervisor")
    h.wait(lambda: supervisor.workers_started() == 2, 15, "both children to start")
    children = children_of(supervisor.pid)
    flag.touch()  # from now on a new child exits 2 at once
    os.kill(min(children), signal.SIGKILL)  # the other goes on working

    delays = re.compile(r"exited with 2; starting another in (\d+\.\d)s")
    wait_until(lambda: len(delays.findall(supervisor.stderr())) >= 2, 20, "two failed starts", describe=h.describe)
    found = [float(d) for d in delays.findall(supervisor.stderr())]
    assert found[:2] == [1.0, 2.0], supervisor.tail(30)  # after 0.5 s for the child that was killed

    flag.unlink()
    more = nap.later_many([Nap([0.1])] * 2, h.store)
    h.wait(lambda: h.all_done(more), 30, "a child that could start to run the new jobs")
    stop_all([supervisor])


def test_a_burst_supervisor_exits_0_once_every_child_found_nothing_due(h: Harness) -> None:
    ids = nap.later_many([Nap([0.1])] * 6, h.store)
    supervisor = h.worker(*OPTIONS, "--lock-timeout", "5", "--burst", name="supervisor")
    assert supervisor.wait_exit(30) == 0, supervisor.tail()
    assert h.all_done(ids)
    assert "starting another" not in supervisor.stderr()


# -- a child's two ways of noticing that its parent is gone ------------------------------------------
CHILD_OF_A_PIPE = """
import signal, sys
from jobkit.worker.supervisor import watch_parent_pipe
watch_parent_pipe(int(sys.argv[1]))
print("watching", flush=True)
signal.pause()
"""

PARENT_OF_AN_ARMED_CHILD = """
import signal, subprocess, sys
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
print(child.pid, flush=True)
signal.pause()
"""

ARMED_CHILD = """
import signal
from jobkit.worker.supervisor import die_with_parent
print("armed" if die_with_parent() else "unarmed", flush=True)
signal.pause()
"""


def python(code: str, *args: str, **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-c", code, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True, **popen
    )


def test_a_child_stops_when_the_pipe_from_its_parent_reads_end_of_file() -> None:
    read_end, write_end = os.pipe()
    child = python(CHILD_OF_A_PIPE, str(read_end), pass_fds=(read_end,))
    try:
        os.close(read_end)
        assert child.stdout is not None and child.stdout.readline() == "watching\n"
        assert child.poll() is None
        os.close(write_end)  # what the kernel does when the parent dies, however it dies
        assert child.wait(TIMEOUT) == -signal.SIGTERM
    finally:
        child.kill()
        child.wait(TIMEOUT)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_on_linux_a_child_gets_sigterm_when_its_parent_is_sigkilled() -> None:
    parent = python(PARENT_OF_AN_ARMED_CHILD, ARMED_CHILD)
    with ended_by_pid() as started:
        try:
            assert parent.stdout is not None
            lines = {parent.stdout.readline().strip() for _ in range(2)}
            assert "armed" in lines, lines
            (pid,) = (int(line) for line in lines if line.isdigit())
            started.add(pid)
            assert not gone(pid)
            parent.kill()
            parent.wait(TIMEOUT)
            wait_until(lambda: gone(pid), TIMEOUT, "the child of the killed parent to end")
        finally:
            parent.kill()
            parent.wait(TIMEOUT)


def test_a_child_whose_supervisor_died_before_it_could_watch_stops_at_once() -> None:
    env = {**os.environ, "JOBKIT_SUPERVISOR_PID": "1"}  # not this child's parent: that one is gone
    child = python(
        "import signal\nfrom jobkit.worker.supervisor import guard_child\nguard_child()\nsignal.pause()", env=env
    )
    try:
        assert child.wait(TIMEOUT) == -signal.SIGTERM
    finally:
        child.kill()
        child.wait(TIMEOUT)
