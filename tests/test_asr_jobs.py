"""ASR work as jobs on Redis Streams (cluster/asr.py): a real Valkey server, real Whisper tiny.en, real speech.

Workers run as ``voxgate asr-worker`` subprocesses (killed with SIGKILL to test reclaim), except where the test
must hold a worker back until the queue is set up (finals first), where it runs in a thread."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis

from cluster.asr import GROUP, AsrWorker, RemoteScheduler
from models.base import pcm_to_float
from models.decoding import PARTIAL, QUICK_WINDOW, Job, Scheduler, WhisperRunner
from models.locate import whisper_tiny_en_dir
from tests.conftest import pcm

ROOT = Path(__file__).resolve().parents[1]
TTL = 1.0  # workers' heartbeat expiry here: a killed worker is known dead within about a second


@pytest.fixture(scope="module")
def runner() -> WhisperRunner:
    return WhisperRunner(whisper_tiny_en_dir(), cpu_threads=1)


@pytest.fixture(scope="module")
def speech(data):
    folder = data / "asr" / "speechbrain-en"
    return [pcm_to_float(pcm(folder / f"spk1_snt{i}.wav")) for i in (2, 1, 3)]  # 3.2, 2.9 and 2.7 s


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}:asr"  # each test its own streams and workers


@pytest.fixture
def workers(redis_url, prefix, tmp_path):
    """Starts ``voxgate asr-worker`` workers on tiny.en; kills those still running at the end."""
    procs: list[subprocess.Popen] = []

    def start(worker_id: str, *options: str) -> subprocess.Popen:
        log = (tmp_path / f"{worker_id}.log").open("wb")
        command = [
            sys.executable,
            "-m",
            "cli",
            "asr-worker",
            "--redis",
            redis_url,
            "--prefix",
            prefix,
            "--id",
            worker_id,
        ]
        command += ["--whisper-model", "tiny.en", "--english-model", "off", "--device", "cpu", "--whisper-threads"]
        command += ["1", "--ttl", str(TTL), "--claim-idle", "1", *options]
        procs.append(subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
        return procs[-1]

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


@pytest.fixture
def node(redis_url, prefix):
    scheduler = RemoteScheduler(redis_url, "node-a", Scheduler(1), prefix=prefix, refresh=0.2, partial_deadline=30)
    yield scheduler
    scheduler.close()


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def pending(redis_url: str, prefix: str) -> int:
    """Finals read by a worker and not acked."""
    return redis.Redis.from_url(redis_url).xpending(f"{prefix}:finals", GROUP)["pending"]


def test_a_node_with_no_worker_decodes_locally(node, runner, speech):
    decoded = node.submit(Job(runner, speech[0], "en")).result(60)
    partial = node.offer(Job(runner, speech[1], "en", window=QUICK_WINDOW, priority=PARTIAL), "stream")
    assert partial is not None and partial.result(60).texts["transcribe"]
    assert "figures" in decoded.texts["transcribe"]
    counts = node.counts
    assert (counts["final"], counts["partial"], counts["remote_final"], counts["remote_partial"]) == (1, 1, 0, 0)


def test_a_worker_decodes_finals_and_partials_as_the_node_would(node, workers, runner, speech):
    expected = runner.decode([Job(runner, speech[0], "en")])[0]
    worker = workers("w1", "--stale-partial", "30")
    wait_until(lambda: "w1" in node.workers)
    assert node.submit(Job(runner, speech[0], "en")).result(60) == expected
    partial = node.offer(Job(runner, speech[1], "en", window=QUICK_WINDOW, priority=PARTIAL), "stream")
    assert partial is not None
    assert node.offer(Job(runner, speech[1], "en", window=QUICK_WINDOW, priority=PARTIAL), "stream") is None
    assert "dog" in partial.result(60).texts["transcribe"]
    counts = node.counts
    assert (counts["final"], counts["partial"], counts["remote_final"], counts["remote_partial"]) == (0, 0, 1, 1)
    worker.terminate()  # SIGTERM: it leaves at once, not a heartbeat's expiry later
    assert worker.wait(10) == 0
    node.refresh_workers()
    assert not node.workers


def test_a_dead_workers_final_is_reclaimed_by_another(node, workers, runner, speech, redis_url, prefix, tmp_path):
    expected = runner.decode([Job(runner, speech[0], "en")])[0]
    node.final_deadline = 120  # only a reclaim can answer in time
    first = workers("dies", "--hold-before-decode", "120")
    wait_until(lambda: "dies" in node.workers)
    future = node.submit(Job(runner, speech[0], "en"))
    wait_until(lambda: pending(redis_url, prefix) == 1)  # read, held, not acked
    workers("lives")
    wait_until(lambda: "lives" in node.workers)
    first.kill()
    assert future.result(60) == expected
    counts = node.counts
    assert (counts["remote_final"], counts["fallback"], counts["final"]) == (1, 0, 0)
    assert "reclaimed 1 jobs" in (tmp_path / "lives.log").read_text()


def test_with_no_worker_left_a_final_is_decoded_locally_within_the_deadline(
    node, workers, runner, speech, redis_url, prefix
):
    node.final_deadline = 20.0
    only = workers("only", "--hold-before-decode", "120")
    wait_until(lambda: "only" in node.workers)
    future = node.submit(Job(runner, speech[0], "en"))
    wait_until(lambda: pending(redis_url, prefix) == 1)
    only.kill()
    killed = time.monotonic()
    assert "figures" in future.result(60).texts["transcribe"]
    assert time.monotonic() - killed < node.final_deadline / 2  # it did not wait for the deadline: no worker lived
    counts = node.counts
    assert (counts["fallback"], counts["final"], counts["remote_final"]) == (1, 1, 0)
    wait_until(lambda: redis.Redis.from_url(redis_url).xlen(f"{prefix}:finals") == 0, 5)  # no one decodes it again


def test_a_worker_takes_the_finals_before_the_partials_queued_earlier(node, runner, speech, redis_url, prefix):
    worker = AsrWorker(redis_url, [runner], prefix=prefix, stale_partial=60, ttl=30)
    worker.heartbeat()  # alive to the node, but reading nothing yet
    node.refresh_workers()
    order: list[str] = []
    futures = {
        name: node.offer(Job(runner, speech[i], "en", window=QUICK_WINDOW, priority=PARTIAL), name)
        for name, i in (("partial 1", 1), ("partial 2", 2))
    }
    futures |= {name: node.submit(Job(runner, speech[i], "en")) for name, i in (("final 1", 0), ("final 2", 1))}
    for name, future in futures.items():
        future.add_done_callback(lambda _, name=name: order.append(name))
    db = redis.Redis.from_url(redis_url)
    wait_until(lambda: db.xlen(f"{prefix}:partials") == 2 and db.xlen(f"{prefix}:finals") == 2, 5)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        for future in futures.values():
            assert future.result(60).texts["transcribe"]
    finally:
        worker.close()
        thread.join(10)
    assert order == ["final 1", "final 2", "partial 1", "partial 2"]
    assert node.counts["remote_final"] == 2 and node.counts["remote_partial"] == 2
