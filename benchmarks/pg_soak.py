"""``python -m benchmarks.pg_soak``: does the PostgreSQL jobs table stay small under steady load?

A throwaway cluster with PostgreSQL's default settings (autovacuum on: the shared server
on the CI machines runs without it) gets a steady stream of jobs from a producer, a
worker process drains them with retention on (``--keep-completed``), and every
``--every`` seconds the script records the table's live and dead tuples, its size and
the autovacuum runs. Results go to benchmarks/results/pg-soak-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg

import jobkit
from benchmarks import jobkit_jobs
from tests.pg import Cluster

STATS = """SELECT n_live_tup, n_dead_tup, n_tup_upd, n_tup_hot_upd, autovacuum_count,
    pg_total_relation_size(relid) FROM pg_stat_user_tables WHERE schemaname = 'jobkit' AND relname = 'jobs'"""


def produce(store: jobkit.PostgresStore, rate: float, stop: threading.Event, made: list[int]) -> None:
    """Enqueue *rate* jobs a second, ten at a time, until *stop*."""
    batch = 10
    period = batch / rate
    next_at = time.monotonic()
    while not stop.is_set():
        jobkit_jobs.noop.later_many(list(range(batch)), store)
        made[0] += batch
        next_at += period
        stop.wait(max(0.0, next_at - time.monotonic()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pg_soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=300.0, help="jobs enqueued a second (default 300)")
    parser.add_argument("--keep", default="60", help="seconds the worker keeps finished jobs (default 60)")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples (default 30)")
    parser.add_argument("--worker", nargs=2, metavar=("DSN", "KEEP_SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:  # the worker process: the library's run_worker, retention on
        dsn, seconds = args.worker
        with jobkit.open_store(dsn) as store:
            keep = timedelta(seconds=float(seconds))
            jobkit.run_worker(store, jobkit_jobs.jobs, keep_completed=keep, keep_failed=keep)
        return 0
    keep = float(args.keep)
    samples: list[dict[str, Any]] = []
    with Cluster.create(settings={}) as cluster:
        store = jobkit.PostgresStore(cluster.dsn)
        worker = subprocess.Popen([sys.executable, "-m", "benchmarks.pg_soak", "--worker", cluster.dsn, str(keep)])
        stop = threading.Event()
        made = [0]
        producer = threading.Thread(target=produce, args=(store, args.rate, stop, made), daemon=True)
        producer.start()
        started = time.monotonic()
        try:
            with psycopg.connect(cluster.dsn, autocommit=True) as conn:
                while (elapsed := time.monotonic() - started) < args.minutes * 60:
                    time.sleep(args.every)  # a measurement's cadence, not a wait for a condition
                    conn.execute("SELECT pg_stat_clear_snapshot()")
                    row = conn.execute(STATS).fetchone()
                    assert row is not None
                    live, dead, upd, hot, autovacuums, size = row
                    counts = store.counts()
                    sample = {
                        "minute": round((elapsed + args.every) / 60, 2),
                        "enqueued": made[0],
                        "completed_held": counts[jobkit.JobStatus.COMPLETED],
                        "pending": counts[jobkit.JobStatus.PENDING],
                        "n_live_tup": live,
                        "n_dead_tup": dead,
                        "hot_share": round(hot / upd, 3) if upd else None,
                        "autovacuum_count": autovacuums,
                        "table_bytes": size,
                    }
                    samples.append(sample)
                    print(json.dumps(sample), flush=True)
        finally:
            stop.set()
            producer.join(timeout=10)
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            store.close()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = Path(__file__).parent / "results" / f"pg-soak-{stamp}.json"
    out.write_text(json.dumps({"settings": vars(args), "samples": samples}, indent=1) + "\n")
    dead = [s["n_dead_tup"] for s in samples]
    print(f"n_dead_tup over {args.minutes:g} min: max {max(dead)}, last {dead[-1]}; written to {out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
