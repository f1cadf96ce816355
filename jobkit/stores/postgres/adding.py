"""Adding jobs that the table cannot take blind (with unique keys, or running after other jobs), and the
calls of several threads made together.

The first are added in one transaction of statements run one after another (each needs
what the one before found), on a pooled connection or on the caller's own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from jobkit import lifecycle
from jobkit.errors import JobkitError, StoreError
from jobkit.model import JobRecord, JobStatus
from jobkit.stores.postgres import queries as q
from jobkit.stores.refusals import check_ids, check_parents
from jobkit.stores.writes import dependencies, held_by

Execute = Callable[[str, Any], list[Any]]
"""Runs one statement in the add's transaction; its rows (none for a statement that returns none)."""
TRIES = 5


def checked(jobs: Sequence[JobRecord]) -> bool:
    """Whether adding *jobs* needs :func:`add_checked` (a unique key, or jobs they run after)."""
    return any(job.unique_key is not None or job.depends_on for job in jobs)


def add_checked(execute: Execute, jobs: Sequence[JobRecord], channel: str) -> list[str]:
    """Add *jobs* in the transaction *execute* runs in; the id each is known by (:meth:`Store.add`).

    A taken id is refused first (the insert's ON CONFLICT would pass over it, as over a
    held key), then a job named in ``after`` that does not exist. The jobs named are
    marked and locked as they are read, so none ends unseen before the dependents are in.
    :func:`lifecycle.added` decides what is written from the holders and statuses read.
    """
    check_ids(jobs, [row[0] for row in execute(q.TAKEN, ([job.id for job in jobs],))])
    parents = sorted({parent for job in jobs for parent in job.depends_on})
    statuses = {job_id: JobStatus(status) for job_id, status in execute(q.PARENTS, (parents,))} if parents else {}
    check_parents(parents, statuses)
    before = execute(*holders) if (holders := q.holders(jobs)) is not None else []
    written, ids = lifecycle.added(jobs, {(name, key): job_id for name, key, job_id in before}, statuses)
    known = [job.id for job in written]
    if any(lifecycle.holds_key(job) for job in written):
        # Another session may take a key between the read above and the insert: ON CONFLICT skips those.
        known = deduplicated(written, lambda batch: [execute(*q.insert(batch, channel)), *_holders(execute, batch)])
        became = dict(zip([job.id for job in written], known, strict=True))
        ids = [became.get(job_id, job_id) for job_id in ids]
    elif written:
        execute(*q.insert(written, channel))
    pairs = dependencies(written, known)
    if pairs:
        execute(q.DEPEND, q.arrays(pairs, 2))
    return ids


def _holders(execute: Execute, jobs: Sequence[JobRecord]) -> list[list[Any]]:
    holders = q.holders(jobs)
    return [] if holders is None else [execute(*holders)]


def deduplicated(jobs: Sequence[JobRecord], run: Callable[[Sequence[JobRecord]], list[list[Any]]]) -> list[str]:
    """Add *jobs* (some with unique keys) by *run* (the insert, then the read of who holds each key); their ids.

    In READ COMMITTED the read comes after the insert: a job skipped because another
    session's job held its key may find that job already ended (a fast worker), and no
    one holding the key. Those are added again, a few times at most.
    """
    found: dict[lifecycle.Key, str] = {}
    batch = list(jobs)
    for _ in range(TRIES):
        results = run(batch)
        found.update({(name, key): job_id for name, key, job_id in (results[-1] if len(results) > 1 else [])})
        batch = [job for job in batch if lifecycle.holds_key(job) and lifecycle.key_of(job) not in found]
        if not batch:
            return held_by(jobs, found)
    raise StoreError(f"the unique keys of {len(batch)} jobs kept changing hands while they were added")


def together(
    calls: Sequence[Sequence[JobRecord]],
    alone: Callable[[Sequence[JobRecord]], list[str]],
    insert: Callable[[Sequence[JobRecord]], None],
) -> list[list[str] | Exception]:
    """The calls of ``add()`` that threads made at once (:mod:`jobkit.stores.grouped`): the outcome of each.

    The plain ones (no unique key, no job to run after) go as one INSERT, one NOTIFY and
    one commit. When the table refuses a row of it, nothing of it is written, and each of
    them is added on its own, so that only the call holding that row fails; so are the
    calls that need reads first (:func:`add_checked`), each in a transaction of its own.
    A failure of the server or the connection during the shared INSERT is every call's
    (raised: none was written before it); once a transaction of the batch has committed,
    each call's error is its own, so that no caller is told its committed jobs failed.
    """
    if len(calls) == 1:
        return [alone(calls[0])]
    outcomes: list[list[str] | Exception | None] = [None] * len(calls)
    plain = [i for i, jobs in enumerate(calls) if not checked(jobs)]
    if len(plain) > 1:
        try:
            insert([job for i in plain for job in calls[i]])
            for i in plain:
                outcomes[i] = [job.id for job in calls[i]]
        except StoreError:  # the first write of the batch: nothing committed; whether it did is not known either
            raise
        except JobkitError:  # a row the table refuses (a taken id, a CHECK): each call on its own finds whose
            pass
    for i, jobs in enumerate(calls):
        if outcomes[i] is None:
            try:
                outcomes[i] = alone(jobs)
            except JobkitError as exc:  # a StoreError too: this call's, never its neighbours'
                outcomes[i] = exc
    return [outcome for outcome in outcomes if outcome is not None]
