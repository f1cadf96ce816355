"""Finding the spec for a job name read from the database, and loading ``--jobs`` registries.

The trust model: a worker without ``--jobs`` imports the module that a row's job name
names, and importing runs that module's top-level code. Whoever can write the database
therefore chooses what such a worker imports. ``import_from`` (``--import-from``) limits
those imports to named top-level packages; ``--jobs`` imports nothing a row names.
Whatever an import does short of ending the process (raising anything, ``SystemExit`` and
``KeyboardInterrupt`` included) fails that one job, never the worker.
"""

from __future__ import annotations

import importlib
import logging
import os
import traceback
from collections.abc import Collection, Iterable
from typing import Any

from jobkit.errors import JobkitError, UnknownJobError
from jobkit.spec import JobSpec, Registry

logger = logging.getLogger("jobkit.worker")


class JobsModuleError(JobkitError, ValueError):
    """A ``--jobs MODULE[:REGISTRY]`` that does not lead to a registry; ``target`` is what was given."""

    def __init__(self, target: str, problem: str) -> None:
        super().__init__(f"{target}: {problem}")
        self.target = target


def module_problem(module_name: str) -> str | None:
    """Why *module_name* may not be imported by name, or None when it may.

    A module that is a program's entry point (``venv.__main__``, ``pip.__main__``) runs
    that program when imported: no job lives there, so it is refused outright.
    """
    parts = module_name.split(".")
    if not all(part.isidentifier() for part in parts):
        return f"{module_name!r} is not a dotted module name"
    if "__main__" in parts:
        return f"{module_name!r} is a program's entry point (__main__), which a worker never imports"
    return None


def _raised(exc: BaseException) -> str:
    """One line for an exception an import raised: its type, text and where it came from."""
    if isinstance(exc, SyntaxError) and exc.filename:  # its str() already says where
        return f"{type(exc).__name__}: {exc.msg} ({os.path.basename(exc.filename)}, line {exc.lineno})"
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")]
    if frames:
        last = frames[-1]
        return f"{text} ({os.path.basename(last.filename)}, line {last.lineno})"
    return text


class Resolver:
    """Finds the spec for a job name.

    With *import_on_demand*, a name ``"module:qualname"`` not in the registry is imported
    and used when it leads to a :class:`JobSpec`; otherwise only registered names run.
    *import_from*, when not empty, lists the top-level packages that may be imported so.
    A name that leads nowhere raises :class:`UnknownJobError`, and keeps doing so in this
    process (an import is never run twice).
    """

    def __init__(self, registry: Registry, *, import_on_demand: bool, import_from: Collection[str] = ()) -> None:
        self.registry = registry
        self.import_on_demand = import_on_demand
        self.import_from = frozenset(import_from)
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
            found = self._found[name] = self._import(name)
            if isinstance(found, UnknownJobError) and self.import_on_demand:
                logger.error("%s; its jobs are retried with backoff in case another worker can run them", found)
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
        problem = module_problem(module_name)
        if problem is not None:
            return UnknownJobError(name, problem)
        package = module_name.partition(".")[0]
        if self.import_from and package not in self.import_from:
            allowed = ", ".join(sorted(self.import_from))
            return UnknownJobError(name, f"this worker imports only from {allowed} (--import-from), not {package!r}")
        try:
            target: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                target = getattr(target, part, None)
        except BaseException as exc:  # whatever a module does at import ends this job, not the worker
            return UnknownJobError(name, f"cannot import {module_name!r}: {_raised(exc)}")
        if not isinstance(target, JobSpec):
            return UnknownJobError(name, f"{module_name}.{qualname} is not a job spec")
        if target.name != name:
            return UnknownJobError(name, f"{module_name}.{qualname} is registered as {target.name!r}")
        return target


def load_registry(target: str) -> Registry:
    """Import ``MODULE[:ATTRIBUTE]`` and return its Registry (the one registry in it by default).

    Anything that goes wrong, importing included, is a :class:`JobsModuleError` whose
    one-line message names the module and, where it can, what to give instead.
    """
    module_name, _, attribute = target.partition(":")
    hint = _module_name_hint(module_name)
    if hint is not None:
        raise JobsModuleError(target, f"use a module name: {hint}")
    problem = module_problem(module_name)
    if problem is not None:
        raise JobsModuleError(target, problem)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name) and module_name[len(exc.name) :][:1] in ("", "."):
            raise JobsModuleError(
                target,
                f"no module named {exc.name!r} here: start the worker in the directory that holds it, "
                "or add that directory to PYTHONPATH",
            ) from None
        raise JobsModuleError(target, f"importing {module_name!r} failed: {_raised(exc)}") from None
    except BaseException as exc:  # a module that raises at import (SystemExit too) is a usage error, in one line
        raise JobsModuleError(target, f"importing {module_name!r} failed: {_raised(exc)}") from None
    if attribute:
        found = getattr(module, attribute, None)
        if not isinstance(found, Registry):
            raise JobsModuleError(target, f"{attribute!r} is not a jobkit.Registry")
        return found
    registries = [value for value in vars(module).values() if isinstance(value, Registry)]
    if len(registries) != 1:
        raise JobsModuleError(
            target, f"expected one jobkit.Registry in {module_name}, found {len(registries)}; name it as MODULE:NAME"
        )
    return registries[0]


def _module_name_hint(module_name: str) -> str | None:
    """The module name meant by a file path such as ``./tasks``, ``tasks.py`` or ``shop/tasks.py``; None for a name."""
    path = module_name.replace("\\", "/")
    if not (path.endswith(".py") or "/" in path or path.startswith(".")):
        return None
    parts = [part for part in path.removesuffix(".py").split("/") if part.strip(".")]
    return ".".join(parts).lstrip(".") or None


def merge(registries: Iterable[Registry]) -> Registry:
    """One registry holding every spec of *registries*."""
    merged = Registry()
    for registry in registries:
        merged.include(registry)
    return merged
