"""What the stores-agree state machines share: the stores side by side, the lifecycle as their reference.

Each rule calls every store the same way (:meth:`TwoStores.both`) and, where the call
changes jobs, hands the same call to the :class:`Reference` (jobkit.lifecycle over a
dict): every store must answer as the reference does and, after every step, hold the
very records it holds.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from hypothesis.stateful import RuleBasedStateMachine

import jobkit
from jobkit.model import Lease
from jobkit.store import Store
from tests.stores.reference import Reference
from tests.support import T0

T = TypeVar("T")


class TwoStores(RuleBasedStateMachine):
    """A MemoryStore and a SqliteStore on a fresh file, driven by the same calls."""

    folder_prefix = "jobkit-agree-"

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix=self.folder_prefix))
        self.memory = jobkit.MemoryStore()
        self.sqlite = jobkit.SqliteStore(self.folder / "jobs.sqlite")
        self.stores: tuple[Store, Store] = (self.memory, self.sqlite)
        self.now: datetime = T0
        self.tokens = 0
        self.leases: list[Lease] = []
        self.reference = Reference()

    def teardown(self) -> None:
        self.sqlite.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def both(self, call: Callable[[Store], T], expect: Callable[[Reference], Any] | None = None) -> T | None:
        """Call both stores; they must return equal values or raise the same type of error.

        With *expect*, the same call on the reference: when the stores answer, they must
        answer as it does (and it changes its records as they must have).
        """
        outcomes: list[tuple[str, Any]] = []
        for store in self.stores:
            try:
                outcomes.append(("returned", call(store)))
            except Exception as exc:
                outcomes.append(("raised", type(exc)))
        memory, sqlite = outcomes
        assert memory == sqlite, f"MemoryStore {memory} but SqliteStore {sqlite}"
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
