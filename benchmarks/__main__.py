"""``python -m benchmarks``: jobkit beside huey and raw SQLite, and beside pgqueuer, procrastinate and raw PostgreSQL.

Every side runs in fresh processes in temporary folders under the system temp directory
(set TMPDIR to measure another disk), each starting from its bytecode cache as an installed
package does (the repository's is written first; PYTHONDONTWRITEBYTECODE is not passed on).
The PostgreSQL scenarios use throwaway databases on the server that JOBKIT_BENCH_POSTGRES
names (default postgresql://postgres@127.0.0.1:5432/postgres), and are reported as not run
when it does not answer. Results go to benchmarks/results/<UTC time>.json,
and to benchmarks/results/latest.json after a full run (every scenario, not --quick).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import machine, postgres, report
from benchmarks.metrics import Case
from benchmarks.processes import compile_sources
from benchmarks.scenarios import Scenario, Settings, catalogue, huey_connections, run_scenario, select

QUICK = Settings(n=2000, rounds=1, latency_jobs=50, idle_seconds=2.0, pg_n=2000)
POSTGRES_SOFTWARE = ("psycopg", "procrastinate", "pgqueuer", "asyncpg")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    scenarios = ", ".join(f"{s.number}={s.key}" for s in catalogue())
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help=f"jobs per SQLite scenario (default {Settings.n})")
    parser.add_argument(
        "--pg-n", type=int, default=None, help=f"jobs per PostgreSQL scenario (default {Settings.pg_n})"
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help=f"rounds of each measurement (default {Settings.rounds})"
    )
    parser.add_argument("--only", metavar="SCENARIO[,..]", help=f"run only these scenarios: {scenarios}")
    parser.add_argument(
        "--latency-jobs", type=int, default=None, help=f"jobs in the latency scenario (default {Settings.latency_jobs})"
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=None,
        help=f"window for an idle worker's CPU use (default {Settings.idle_seconds:g})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke test: n={QUICK.n}, pg-n={QUICK.pg_n}, rounds={QUICK.rounds}, {QUICK.latency_jobs} latency jobs, "
        f"{QUICK.idle_seconds:g}s idle window (explicit options still win)",
    )
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    base = QUICK if args.quick else Settings()
    settings = Settings(
        n=base.n if args.n is None else args.n,
        rounds=base.rounds if args.rounds is None else args.rounds,
        latency_jobs=base.latency_jobs if args.latency_jobs is None else args.latency_jobs,
        idle_seconds=base.idle_seconds if args.idle_seconds is None else args.idle_seconds,
        pg_n=base.pg_n if args.pg_n is None else args.pg_n,
    )
    if settings.n < 2 or settings.pg_n < 2 or settings.rounds < 1 or settings.latency_jobs < 1:
        raise ValueError("--n and --pg-n must be at least 2, --rounds and --latency-jobs at least 1")
    if settings.idle_seconds <= 0:
        raise ValueError("--idle-seconds must be positive")
    return settings


def show_progress(case: Case, round_number: int, error: str) -> None:
    if error:
        outcome = f"error: {error.splitlines()[0]}"
    else:
        outcome = ", ".join(f"{key} {report.number(value)}" for key, value in case.rounds[-1].items())
    print(f"[{case.scenario} {case.durability} round {round_number}] {case.label}: {outcome}", file=sys.stderr)


def with_postgres(scenarios: list[Scenario], facts: dict[str, Any]) -> list[Scenario]:
    """*scenarios*, without the PostgreSQL ones when the server does not answer; its facts into *facts*."""
    if not any(s.postgres for s in scenarios):
        return scenarios
    server = postgres.server()
    reason = postgres.unreachable(server)
    facts.update({name: machine.version(name) for name in POSTGRES_SOFTWARE})
    if reason is not None:
        facts["postgres"] = {"not_run": reason}
        print(f"PostgreSQL scenarios not run: {reason}", file=sys.stderr)
        return [s for s in scenarios if not s.postgres]
    facts["postgres"] = postgres.facts(server)
    return scenarios


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    try:
        settings = settings_from(args)
        scenarios = select(catalogue(), args.only)
    except ValueError as exc:
        print(f"python -m benchmarks: error: {exc}", file=sys.stderr)
        return 2
    compile_sources()
    facts = machine.facts()
    scenarios = with_postgres(scenarios, facts)
    cases: list[Case] = []
    with tempfile.TemporaryDirectory(prefix="jobkit-bench-") as root:
        huey = huey_connections(Path(root))
        # The SQLite scenarios first: the PostgreSQL server goes on writing out what its scenarios left
        # (a dropped database is a checkpoint) on the same cores and disk, and SQLite scenarios run after
        # them came out slower (the logged drain 9.9k jobs/s at FULL in a full run, 14.3k/s run alone).
        for scenario in sorted(scenarios, key=lambda s: s.postgres):
            print(f"-- {scenario.number}. {scenario.title}", file=sys.stderr)
            cases += run_scenario(scenario, settings, Path(root), show_progress)
    facts["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    text = report.table(facts, settings, huey, scenarios, cases)
    print(text)
    complete = not args.quick and len(scenarios) == len(catalogue())
    doc = report.document(facts, settings, huey, cases, text, scenarios=scenarios)
    for path in report.save(doc, latest=complete):
        print(f"saved {path}", file=sys.stderr)
    return 1 if any(case.errors for case in cases) else 0


if __name__ == "__main__":
    sys.exit(main())
