"""Finding the spec for a job name read from the database, and loading ``--jobs`` registries."""

from __future__ import annotations

import importlib
from collections.abc import Collection, Iterable
from typing import Any

from jobkit.errors import UnknownJobError
from jobkit.spec import JobSpec, Registry


class Resolver:
    """Finds the spec for a job name.

    With *import_on_demand*, a name ``"module:qualname"`` not in the registry is imported
    and used when it leads to a :class:`JobSpec`; otherwise only registered names run.
    """

    def __init__(self, registry: Registry, *, import_on_demand: bool) -> None:
        self.registry = registry
        self.import_on_demand = import_on_demand
        self._found: dict[str, JobSpec[Any, Any] | UnknownJobError] = {}

    def names(self) -> Collection[str] | None:
        """The names this worker claims: None for any."""
        return None if self.import_on_demand else set(self.registry.names())

    def find(self, name: str) -> JobSpec[Any, Any] | None:
        """The spec for *name*, or None."""
        try:
            return self.resolve(name)
        except UnknownJobError:
            return None

    def resolve(self, name: str) -> JobSpec[Any, Any]:
        spec = self.registry.get(name)
        if spec is not None:
            return spec
        if name not in self._found:
            self._found[name] = self._import(name)
        found = self._found[name]
        if isinstance(found, UnknownJobError):
            raise found
        return found

    def _import(self, name: str) -> JobSpec[Any, Any] | UnknownJobError:
        if not self.import_on_demand:
            return UnknownJobError(name, "this worker runs only the jobs given with --jobs")
        module_name, _, qualname = name.partition(":")
        if not module_name or not qualname:
            return UnknownJobError(name, "the name is not of the form 'module:function'")
        if module_name == "__main__":
            return UnknownJobError(name, "it was defined in a script run as __main__, which a worker cannot import")
        try:
            target: Any = importlib.import_module(module_name)
        except Exception as exc:
            return UnknownJobError(name, f"cannot import {module_name!r}: {type(exc).__name__}: {exc}")
        for part in qualname.split("."):
            target = getattr(target, part, None)
        if not isinstance(target, JobSpec):
            return UnknownJobError(name, f"{module_name}.{qualname} is not a job spec")
        if target.name != name:
            return UnknownJobError(name, f"{module_name}.{qualname} is registered as {target.name!r}")
        return target


def load_registry(target: str) -> Registry:
    """Import ``MODULE[:ATTRIBUTE]`` and return its Registry (the one registry in it by default)."""
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    if attribute:
        found = getattr(module, attribute, None)
        if not isinstance(found, Registry):
            raise ValueError(f"{target}: {attribute!r} is not a jobkit.Registry")
        return found
    registries = [value for value in vars(module).values() if isinstance(value, Registry)]
    if len(registries) != 1:
        raise ValueError(
            f"{target}: expected one jobkit.Registry in {module_name}, found {len(registries)}; name it as MODULE:NAME"
        )
    return registries[0]


def merge(registries: Iterable[Registry]) -> Registry:
    """One registry holding every spec of *registries*."""
    merged = Registry()
    for registry in registries:
        merged.include(registry)
    return merged
