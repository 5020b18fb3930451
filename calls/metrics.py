"""The server's Prometheus metrics: what its calls, links, decoders and sign-ins are doing, and how fast.

The latency histograms are fed by the same stamps every subtitle message carries (speech end, ASR done, MT done,
sent), so what production shows is what ``benchmarks.subtitles`` measures. One registry per server: several
servers in one process (tests) never share a series. Gauges that describe state (live calls, links by state,
the decode queue, the event loop's lag) are read when scraped, from whoever owns that state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Fine where the targets are (0.3-1.5 s), so a quantile interpolated inside a bucket stays within a few percent.
LATENCY_BUCKETS = (
    *(round(0.05 * i, 2) for i in range(1, 31)),  # 0.05 ... 1.5 s
    *(round(1.5 + 0.25 * i, 2) for i in range(1, 11)),  # ... 4 s
    5.0,
    7.5,
    10.0,
    20.0,
)
STAGES = ("vad_endpoint", "asr_final", "mt", "subtitle_sent", "voiceid_decision")

Reading = Callable[[], dict[str, float]]


class _Gauges(Collector):
    """Gauges read at scrape time: each is a name, a help text, a label name and a function giving value by label."""

    def __init__(self) -> None:
        self.readings: list[tuple[str, str, str, Reading]] = []

    def collect(self) -> Iterator[Metric]:
        for name, help_text, label, read in self.readings:
            family = GaugeMetricFamily(name, help_text, labels=[label] if label else [])
            for value_label, value in read().items():
                family.add_metric([value_label] if label else [], value)
            yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.stage = Histogram(
            "voxgate_stage_seconds",
            "Latency of each stage: vad_endpoint (end of speech to the endpoint), asr_final (end of speech to the "
            "final transcript), mt (final transcript to its translation), subtitle_sent (end of speech to the "
            "translated subtitle sent), speech_out (end of speech to its first translated audio sent to the listener), "
            "voiceid_decision (speech enough to decide to the decision)",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.subtitle = Histogram(
            "voxgate_subtitle_latency_seconds",
            "End of speech to the subtitle sent, by kind (final, translation) and leg (customer, agent)",
            ["kind", "leg"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decode_wait = Histogram(
            "voxgate_decode_wait_seconds", "How long a final decode waited", buckets=LATENCY_BUCKETS, registry=r
        )
        self.errors = Counter(
            "voxgate_errors", "Refused or failed WebRTC offers and phone ingress, by kind", ["kind"], registry=r
        )
        self.sign_in_failures = Counter(
            "voxgate_sign_in_failures", "Failed sign-ins: wrong (a password checked), throttled", ["reason"], registry=r
        )
        ProcessCollector(registry=r)  # process_resident_memory_bytes, CPU, open files
        self._gauges = _Gauges()
        r.register(self._gauges)

    def gauge(self, name: str, help_text: str, read: Reading, label: str = "") -> None:
        """A gauge whose values ``read`` gives when scraped (by ``label`` value; one value under "" if no label)."""
        self._gauges.readings.append((name, help_text, label, read))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
