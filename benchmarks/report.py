"""Ratios, goals, the printed table and the saved JSON of one benchmark run."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.metrics import (
    CPU_A_JOB,
    DURABILITIES,
    GROWTH,
    IDLE_CPU,
    P50,
    P99,
    SEEN_P99,
    THROUGHPUT,
    Case,
    Durability,
    Metric,
    Side,
)
from benchmarks.scenarios import Scenario, Settings

RESULTS = Path(__file__).resolve().parent / "results"


# -- looking things up --------------------------------------------------------------------
def best_median(
    cases: Sequence[Case], scenario: str, durability: Durability, side: Side, metric: Metric
) -> float | None:
    """The best median of *metric* among *side*'s configurations (huey's best of its thread counts)."""
    medians = [
        median
        for case in cases
        if (case.scenario, case.durability, case.side) == (scenario, durability, side)
        and (median := case.median(metric)) is not None
    ]
    if not medians:
        return None
    return max(medians) if metric.higher_is_better else min(medians)


def ratio(cases: Sequence[Case], scenario: str, durability: Durability, metric: Metric, versus: Side) -> float | None:
    """jobkit's median over *versus*'s best median, or None when either is missing."""
    mine = best_median(cases, scenario, durability, "jobkit", metric)
    theirs = best_median(cases, scenario, durability, versus, metric)
    if mine is None or not theirs:
        return None
    return mine / theirs


# -- goals (issue 5 for SQLite, 12 for PostgreSQL, 13 for queues, 15 for producers and logging) --
@dataclass(frozen=True)
class Goal:
    """One goal of the performance issue, checked on the medians of this run."""

    text: str
    durability: Durability
    value: float
    target: float
    unit: str
    at_least: bool

    @property
    def met(self) -> bool:
        return self.value >= self.target if self.at_least else self.value <= self.target


def goals(cases: Sequence[Case]) -> list[Goal]:
    """Every goal this run has the figures for."""

    def jobkit(scenario: str, d: Durability, metric: Metric) -> float | None:
        return best_median(cases, scenario, d, "jobkit", metric)

    def scaling(d: Durability, prefix: str = "") -> float | None:
        one, two = jobkit(f"{prefix}drain", d, THROUGHPUT), jobkit(f"{prefix}drain2", d, THROUGHPUT)
        return two / one if one and two else None

    def versus(scenario: str, side: Side) -> Callable[[Durability], float | None]:
        return lambda d: ratio(cases, scenario, d, THROUGHPUT, side)

    def over(scenario: str, reference: str) -> Callable[[Durability], float | None]:
        """jobkit's throughput in *scenario* over its throughput in *reference*."""

        def value(d: Durability) -> float | None:
            mine, theirs = jobkit(scenario, d, THROUGHPUT), jobkit(reference, d, THROUGHPUT)
            return mine / theirs if mine and theirs else None

        return value

    def at(durability: Durability, value: Callable[[Durability], float | None]) -> Callable[[Durability], float | None]:
        """A goal set for one durability only."""
        return lambda d: value(d) if d == durability else None

    # (what, its value at a durability, target, unit, at least the target or at most)
    specs: list[tuple[str, Callable[[Durability], float | None], float, str, bool]] = [
        ("enqueue one by one, jobkit/huey", lambda d: ratio(cases, "enqueue", d, THROUGHPUT, "huey"), 1.3, "x", True),
        ("bulk enqueue, jobkit", lambda d: jobkit("bulk", d, THROUGHPUT), 100_000, " jobs/s", True),
        ("bulk enqueue, jobkit/raw executemany", lambda d: ratio(cases, "bulk", d, THROUGHPUT, "raw"), 0.15, "x", True),
        ("drain, one process, jobkit/huey best", at("default", versus("drain", "huey")), 10, "x", True),
        ("drain, one process, jobkit/huey best", at("normal", versus("drain", "huey")), 4, "x", True),
        ("drain at the default log level / --quiet", over("drain-logged", "drain"), 0.85, "x", True),
        ("CPU a drained no-op job, jobkit", lambda d: jobkit("drain", d, CPU_A_JOB), 15, " us", False),
        ("8 producers / 1 producer, jobkit", at("default", over("producers", "enqueue")), 4, "x", True),
        ("8 producers, jobkit/huey 8 threads", at("default", versus("producers", "huey")), 4, "x", True),
        ("8 producers, jobkit/huey 8 threads", at("normal", versus("producers", "huey")), 2, "x", True),
        ("drain, jobkit 2 processes / 1 process", scaling, 1.5, "x", True),
        ("drain, jobkit 3 queues / 1 queue", over("drain-queues", "drain"), 0.9, "x", True),
        ("latency p50", lambda d: jobkit("latency", d, P50), 5, " ms", False),
        ("latency p99", lambda d: jobkit("latency", d, P99), 25, " ms", False),
        ("idle worker CPU", lambda d: jobkit("latency", d, IDLE_CPU), 2, "% of a core", False),
        ("peak RSS, 5N jobs / N/2 jobs", lambda d: jobkit("memory", d, GROWTH), 1.10, "x", False),
        ("PG enqueue one by one, jobkit/raw", versus("pg-enqueue", "raw"), 0.9, "x", True),
        ("PG bulk enqueue, jobkit/raw COPY", versus("pg-bulk", "raw"), 0.8, "x", True),
        ("PG drain, jobkit/pgqueuer", versus("pg-drain", "pgqueuer"), 2, "x", True),
        ("PG drain, jobkit/procrastinate", versus("pg-drain", "procrastinate"), 10, "x", True),
        ("PG drain, jobkit/raw", versus("pg-drain", "raw"), 1 / 3, "x", True),
        ("PG drain, jobkit 2 processes / 1", lambda d: scaling(d, "pg-"), 1.6, "x", True),
        ("PG drain, jobkit 3 queues / 1 queue", over("pg-drain-queues", "pg-drain"), 0.9, "x", True),
        ("PG latency p50", lambda d: jobkit("pg-latency", d, P50), 2, " ms", False),
        ("PG latency p99", lambda d: jobkit("pg-latency", d, P99), 5, " ms", False),
        ("PG handler end to wait() seeing it, p99", lambda d: jobkit("pg-latency", d, SEEN_P99), 10, " ms", False),
    ]
    return [
        Goal(text, d, value, target, unit, at_least)
        for d in DURABILITIES
        for text, measured, target, unit, at_least in specs
        if (value := measured(d)) is not None
    ]


# -- the table ----------------------------------------------------------------------------
def number(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"


def times(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.3f}x"


def header(facts: dict[str, Any], settings: Settings, huey: dict[str, Any]) -> list[str]:
    huey_sync = ", ".join(f"{d}: synchronous={v.get('synchronous')}" for d, v in huey.items())
    return [
        f"jobkit benchmarks, {facts['date']}",
        f"machine: {facts['cpu']}, {facts['cores']} cores ({facts['usable_cores']} usable), {facts['os']}, "
        f"load average at start {', '.join(f'{x:.2f}' for x in facts['load_average_at_start'] or [])}",
        f"software: {facts['python']}, jobkit {facts['jobkit']} (commit {facts['commit']}), "
        f"SQLite {facts['sqlite_apsw']} via apsw {facts['apsw']} (jobkit, raw); "
        f"huey {facts['huey']} on SQLite {facts['sqlite_python']} (Python's sqlite3)",
        f"files: temporary folders on {facts['temp_filesystem']}; every process starts from its bytecode cache",
        "durability 'default': jobkit durability='full', raw PRAGMA synchronous=FULL, huey SqliteHuey() unchanged; "
        "'normal': all at synchronous=NORMAL",
        f"huey's connection, as it reports it (0 OFF, 1 NORMAL, 2 FULL): {huey_sync}",
        f"N={settings.n:,} jobs; {settings.rounds} round(s) each, sides interleaved; median [min .. max] of the rounds",
        f"latency over {settings.latency_jobs} jobs; idle CPU over {settings.idle_seconds:g}s (/proc/PID/stat)",
        "ratios: jobkit's median over huey's best configuration and over raw SQLite; "
        "throughput higher is better, latency, CPU and RSS lower",
        *postgres_header(facts, settings),
    ]


def postgres_header(facts: dict[str, Any], settings: Settings) -> list[str]:
    server = facts.get("postgres")
    if server is None:
        return []
    if "not_run" in server:
        return [f"PostgreSQL scenarios not run: {server['not_run']}"]
    shown = ", ".join(f"{name}={value}" for name, value in server["settings"].items())
    peers = ", ".join(f"{name} {facts.get(name)}" for name in ("psycopg", "procrastinate", "pgqueuer", "asyncpg"))
    return [
        f"PostgreSQL {server['version']} at {server['server']} ({shown}); {peers}",
        f"PostgreSQL scenarios: N={settings.pg_n:,}, a fresh database per side and round, dropped after it; "
        "ratios: jobkit's median over pgqueuer's, procrastinate's and the raw psycopg loop's",
    ]


def columns(versus: Sequence[Side]) -> str:
    ratios = "".join(f" {'jobkit/' + side:>20}" for side in versus)
    return f"  {'side':<32} {'durab.':<8} {'metric':<34} {'median':>10} {'min':>10} {'max':>10}{ratios}"


def case_rows(case: Case, cases: Sequence[Case], versus: Sequence[Side]) -> list[str]:
    rows = []
    for metric in case.metrics:
        summary = case.summary(metric)
        assert summary is not None
        ratios = [""] * len(versus)
        if case.side == "jobkit":
            ratios = [times(ratio(cases, case.scenario, case.durability, metric, side)) for side in versus]
        rows.append(
            f"  {case.label:<32} {case.durability:<8} {metric.key:<34} {number(summary.median):>10} "
            f"{number(summary.min):>10} {number(summary.max):>10}" + "".join(f" {r:>20}" for r in ratios)
        )
    rows += [f"  {case.label:<32} {case.durability:<8} error: {error.splitlines()[0]}" for error in case.errors]
    return rows


def goal_rows(found: Sequence[Goal]) -> list[str]:
    rows = ["goals (issues 5 for SQLite, 12 for PostgreSQL, 13 for queues, 15 for producers), on the medians above:"]
    for goal in found:
        sign = ">=" if goal.at_least else "<="
        verdict = "met" if goal.met else "MISSED"
        value, target = f"{number(goal.value)}{goal.unit}", f"{sign} {number(goal.target)}{goal.unit}"
        rows.append(f"  {goal.text:<42} {goal.durability:<8} {value:>18}   goal {target:<22} {verdict}")
    return rows


def table(
    facts: dict[str, Any],
    settings: Settings,
    huey: dict[str, Any],
    scenarios: Sequence[Scenario],
    cases: Sequence[Case],
) -> str:
    lines = [*header(facts, settings, huey), ""]
    for scenario in scenarios:
        lines += [f"{scenario.number}. {scenario.title}", columns(scenario.versus)]
        ordered = sorted(
            (c for c in cases if c.scenario == scenario.key), key=lambda c: DURABILITIES.index(c.durability)
        )
        for case in ordered:
            lines += case_rows(case, cases, scenario.versus)
        lines.append("")
    found = goals(cases)
    if found:
        lines += goal_rows(found)
    errors = [(case, error) for case in cases for error in case.errors]
    if errors:
        lines += ["", "errors:"]
        lines += [f"  {case.scenario} {case.durability} {case.label}: {error}" for case, error in errors]
    return "\n".join(lines)


# -- the JSON -----------------------------------------------------------------------------
def document(
    facts: dict[str, Any],
    settings: Settings,
    huey: dict[str, Any],
    cases: Sequence[Case],
    text: str,
    *,
    scenarios: Sequence[Scenario],
) -> dict[str, Any]:
    versus = {scenario.key: scenario.versus for scenario in scenarios}
    ratios = [
        {
            "scenario": case.scenario,
            "durability": case.durability,
            "metric": metric.key,
            "versus": side,
            "ratio": ratio(cases, case.scenario, case.durability, metric, side),
        }
        for case in cases
        if case.side == "jobkit"
        for metric in case.metrics
        for side in versus[case.scenario]
    ]
    return {
        "machine": facts,
        "settings": asdict(settings),
        "huey_connection": huey,
        "cases": [case.as_json() for case in cases],
        "ratios": ratios,
        "goals": [{**asdict(goal), "met": goal.met} for goal in goals(cases)],
        "table": text.splitlines(),
    }


def save(doc: dict[str, Any], *, latest: bool, folder: Path = RESULTS) -> list[Path]:
    """Write *doc* to a timestamped file, and to ``latest.json`` when *latest*; return the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    paths = [folder / f"{stamp}.json"] + ([folder / "latest.json"] if latest else [])
    text = json.dumps(doc, indent=2) + "\n"
    for path in paths:
        path.write_text(text)
    return paths
