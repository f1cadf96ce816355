"""``GET /metrics``: the queue in Prometheus's text format, from the dashboard's own snapshot and tally.

prometheus-client writes the format (escaping, ``# TYPE`` lines, histogram suffixes);
this module only says what the numbers are:

- ``jobkit_jobs{queue,status}``: jobs in the store now (a gauge);
- ``jobkit_queue_paused{queue}``: 1 while a queue is paused;
- ``jobkit_oldest_due_job_age_seconds``: how long the oldest due job has waited (0 with none);
- ``jobkit_running_leases``: workers (and ``now()`` calls) holding leases;
- ``jobkit_jobs_enqueued_total{job_name,queue}``, ``jobkit_jobs_completed_total``,
  ``jobkit_jobs_failed_total``, ``jobkit_jobs_cancelled_total``: counted by
  :class:`~jobkit.web.tally.Tally` since this dashboard started (finished ones from the hour before too);
- ``jobkit_job_run_seconds{job_name}``: a histogram of completed jobs' run times
  (claim to completion of the attempt that completed).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from jobkit.model import JobStatus
from jobkit.present import holders
from jobkit.web.live import Snapshot
from jobkit.web.state import dashboard_of
from jobkit.web.tally import BUCKETS, Tally

ENDED = {JobStatus.COMPLETED: "completed", JobStatus.FAILED: "failed", JobStatus.CANCELLED: "cancelled"}


class QueueCollector(Collector):
    """The metrics of one snapshot and tally (a new collector per scrape: nothing is kept between them)."""

    def __init__(self, snapshot: Snapshot, tally: Tally) -> None:
        self.snapshot = snapshot
        self.tally = tally

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        jobs = GaugeMetricFamily("jobkit_jobs", "Jobs in the store, by queue and status.", labels=["queue", "status"])
        paused = GaugeMetricFamily("jobkit_queue_paused", "1 while the queue is paused.", labels=["queue"])
        for info in snapshot.queues:
            paused.add_metric([info.name], 1.0 if info.paused else 0.0)
            for status in JobStatus:
                jobs.add_metric([info.name, status.value], float(info.counts.get(status, 0)))
        yield jobs
        yield paused
        oldest = snapshot.backlog.oldest_due
        age = max(0.0, (snapshot.at - oldest.scheduled_for).total_seconds()) if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "jobkit_oldest_due_job_age_seconds", "How long the oldest due job has waited to be claimed.", value=age
        )
        yield GaugeMetricFamily(
            "jobkit_running_leases",
            "Holders of leases on running jobs (workers, and now() calls).",
            value=float(len(holders(snapshot.summary.running))),
        )
        yield from self._totals()

    def _totals(self) -> Iterator[Metric]:
        enqueued, ended, run_times = self.tally.totals()
        labels = ["job_name", "queue"]
        made = CounterMetricFamily("jobkit_jobs_enqueued", "Jobs enqueued, as this dashboard saw.", labels=labels)
        for (name, queue), n in sorted(enqueued.items()):
            made.add_metric([name, queue], float(n))
        yield made
        families = {
            status: CounterMetricFamily(f"jobkit_jobs_{word}", f"Jobs {word}, as this dashboard saw.", labels=labels)
            for status, word in ENDED.items()
        }
        for (name, queue, status), n in sorted(ended.items(), key=lambda item: (*item[0][:2], item[0][2].value)):
            families[status].add_metric([name, queue], float(n))
        yield from families.values()
        histogram = HistogramMetricFamily(
            "jobkit_job_run_seconds", "Run time of completed jobs, by job name.", labels=["job_name"]
        )
        for name, seen in sorted(run_times.items()):
            buckets = [(repr(bound), float(count)) for bound, count in zip(BUCKETS, seen.counts, strict=True)]
            histogram.add_metric([name], [*buckets, ("+Inf", float(seen.total))], sum_value=seen.seconds)
        yield histogram


async def metrics(request: Request) -> Response:
    dashboard = dashboard_of(request)
    snapshot = await dashboard.hub.snapshot()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(snapshot, dashboard.tally))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
