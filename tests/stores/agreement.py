"""What the stores-agree state machines share: two stores side by side, and one way to call both."""

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
from tests.conftest import T0

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

    def teardown(self) -> None:
        self.sqlite.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def both(self, call: Callable[[Store], T]) -> T | None:
        """Call both stores; they must return equal values or raise the same type of error."""
        outcomes: list[tuple[str, Any]] = []
        for store in self.stores:
            try:
                outcomes.append(("returned", call(store)))
            except Exception as exc:
                outcomes.append(("raised", type(exc)))
        memory, sqlite = outcomes
        assert memory == sqlite, f"MemoryStore {memory} but SqliteStore {sqlite}"
        return memory[1] if memory[0] == "returned" else None
