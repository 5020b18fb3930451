"""ASR work as jobs on Redis Streams, so that the nodes of a cluster share a pool of Whisper workers.

Why it is built this way:

* **Streams and one consumer group.** A node XADDs each decode to ``{prefix}:finals`` or ``{prefix}:partials``;
  ``voxgate asr-worker`` processes on any machine XREADGROUP them in the group ``asr``, so each job goes to one
  worker, and it stays in the group's pending list until that worker has replied and XACKed it.
* **Reclaim.** A worker renews its key ``{prefix}:worker:{id}`` (a short PX expiry) and the idle time of the
  entries in its hands every second. An entry left idle past ``claim_idle`` was taken by a worker that died;
  any live worker takes it over with XAUTOCLAIM. Delivery is at least once: a job decoded but not acked is decoded
  again, and the node keeps the first answer.
* **Finals first, across the cluster.** A worker reads finals (up to a batch that shares one encoder call) in
  one lane and partials in another, which takes one only while no final is in hand (and a final that comes
  meanwhile starts beside it, on a second replica); a partial that waited past ``stale_partial`` is dropped
  unread, since its stream has asked again with more audio by then.
* **No utterance lost.** The node decodes on its own ``Scheduler`` whenever no live worker holds the job's model;
  and a final sent out but not answered within ``final_deadline``, or whose every worker died, is decoded locally
  too (a remote answer that still comes first wins). A partial not answered in time is cancelled: its stream
  shows nothing new and asks again.
* **Replies** come back on the node's own stream ``{prefix}:replies:{node}``, which one thread reads to resolve
  the callers' futures. ``submit`` and ``offer`` do no I/O (the event loop may call them): another thread sends.

Models are named by content (``model_key``), not by path, which differs from machine to machine; a worker refuses
a job for a model it lacks, and the node then decodes it locally.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import queue
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis

from models.decoding import FINAL, PARTIAL, Decoded, Job, Scheduler, WhisperRunner

log = logging.getLogger("voxgate.cluster.asr")

PREFIX = "voxgate:asr"
GROUP = "asr"
REPLY_MAXLEN = 1000  # replies are deleted once read; the cap bounds a dead node's stream
JOB_MAXLEN = 10000  # a safety cap only: entries are deleted once answered or given up
Entry = tuple[str, str, dict[bytes, bytes]]  # (stream, entry id, fields)


class RemoteDecodeError(RuntimeError):
    """A worker failed to decode a job; the message is the worker's."""


_model_keys: dict[Path, str] = {}


def model_key(path: Path) -> str:
    """A Whisper model's name across machines: the size of its weights and a digest of its config (the joined base
    model's cache folder, or a package's site-packages, differ from machine to machine)."""
    key = _model_keys.get(path)
    if key is None:
        config = path / "config.json"
        digest = hashlib.sha256(config.read_bytes() if config.is_file() else b"").hexdigest()[:10]
        key = _model_keys[path] = f"whisper-{(path / 'model.bin').stat().st_size}-{digest}"
    return key


def _entry_time(entry: str) -> float:
    """When Redis added a stream entry (its id's milliseconds), in seconds on the server's clock."""
    return int(entry.split("-")[0]) / 1000


@dataclass(eq=False)
class _Sent:
    """A job sent to the workers and not yet answered."""

    job: Job
    rid: str
    model: str
    stream: str
    deadline: float  # monotonic: a final then decodes locally; a partial is cancelled
    entry: str | None = None  # its stream entry, once added
    local: Future | None = None  # the local decode of a final that fell back


class RemoteScheduler:
    """``models.decoding.Scheduler``'s surface over the cluster's workers, with ``local`` for when none can take a
    job; see the module docstring. ``counts`` adds to the local scheduler's ("final", "partial": decoded here)
    "remote_final" and "remote_partial" (answered by workers), "fallback" (finals sent out, then decoded here),
    "dropped" (partials given up) and "withdrawn" (sent out, then cancelled by their caller)."""

    def __init__(
        self,
        redis_url: str,
        node: str,
        local: Scheduler,
        *,
        prefix: str = PREFIX,
        final_deadline: float = 10.0,
        partial_deadline: float = 2.0,
        refresh: float = 1.0,
        block: float = 1.0,
    ) -> None:
        self.local, self.node, self.prefix = local, node, prefix
        self.final_deadline, self.partial_deadline = final_deadline, partial_deadline
        self.refresh, self.block = refresh, block  # seconds between liveness checks; a reply read's longest wait
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=block + 5, socket_connect_timeout=2)
        self._streams = {FINAL: f"{prefix}:finals", PARTIAL: f"{prefix}:partials"}
        self._reply = f"{prefix}:replies:{node}"
        self._lock = threading.Lock()
        self._pending: dict[str, _Sent] = {}
        self._partials: dict[object, Future] = {}  # requester -> its partial in flight
        self._outbox: queue.SimpleQueue[_Sent] = queue.SimpleQueue()
        self._counts: Counter[str] = Counter()
        self._on_wait: Callable[[float], None] | None = None
        self._closed = False
        self.workers: dict[str, frozenset[str]] = {}  # live worker id -> the model keys it holds
        self._models: frozenset[str] = frozenset()
        self.refresh_workers()
        for target, name in ((self._pump, "asr-send"), (self._read_replies, "asr-replies")):
            threading.Thread(target=target, name=name, daemon=True).start()

    # The Scheduler's surface.

    def submit(self, job: Job) -> Future:
        """A final: to the workers when one holds its model, else to the local scheduler."""
        if self._closed:
            raise RuntimeError("the decoder is closed")
        key = model_key(job.runner.path)
        if key not in self._models:
            return self.local.submit(job)
        self._send(job, key)
        return job.future

    def offer(self, job: Job, requester: object) -> Future | None:
        """A partial: to the workers when one holds its model, one in flight per requester (else None: try again
        with more audio); to the local scheduler's rules when none does."""
        if self._closed:
            return None
        key = model_key(job.runner.path)
        if key not in self._models:
            return self.local.offer(job, requester)
        with self._lock:
            held = self._partials.get(requester)
            if held is not None and not held.done():
                return None
            self._partials[requester] = job.future
        self._send(job, key)
        return job.future

    @property
    def waiting(self) -> int:
        """Finals queued here and not started, and finals this node sent out and has no answer for."""
        with self._lock:
            remote = sum(1 for s in self._pending.values() if s.job.priority == FINAL and s.local is None)
        return self.local.waiting + remote

    @property
    def counts(self) -> Counter[str]:
        counts = Counter(self.local.counts)  # one C-level copy: the local workers may be counting
        with self._lock:
            counts.update(self._counts)
        return counts

    @property
    def on_wait(self) -> Callable[[float], None] | None:
        return self._on_wait

    @on_wait.setter
    def on_wait(self, observe: Callable[[float], None] | None) -> None:
        """Told how long each final waited: locally by the local scheduler, remotely as the worker measured it
        (from the entry's addition to its decode)."""
        self._on_wait = self.local.on_wait = observe

    def close(self) -> None:
        """Take no more jobs; those sent out still finish (or fall back), then the local scheduler closes."""
        self._closed = True

    # Liveness.

    def refresh_workers(self) -> None:
        """Which workers are alive, and the models they hold (their heartbeat keys); none if Redis fails."""
        workers: dict[str, frozenset[str]] = {}
        try:
            keys = list(self._redis.scan_iter(match=f"{self.prefix}:worker:*", count=1000))
            for k, card in zip(keys, self._redis.mget(keys) if keys else [], strict=True):
                if card:
                    workers[k.decode().rsplit(":", 1)[1]] = frozenset(json.loads(card)["models"])
        except redis.RedisError as e:
            log.warning("ASR workers unknown (%s): decoding locally", e)
        self.workers = workers
        self._models = frozenset().union(*workers.values())

    # Sending, and giving up.

    def _send(self, job: Job, key: str) -> None:
        deadline = self.final_deadline if job.priority == FINAL else self.partial_deadline
        sent = _Sent(job, uuid.uuid4().hex, key, self._streams[job.priority], time.monotonic() + deadline)
        with self._lock:
            self._pending[sent.rid] = sent
        self._outbox.put(sent)

    def _pump(self) -> None:
        """Send what is queued, learn which workers live, and give up on what waited too long."""
        next_refresh = time.monotonic() + self.refresh
        while not (self._closed and self._idle()):
            try:
                self._post(self._outbox.get(timeout=0.1))
            except queue.Empty:
                pass
            now = time.monotonic()
            if now >= next_refresh:
                self.refresh_workers()
                next_refresh = now + self.refresh
            self._sweep(now)
        self.local.close()

    def _idle(self) -> bool:
        with self._lock:
            return not self._pending and self._outbox.empty()

    def _post(self, sent: _Sent) -> None:
        if sent.job.future.cancelled():  # withdrawn before it left
            self._finish(sent, "withdrawn")
            return
        if sent.local is not None:  # given up before it left
            return
        job = sent.job
        pcm = np.clip(np.round(job.audio * 32768.0), -32768, 32767).astype("<i2")
        fields = {
            "id": sent.rid,
            "reply": self._reply,
            "model": sent.model,
            "audio": pcm.tobytes(),
            "language": job.language or "",
            "tasks": ",".join(job.tasks),
            "window": job.window,
            "priority": job.priority,
            "detect": int(job.detect),
            "queued": time.time() - (time.monotonic() - job.queued),
        }
        try:
            sent.entry = self._redis.xadd(sent.stream, fields, maxlen=JOB_MAXLEN, approximate=True).decode()
        except redis.RedisError as e:
            log.warning("could not send an ASR job (%s): decoding locally", e)
            self._give_up(sent)

    def _sweep(self, now: float) -> None:
        with self._lock:
            sents = list(self._pending.values())
            self._partials = {r: f for r, f in self._partials.items() if not f.done()}
        for sent in sents:
            if sent.job.future.cancelled():  # its caller withdrew it (a guess at a final)
                if sent.local is not None:
                    sent.local.cancel()
                self._finish(sent, "withdrawn")
                self._delete(sent)
            elif sent.local is None and (now > sent.deadline or sent.model not in self._models):
                self._give_up(sent)
                self._delete(sent)

    def _give_up(self, sent: _Sent) -> None:
        """A final is decoded here instead; a partial is cancelled."""
        if sent.job.priority != FINAL:
            with self._lock:
                dropped = sent.job.future.cancel()  # its stream shows nothing new, and asks again with more audio
            self._finish(sent, "dropped" if dropped else None)
            return
        with self._lock:
            if sent.local is not None or sent.job.future.done():
                return
            job = dataclasses.replace(sent.job, future=Future())  # its own future: a remote answer may still win
            sent.local = job.future
            self._counts["fallback"] += 1
        job.future.add_done_callback(lambda f: self._local_done(sent, f))
        try:
            self.local.submit(job)
        except RuntimeError as e:  # the local scheduler is closed
            job.future.set_exception(e)

    def _local_done(self, sent: _Sent, future: Future) -> None:
        if future.cancelled():  # a remote answer came first, or the caller withdrew it
            return
        self._finish(sent)
        error = future.exception()
        self._settle(sent.job.future, None if error else future.result(), error)

    def _delete(self, sent: _Sent) -> None:
        """Remove a given-up job from its stream, so that no worker decodes it for nothing."""
        if sent.entry:
            try:
                self._redis.xdel(sent.stream, sent.entry)
            except redis.RedisError:
                pass

    def _finish(self, sent: _Sent, count: str | None = None) -> None:
        with self._lock:
            self._pending.pop(sent.rid, None)
            if count:
                self._counts[count] += 1

    # Replies.

    def _read_replies(self) -> None:
        last = "0-0"
        while not (self._closed and self._idle()):
            try:
                got = self._redis.xread({self._reply: last}, count=100, block=int(self.block * 1000))
                for _, entries in got or []:
                    for _, fields in entries:
                        self._answer(fields)
                    last = entries[-1][0].decode()
                    self._redis.xdel(self._reply, *(e for e, _ in entries))
            except redis.RedisError as e:
                log.warning("reading ASR replies failed (%s); retrying", e)
                time.sleep(1)

    def _answer(self, fields: dict[bytes, bytes]) -> None:
        with self._lock:
            sent = self._pending.get(fields[b"id"].decode())
        if sent is None:
            return  # answered already (at-least-once delivery), withdrawn, or another run's
        kind = fields[b"kind"].decode()
        if kind == "ok":
            if self._settle(sent.job.future, Decoded(**json.loads(fields[b"decoded"]))):
                final = sent.job.priority == FINAL
                self._finish(sent, "remote_final" if final else "remote_partial")
                if final and self._on_wait is not None:
                    self._on_wait(float(fields[b"waited"]))
            else:
                self._finish(sent)
            if sent.local is not None:
                sent.local.cancel()  # no effect once it runs: its result is then ignored
        elif kind == "error":
            self._finish(sent)
            self._settle(sent.job.future, None, RemoteDecodeError(fields[b"error"].decode()))
        else:  # "refused" (no such model there) or "stale" (a partial that waited too long)
            self._give_up(sent)

    def _settle(self, future: Future, result: Decoded | None, error: BaseException | None = None) -> bool:
        """Resolve a caller's future once, whichever answer comes first; False if it was done or cancelled."""
        with self._lock:
            if future.done() or future.running() or not future.set_running_or_notify_cancel():
                return False
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
        return True


@dataclass(eq=False)
class _Task:
    """A job as a worker read it."""

    stream: str
    entry: str
    rid: str
    reply: str
    model: str
    job: Job | None  # None: this worker has no such model


class AsrWorker:
    """Decodes the cluster's jobs with ``runners`` until ``close``; see the module docstring. ``hold``: seconds to
    wait between reading jobs and decoding them (tests kill a worker then)."""

    def __init__(
        self,
        redis_url: str,
        runners: Iterable[WhisperRunner],
        *,
        worker_id: str | None = None,
        prefix: str = PREFIX,
        batch: int = 4,
        block: float = 0.5,
        claim_idle: float = 5.0,
        claim_every: float = 1.0,
        stale_partial: float = 1.5,
        ttl: float = 3.0,
        beat: float = 1.0,
        hold: float = 0.0,
    ) -> None:
        self.runners = {model_key(r.path): r for r in runners}
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.batch, self.block, self.hold = max(1, batch), block, hold
        self.claim_idle, self.claim_every, self.stale_partial = claim_idle, claim_every, stale_partial
        self.ttl, self.beat = ttl, beat
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=block + 5, socket_connect_timeout=2)
        self._finals, self._partials = f"{prefix}:finals", f"{prefix}:partials"
        self._key = f"{prefix}:worker:{self.id}"
        self._card = json.dumps({"models": sorted(self.runners), "host": socket.gethostname(), "pid": os.getpid()})
        self._stop = threading.Event()
        self._hand_lock = threading.Lock()
        self._in_hand: dict[str, list[str]] = {}  # stream -> entries read and not yet acked
        self._offset = 0.0  # the Redis server's clock minus ours: stream ids carry the server's time
        self._next_claim = 0.0
        self._finals_busy = threading.Event()  # finals wait or are in hand: partials wait (the cores are theirs)
        self._finals_busy.set()  # until the finals' lane has looked
        self.counts: Counter[str] = Counter()  # "final", "partial", "stale", "refused", "error", "reclaimed"

    def close(self) -> None:
        """Stop after the jobs in hand."""
        self._stop.set()

    def run(self) -> None:
        """Two lanes, as a node's scheduler has: finals (and reclaimed jobs), and partials in a thread of their
        own, which takes one only while no final is in hand, so a final never waits behind a partial."""
        self._join()
        self.heartbeat()  # alive before the first read
        threads = [
            threading.Thread(target=self._beating, name="asr-heartbeat", daemon=True),
            threading.Thread(target=self._lane, args=(self._next_partial,), name="asr-partials", daemon=True),
        ]
        for thread in threads:
            thread.start()
        log.info("ASR worker %s serving %s", self.id, ", ".join(self.runners))
        try:
            self._lane(self._next_finals)
        finally:
            self._stop.set()
            for thread in threads:
                thread.join()
            self._leave()

    def _lane(self, take: Callable[[], list[Entry]]) -> None:
        while not self._stop.is_set():
            try:
                if entries := take():
                    self._handle(entries)
            except redis.RedisError as e:
                log.warning("ASR worker %s: %s; retrying", self.id, e)
                if "NOGROUP" in str(e):
                    self._join()  # the streams went (a Redis restart without persistence)
                self._stop.wait(1)

    def _next_finals(self) -> list[Entry]:
        """A dead worker's jobs now and then; else a batch of finals. The lane counts as busy (no partial starts)
        until it finds no final waiting; then it waits briefly for one."""
        entries: list[Entry] = []
        if time.monotonic() >= self._next_claim:
            entries, self._next_claim = self._reclaim(), time.monotonic() + self.claim_every
        entries = entries or self._read({self._finals: ">"}, self.batch)
        if not entries:
            self._finals_busy.clear()
            entries = self._read({self._finals: ">"}, self.batch, self.block)
        if entries:
            self._finals_busy.set()
        return entries

    def _next_partial(self) -> list[Entry]:
        """One partial, only while the finals' lane is idle."""
        if self._finals_busy.is_set():
            self._stop.wait(0.01)
            return []
        return self._read({self._partials: ">"}, 1, min(self.block, 0.1))

    def _read(self, streams: dict[str, str], count: int, block: float | None = None) -> list[Entry]:
        got = self._redis.xreadgroup(
            GROUP, self.id, streams, count=count, block=None if block is None else int(block * 1000)
        )
        return [(s.decode(), e.decode(), f) for s, entries in got or [] for e, f in entries]

    def _reclaim(self) -> list[Entry]:
        """Entries a dead worker took (idle past ``claim_idle``: a live one keeps its own fresh), finals first."""
        for stream in (self._finals, self._partials):
            claimed = self._redis.xautoclaim(stream, GROUP, self.id, int(self.claim_idle * 1000), count=self.batch)[1]
            entries = [(stream, e.decode(), f) for e, f in claimed if f]  # a deleted entry has no fields
            if entries:
                log.info("ASR worker %s reclaimed %d jobs from %s", self.id, len(entries), stream)
                self.counts["reclaimed"] += len(entries)
                return entries
        return []

    def _handle(self, entries: list[Entry]) -> None:
        """Decode what one lane read (finals grouped into shared decodes); the entries stay in hand until then."""
        with self._hand_lock:
            for stream, entry, _ in entries:
                self._in_hand.setdefault(stream, []).append(entry)
        try:
            if self.hold:
                time.sleep(self.hold)
            tasks = [self._task(*e) for e in entries]
            for t in tasks:
                if t.job is None:
                    self._done(t, "refused", error=f"worker {self.id} has no model {t.model}")
            finals = [t for t in tasks if t.job is not None and t.job.priority == FINAL]
            for group in self._groups(finals):
                self._decode(group)
            for t in tasks:
                if t.job is not None and t.job.priority != FINAL:
                    self._decode([t])
        finally:
            with self._hand_lock:
                for stream, entry, _ in entries:
                    self._in_hand[stream].remove(entry)

    def _task(self, stream: str, entry: str, f: dict[bytes, bytes]) -> _Task:
        model = f[b"model"].decode()
        runner = self.runners.get(model)
        job = None
        if runner is not None:
            job = Job(
                runner,
                np.frombuffer(f[b"audio"], "<i2").astype(np.float32) / 32768.0,
                f[b"language"].decode() or None,
                tuple(t for t in f[b"tasks"].decode().split(",") if t),
                int(f[b"window"]),
                int(f[b"priority"]),
                f[b"detect"] == b"1",
            )
        return _Task(stream, entry, f[b"id"].decode(), f[b"reply"].decode(), model, job)

    def _groups(self, tasks: list[_Task]) -> list[list[_Task]]:
        """Finals that can share one decode (``Job.batches_with``), up to ``batch`` a group, in arrival order."""
        groups: list[list[_Task]] = []
        for t in tasks:
            group = next((g for g in groups if len(g) < self.batch and g[0].job.batches_with(t.job)), None)
            if group is None:
                groups.append([t])
            else:
                group.append(t)
        return groups

    def _decode(self, tasks: list[_Task]) -> None:
        now = time.time() + self._offset
        live = []
        for t in tasks:
            if t.job.priority != FINAL and now - _entry_time(t.entry) > self.stale_partial:
                self._done(t, "stale")
            else:
                live.append(t)
        if not live:
            return
        try:
            results = live[0].job.runner.decode([t.job for t in live])
        except Exception as e:  # every waiter learns of it; the worker lives on
            log.exception("ASR worker %s: a decode failed", self.id)
            for t in live:
                self._done(t, "error", error=f"{type(e).__name__}: {e}")
            return
        for t, decoded in zip(live, results, strict=True):
            self._done(t, "ok", decoded=json.dumps(dataclasses.asdict(decoded)), waited=now - _entry_time(t.entry))

    def _done(self, t: _Task, kind: str, **reply: object) -> None:
        """Reply, then ack and delete the entry: a worker that dies in between leaves it to be decoded again."""
        self.counts[kind if kind != "ok" else ("final" if t.job.priority == FINAL else "partial")] += 1
        pipe = self._redis.pipeline(transaction=False)
        pipe.xadd(t.reply, {"id": t.rid, "kind": kind, "worker": self.id, **reply}, maxlen=REPLY_MAXLEN)
        pipe.xack(t.stream, GROUP, t.entry)
        pipe.xdel(t.stream, t.entry)
        pipe.execute()

    def _join(self) -> None:
        for stream in (self._finals, self._partials):
            try:
                self._redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except redis.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    def _beating(self) -> None:
        while not self._stop.wait(self.beat):
            try:
                self.heartbeat()
            except redis.RedisError as e:
                log.warning("ASR worker %s heartbeat failed: %s", self.id, e)

    def heartbeat(self) -> None:
        """Renew the key that says this worker lives, and the entries in hand (so no one reclaims them during a
        long decode); learn the server's clock."""
        with self._hand_lock:
            hand = {s: list(ids) for s, ids in self._in_hand.items() if ids}
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(self._key, self._card, px=int(self.ttl * 1000))
        pipe.time()
        for stream, ids in hand.items():
            pipe.xclaim(stream, GROUP, self.id, 0, ids, justid=True)
        sent = time.time()
        seconds, micros = pipe.execute()[1]
        self._offset = seconds + micros / 1e6 - (sent + time.time()) / 2

    def _leave(self) -> None:
        """Say this worker is gone at once, and leave the group (only if nothing is left in its hands)."""
        try:
            self._redis.delete(self._key)
            for stream in (self._finals, self._partials):
                if not self._redis.xpending_range(stream, GROUP, "-", "+", 1, consumername=self.id):
                    self._redis.xgroup_delconsumer(stream, GROUP, self.id)
        except redis.RedisError as e:
            log.warning("ASR worker %s could not leave cleanly: %s", self.id, e)


def load_runners(
    model: str = "base",
    english: str = "tiny.en",
    *,
    device: str = "auto",
    cpu_threads: int = 0,
    compute_type: str | None = None,
    beam_size: int = 1,
) -> list[WhisperRunner]:
    """The runners a server with the same flags loads (``--whisper-model`` base, tiny.en or a DIR;
    ``--english-model``), built by ``WhisperEngine`` itself so that a worker holds exactly the nodes' models."""
    from models.asr_whisper import WhisperEngine
    from models.engines import english_model_dir
    from models.locate import whisper_tiny_en_dir

    model_dir = None if model == "base" else whisper_tiny_en_dir() if model == "tiny.en" else Path(model)
    english_dir = english_model_dir(english)
    if model_dir is not None and english_dir is not None and model_dir.resolve() == english_dir.resolve():
        english_dir = None
    engine = WhisperEngine(
        model_dir,
        english_model_dir=english_dir,
        device=device,
        cpu_threads=cpu_threads,
        compute_type=compute_type,
        beam_size=beam_size,
        workers=2,  # two replicas (sharing their weights): a final starts beside a partial in flight
    )
    engine.scheduler.close()  # a worker's lanes are its scheduler
    return [r for r in (engine.runner, engine.english) if r is not None]


def run_worker(redis_url: str, runners: Iterable[WhisperRunner], **options) -> None:
    """Decode jobs with ``runners`` (``load_runners``) until SIGTERM or SIGINT (which finish the jobs in hand first)."""
    worker = AsrWorker(redis_url, runners, **options)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.close())
    worker.run()
