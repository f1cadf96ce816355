"""The architecture holds: no import circles, and imports only go down the layers of docs/ARCHITECTURE.md."""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import jobkit

PACKAGE = Path(jobkit.__file__).parent

# Bottom to top. A module may import (at module level) only from its own layer or below.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("jobkit.errors", "jobkit.model", "jobkit.options", "jobkit.threads"),
    ("jobkit.lifecycle", "jobkit.codec", "jobkit.backoff", "jobkit.cron", "jobkit.events", "jobkit.context"),
    ("jobkit.stages",),
    ("jobkit.store",),
    ("jobkit.stores",),
    ("jobkit.lease", "jobkit.run"),
    ("jobkit.spec",),
    ("jobkit.control", "jobkit.recurring", "jobkit.present"),
    ("jobkit.worker", "jobkit.admin", "jobkit.web", "jobkit.__main__"),
)


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(("jobkit", *path.relative_to(PACKAGE).with_suffix("").parts))
        found[name.removesuffix(".__init__")] = path
    return found


def imports(known: dict[str, Path]) -> dict[str, set[str]]:
    """Each module's module-level imports of other jobkit modules (not those under TYPE_CHECKING or in functions)."""
    edges: dict[str, set[str]] = collections.defaultdict(set)
    for name, path in known.items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jobkit"):
                subs = {f"{node.module}.{a.name}" for a in node.names} & known.keys()
                edges[name] |= subs
                if len(subs) < len(node.names):
                    edges[name].add(node.module)
            elif isinstance(node, ast.Import):
                edges[name] |= {a.name for a in node.names} & known.keys()
        edges[name].discard(name)
    return edges


def layer(name: str) -> int | None:
    for number, members in enumerate(LAYERS):
        if any(name == m or name.startswith(f"{m}.") for m in members):
            return number
    return None


def test_no_module_imports_itself_back_through_others() -> None:
    edges = imports(modules())
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for other in sorted(edges[name]):
            if state.get(other) == 1:
                circles.append([*path[path.index(other) :], other])
            elif other not in state:
                visit(other, [*path, other])
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert circles == []


def test_imports_only_go_down_the_layers() -> None:
    known = modules()
    upward = []
    for name, targets in imports(known).items():
        mine = layer(name)
        if mine is None:  # the package itself re-exports everything
            continue
        upward += [f"{name} -> {t}" for t in targets if (theirs := layer(t)) is not None and theirs > mine]
    assert upward == []


def test_every_module_has_a_layer_and_stays_small() -> None:
    known = modules()
    assert [n for n in known if n != "jobkit" and layer(n) is None] == []
    assert [
        f"{n}: {len(p.read_text().splitlines())}" for n, p in known.items() if len(p.read_text().splitlines()) > 500
    ] == []
