"""What the stores-agree state machines share: the stores side by side, the lifecycle as their reference.

Each rule calls every store the same way (:meth:`SideBySide.both`) and, where the call
changes jobs, hands the same call to the :class:`Reference` (jobkit.lifecycle over a
dict): every store must answer as the reference does and, after every step, hold the
very records it holds.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import attrs
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

import jobkit
from jobkit.model import Lease, LeaseMark
from jobkit.store import Store
from tests.pg import drop_store, schema_store
from tests.stores.reference import Reference
from tests.support import T0

T = TypeVar("T")
MICROSECOND = timedelta(microseconds=1)


class SideBySide(RuleBasedStateMachine):
    """A MemoryStore, a SqliteStore on a fresh file and (when the run has a PostgreSQL database) a
    PostgresStore in a fresh schema, driven by the same calls."""

    folder_prefix = "jobkit-agree-"

    def __init__(self, postgres: str | None = None) -> None:
        """*postgres*: the URL of a database to add a PostgresStore in (a fresh schema of it)."""
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix=self.folder_prefix))
        self.memory = jobkit.MemoryStore()
        self.sqlite = jobkit.SqliteStore(self.folder / "jobs.sqlite")
        self.postgres = schema_store(postgres) if postgres else None
        self.stores: tuple[Store, ...] = (self.memory, self.sqlite, *([self.postgres] if self.postgres else []))
        self.now: datetime = T0
        self.tokens = 0
        self.leases: list[Lease] = []
        self.marks: list[LeaseMark] = []  # every lease mark read so far: many stale by now
        self.reference = Reference()

    def teardown(self) -> None:
        self.sqlite.close()
        if self.postgres is not None:
            drop_store(self.postgres)
        shutil.rmtree(self.folder, ignore_errors=True)

    def both(self, call: Callable[[Store], T], expect: Callable[[Reference], Any] | None = None) -> T | None:
        """Call every store; they must return equal values or raise the same type of error.

        With *expect*, the same call on the reference: when the stores answer, they must
        answer as it does (and it changes its records as they must have).
        """
        outcomes: list[tuple[str, Any]] = []
        for store in self.stores:
            try:
                outcomes.append(("returned", call(store)))
            except Exception as exc:
                outcomes.append(("raised", type(exc)))
        memory = outcomes[0]
        for store, outcome in zip(self.stores[1:], outcomes[1:], strict=True):
            assert outcome == memory, f"MemoryStore {memory} but {type(store).__name__} {outcome}"
        if memory[0] != "returned":
            return None
        if expect is not None:
            expected = expect(self.reference)
            assert memory[1] == expected, f"the stores answered {memory[1]} but the lifecycle says {expected}"
        return memory[1]  # type: ignore[no-any-return]

    def follows_the_lifecycle(self) -> None:
        """Every store holds exactly the records the reference holds."""
        expected = sorted(self.reference.jobs.values(), key=lambda j: (j.created_at, j.id), reverse=True)
        for store in self.stores:
            assert store.list_jobs(limit=10**6) == expected, f"{store!r} left other jobs than the lifecycle"

    # -- watching leases: the rules every machine shares ------------------------------
    @rule()
    def watch_leases(self) -> None:
        """Every store lists the running jobs' leases (token, expiry, last write) as the lifecycle does."""
        marks = self.both(lambda s: s.leases(), lambda r: r.leases())
        self.marks.extend(marks or [])
        event("leases", len(marks or []))

    @precondition(lambda self: self.marks)
    @rule(data=st.data())
    def reset_unrenewed(self, data: st.DataObject) -> None:
        """Reset by marks as they stand, read earlier (many renewed, finished or claimed again since), or made up."""
        seen = st.sampled_from(self.marks)
        other_token = seen.map(lambda m: attrs.evolve(m, token=f"{m.token}-other"))
        other_expiry = seen.map(lambda m: attrs.evolve(m, expires_at=(m.expires_at or self.now) + MICROSECOND))
        choices = [seen, other_token, other_expiry]
        if current := self.memory.leases():  # as if nothing changed since the reaper looked
            choices[:0] = [st.sampled_from(current)] * 3
        marks = data.draw(st.lists(st.one_of(choices), max_size=4), label="marks")
        report = self.both(
            lambda s: s.reset_unrenewed(marks, now=self.now), lambda r: r.reset_unrenewed(marks, now=self.now)
        )
        assert report is not None
        event("reset_unrenewed", f"reset {len(report.retried) + len(report.failed) + len(report.cancelled)}")
