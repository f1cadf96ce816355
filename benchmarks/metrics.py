"""What the benchmarks measure: metrics, the rounds of one case, and their summaries."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Durability = Literal["default", "normal"]
DURABILITIES: tuple[Durability, ...] = ("default", "normal")
Side = Literal["jobkit", "huey", "raw", "pgqueuer", "procrastinate"]


@dataclass(frozen=True)
class Metric:
    """A measured quantity; *higher_is_better* decides which of two sides is ahead."""

    name: str
    unit: str
    higher_is_better: bool

    @property
    def key(self) -> str:
        return f"{self.name} ({self.unit})"


THROUGHPUT = Metric("throughput", "jobs/s", higher_is_better=True)
P50 = Metric("p50 latency", "ms", higher_is_better=False)
P99 = Metric("p99 latency", "ms", higher_is_better=False)
IDLE_CPU = Metric("idle CPU", "% of a core", higher_is_better=False)
CPU_A_JOB = Metric("CPU a job", "us", higher_is_better=False)  # of a drain, start-up and shut-down left out
GROWTH = Metric("RSS growth", "x", higher_is_better=False)
SEEN_P50 = Metric("p50 handler end to seen", "ms", higher_is_better=False)
SEEN_P99 = Metric("p99 handler end to seen", "ms", higher_is_better=False)
HOT_SHARE = Metric("HOT updates", "% of updates", higher_is_better=True)


def peak_rss(jobs: int) -> Metric:
    """Peak RSS of a worker that drained *jobs* jobs."""
    return Metric(f"peak RSS after {count_label(jobs)} jobs", "MiB", higher_is_better=False)


def count_label(n: int) -> str:
    """``20000`` -> ``20k``, ``2500`` -> ``2.5k``, ``800`` -> ``800``."""
    if n >= 1000:
        return f"{n / 1000:g}k"
    return str(n)


def percentile(values: Sequence[float], q: float) -> float:
    """The *q*-th percentile (0..100) of *values*, interpolating between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    """Median, min and max of one metric over the rounds."""

    median: float
    min: float
    max: float
    rounds: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        return cls(statistics.median(values), min(values), max(values), tuple(values))


@dataclass
class Case:
    """One side in one configuration of one scenario at one durability, over the rounds."""

    scenario: str
    durability: Durability
    side: Side
    label: str
    metrics: list[Metric] = field(default_factory=list)
    rounds: list[dict[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, values: dict[Metric, float]) -> None:
        for metric in values:
            if metric not in self.metrics:
                self.metrics.append(metric)
        self.rounds.append({metric.key: value for metric, value in values.items()})

    def summary(self, metric: Metric) -> Summary | None:
        values = [r[metric.key] for r in self.rounds if metric.key in r]
        return Summary.of(values) if values else None

    def median(self, metric: Metric) -> float | None:
        summary = self.summary(metric)
        return None if summary is None else summary.median

    def as_json(self) -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        for metric in self.metrics:
            summary = self.summary(metric)
            assert summary is not None
            metrics[metric.key] = {
                "unit": metric.unit,
                "higher_is_better": metric.higher_is_better,
                "median": summary.median,
                "min": summary.min,
                "max": summary.max,
                "rounds": list(summary.rounds),
            }
        return {
            "scenario": self.scenario,
            "durability": self.durability,
            "side": self.side,
            "label": self.label,
            "metrics": metrics,
            "errors": self.errors,
        }
