"""What the SQL stores share about fenced writes for many jobs: how to split them, how to read the answers.

Pure: job ids and rows in, plans and booleans out. Each store turns a run into its own
statement (SQLite an executemany, PostgreSQL one ``UPDATE ... FROM unnest``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence

from jobkit import lifecycle
from jobkit.model import JobRecord, Lease


def runs(writes: Sequence[tuple[str, object]]) -> Iterator[tuple[int, int, bool]]:
    """Spans ``[start, end)`` of *writes* (job id, kind), each to go as one statement, and whether it is a batch.

    A run of one kind on distinct jobs is one span, a batch (True); a run that names a
    job twice is one span a write (False), so that the outcome is exactly that of
    applying them in order.
    """
    start = 0
    while start < len(writes):
        kind = writes[start][1]
        end = start + 1
        while end < len(writes) and writes[end][1] == kind:
            end += 1
        ids = [job_id for job_id, _ in writes[start:end]]
        if len(set(ids)) == len(ids):
            yield start, end, True
        else:
            yield from ((i, i + 1, False) for i in range(start, end))
        start = end


def applied(ids: Sequence[Sequence[str]], results: Sequence[Sequence[Sequence[object]]]) -> list[bool]:
    """For each write, in order: True when its statement returned its job's id (its token still held the job).

    *ids* are the job ids each statement wrote; *results* the rows each returned.
    """
    done: list[bool] = []
    for written, rows in zip(ids, results, strict=True):
        returned = {row[0] for row in rows}
        done.extend(job_id in returned for job_id in written)
    return done


def given_back(leases: Sequence[Lease], done: Collection[tuple[object, object]]) -> list[bool]:
    """For each lease, whether a give-back took effect: *done* holds the (job id, token) pairs written.

    A lease named twice is given back once: the first time it is named.
    """
    left = set(done)
    released = []
    for lease in leases:
        key = (lease.job_id, lease.token)
        released.append(key in left)
        left.discard(key)
    return released


def held_by(jobs: Sequence[JobRecord], holders: Mapping[lifecycle.Key, str]) -> list[str]:
    """For each job an add was given, the id of the job it is now: its own, or that of the job holding its key.

    *holders* maps each unique key given to the pending or running job that holds it
    after the add (read in its transaction); a job that holds no key is itself.
    """
    return [holders.get(lifecycle.key_of(job), job.id) if lifecycle.holds_key(job) else job.id for job in jobs]  # type: ignore[arg-type]


def dependencies(records: Sequence[JobRecord], ids: Sequence[str]) -> list[tuple[str, str]]:
    """The (parent, child) pairs an add writes: each job it wrote (*ids*, from :func:`held_by`, is its own)
    runs after each job it names, once."""
    return [
        (parent, job.id)
        for job, job_id in zip(records, ids, strict=True)
        if job_id == job.id
        for parent in dict.fromkeys(job.depends_on)
    ]
