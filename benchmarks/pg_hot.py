"""``python -m benchmarks.pg_hot``: how many of a long job's updates on PostgreSQL are HOT (heap-only)?

A claim and an outcome change ``status``, which the partial indexes key on, so they can
never be HOT; heartbeats and progress write only columns no index holds, so they can be,
when the page has room (the table's fillfactor leaves it). A worker runs long jobs that
report progress ten times under a short lock (so heartbeats are written too), in a
throwaway database on the local server; the script reads ``pg_stat_user_tables`` after
the worker's sessions have ended and prints the HOT share of all updates and of the
updates other than claims and outcomes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg

import jobkit
from benchmarks import jobkit_jobs
from tests.pg import LOCAL_URL, throwaway_database

STATS = """SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE schemaname = 'jobkit' AND relname = 'jobs'"""
ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pg_hot", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="long jobs to run (default 200)")
    parser.add_argument("--seconds", type=float, default=2.0, help="each job's run time (default 2)")
    parser.add_argument("--server", default=os.environ.get("JOBKIT_TEST_POSTGRES", LOCAL_URL))
    args = parser.parse_args(argv)
    with throwaway_database(args.server, prefix="jobkit_hot_") as url:
        with jobkit.PostgresStore(url) as store:
            jobkit_jobs.long_step.later_many([args.seconds] * args.jobs, store)
        worker = [sys.executable, "-m", "jobkit.worker", url, "--jobs", "benchmarks.jobkit_jobs", "--burst"]
        worker += ["--quiet", "--concurrency", "50", "--lock-timeout", "1"]
        started = time.monotonic()
        subprocess.run(worker, cwd=ROOT, check=True, timeout=60 + 2 * args.jobs * args.seconds)
        took = time.monotonic() - started
        with psycopg.connect(url, autocommit=True) as conn:  # the worker's sessions have ended: their stats are in
            row = conn.execute(STATS).fetchone()
            assert row is not None
            updates, hot = row
    status_changes = 2 * args.jobs  # each job's claim and its outcome
    print(f"{args.jobs} jobs of {args.seconds} s in {took:.1f} s: {updates} updates, {hot} HOT")
    print(f"HOT share: {100 * hot / updates:.0f}% of all updates")
    others = updates - status_changes
    if others > 0:
        print(f"HOT share of heartbeats and progress: {100 * hot / others:.0f}% of {others}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
