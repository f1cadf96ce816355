"""The worker: ``python -m jobkit.worker TARGET``, and :func:`run_worker` / :func:`tick` as a library.

- :mod:`~jobkit.worker.loop`: the loop that claims, hands jobs to the runner, writes outcomes
- :mod:`~jobkit.worker.pool`: where handlers run (threads, an event loop)
- :mod:`~jobkit.worker.resolve`: job names to specs; ``--jobs`` registries
- :mod:`~jobkit.worker.report`: what a worker did
- :mod:`~jobkit.worker.entry`: run_worker, tick, tick_handler
- :mod:`~jobkit.worker.supervisor`: ``--processes``
- :mod:`~jobkit.worker.cli`: the command
"""

from jobkit.worker.cli import main
from jobkit.worker.entry import run_worker, tick, tick_handler
from jobkit.worker.loop import Worker
from jobkit.worker.report import Report
from jobkit.worker.resolve import Resolver, load_registry, merge

__all__ = ["Report", "Resolver", "Worker", "load_registry", "main", "merge", "run_worker", "tick", "tick_handler"]
