"""End of turn: Smart Turn v3.2 against a fixed VAD hang-over, on real recordings (issue 10).

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.turn [--out benchmarks/results/turn.json]

(The model runs on one thread; the variable keeps numpy's matrix product in the features on one thread too.)

Each recording (asr/speechbrain-en, asr/multilingual en/pt/es/fr/de/it,
asr/jfk.flac, voiceid/librispeech-test-other) goes through
``media.segmenter.Segmenter`` with the WebRTC VAD and a hang-over longer than
any pause, so its speech is one segment whose voiced frames we keep. Two kinds
of point come out:

* mid: every pause of at least 150 ms followed by more speech of the same
  recording: where a short fixed hang-over would cut the utterance;
* end: the last voiced frame of the recording, its true end of speech.

At each point Smart Turn scores the utterance so far (from the segment's
pre-roll) plus the first 150 ms of the silence that follows, as recorded (a
file that stops sooner gives what it has). Reported, overall and per group:
how well P orders ends above mid pauses (AUC); the share of ends called
complete and of mid pauses wrongly called complete at several thresholds;
and, for fixed hang-overs and for policies that score once at 150 ms of
silence ("end if P >= x, else wait y ms"; or "wait y ms, but hold to 1000 ms
if P < z"), the mid pauses they cut, the recordings they break, their latency
after the true end (150 ms plus the model's p50 when ending early) and the
pauses a fixed hang-over of that same mean latency would cut. Cost per call
on one thread, p50/p95.

Labels are approximate where recordings hold more than one sentence: the
speechbrain-en, multilingual and jfk recordings are one sentence each, so
their mid pauses are inside a sentence; LibriSpeech utterances are audiobook
segments that can span several sentences (a mid pause may be a sentence end,
which a subtitle may cut at) and can end on a clause, so figures are also
given per group.

The model (Smart Turn v3.2: a 4-layer Whisper-style encoder with a classifier
head, int8 ONNX, 8.7 MB, 23 languages; BSD-2-Clause, Daily) ships inside the
``pipecat-ai`` wheel; only its file is used, never pipecat's code, so install
it with ``pip install --no-deps pipecat-ai==1.14.0``. It stays here, beside the
measurement, because the measurement says it does not pay: the server keeps
a fixed hang-over (benchmarks/README.md, "End of turn").
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from media.audio_io import read_pcm
from media.segmenter import Audio, Segmenter, SegmenterConfig, Start
from models.base import SAMPLE_RATE, pcm_to_float
from models.errors import ModelUnavailable
from models.locate import package_dir
from models.vad import WebRtcVad

MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
INSTALL_HINT = "pip install --no-deps pipecat-ai==1.14.0"
WINDOW_S = 8
_NORM_EPS = 1e-7  # as Hugging Face's WhisperFeatureExtractor(do_normalize=True), which the model was trained on


def smart_turn_path() -> Path:
    """The ONNX file inside the installed ``pipecat`` package, found without importing it."""
    path = package_dir("pipecat", INSTALL_HINT) / "audio" / "turn" / "smart_turn" / "data" / MODEL_FILE
    if not path.is_file():
        raise ModelUnavailable(f"{path} is missing: the end-of-turn model needs {INSTALL_HINT}")
    return path


def features(pcm: np.ndarray) -> np.ndarray:
    """The model's input for 16 kHz mono int16 of any length: (1, 80, 800) float32.

    The last 8 s, left-padded with silence, so the end of speech always sits at the end of the window.
    """
    n = WINDOW_S * SAMPLE_RATE
    x = pcm_to_float(np.asarray(pcm)[-n:])
    x = np.pad(x, (n - len(x), 0))
    x = (x - x.mean()) / np.sqrt(x.var() + _NORM_EPS)
    return _extractor()(x, padding=0)[np.newaxis].astype(np.float32)


@functools.cache
def _extractor():
    """One Whisper front end for the 8 s window (its mel filter bank is built once); stateless once built."""
    from faster_whisper.feature_extractor import FeatureExtractor

    return FeatureExtractor(
        feature_size=80, sampling_rate=SAMPLE_RATE, hop_length=160, n_fft=400, chunk_length=WINDOW_S
    )


class SmartTurn:
    """End-of-turn probability for an utterance in progress; one instance serves every call (stateless)."""

    name = "smart-turn-v3.2"

    def __init__(self, model_path: Path | None = None, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ModelUnavailable("onnxruntime is not installed: pip install onnxruntime") from e
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        path = model_path or smart_turn_path()
        self._session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def complete(self, pcm: np.ndarray) -> float:
        """P(the speaker has finished their turn), from the utterance so far (16 kHz mono int16, last 8 s used)."""
        (out,) = self._session.run(None, {self._input: features(pcm)})
        return float(np.asarray(out).reshape(-1)[0])


DATA = Path(os.environ.get("VOXGATE_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
PAUSE_MS = 150
THRESHOLDS = (0.3, 0.5, 0.7)
HANGOVERS_MS = (150, 250, 400, 600)
FALLBACKS_MS = (400, 600, 800, 1000)
HOLDS = (0.05, 0.2)
HELD_MS = 1000
# A hang-over and a length limit that no recording reaches: one segment per recording, every pause inside it.
FRAME_MS = 10  # WebRtcVad's default frame
WHOLE = SegmenterConfig(hangover_ms=60_000, max_segment_s=3600.0)


@dataclass(frozen=True, slots=True)
class Point:
    """A place where a segmenter would consider ending the utterance, and what Smart Turn said there."""

    group: str
    file: str
    kind: str  # "mid" (more speech follows) or "end" (the recording's last voiced frame)
    at_s: float  # end of the last voiced frame
    silence_ms: int  # mid: the pause's length; end: the audio the file holds after it
    p: float
    call_ms: float


def recordings() -> list[tuple[str, Path]]:
    multi = DATA / "asr" / "multilingual"
    out = [("speechbrain-en", f) for f in sorted((DATA / "asr" / "speechbrain-en").glob("*.wav"))]
    out += [("multilingual", multi / f"test{s}.wav") for s in ("", "_pt", "_es", "_fr", "_de", "_it")]
    out += [("jfk", DATA / "asr" / "jfk.flac")]
    out += [("librispeech", f) for f in sorted((DATA / "voiceid" / "librispeech-test-other").glob("*/*.flac"))]
    return out


def voiced_frames(pcm: np.ndarray) -> tuple[int, list[int]]:
    """The segment's first sample (pre-roll included) and the indices of its voiced VAD frames.

    A fresh VAD for each recording, as each call leg has its own: the WebRTC VAD adapts to the noise it hears.
    """
    vad = WebRtcVad(frame_ms=FRAME_MS)
    seg = Segmenter(vad, WHOLE)
    n = vad.frame_samples
    start, voiced = 0, []
    for k in range(len(pcm) // n):
        for s in seg.push(pcm[k * n : (k + 1) * n]):
            if isinstance(s, Start):
                start = round(s.audio_start * SAMPLE_RATE)
                voiced.append(k)  # the frame that completed the start window was voiced
            elif isinstance(s, Audio) and s.voiced:
                voiced.append(k)
    return start, voiced


def score(turn: SmartTurn, pcm: np.ndarray) -> tuple[float, float]:
    t0 = time.perf_counter()
    p = turn.complete(pcm)
    return p, (time.perf_counter() - t0) * 1000


def points(group: str, path: Path, turn: SmartTurn) -> list[Point]:
    pcm = read_pcm(path)
    start, voiced = voiced_frames(pcm)
    if not voiced:
        return []
    n = FRAME_MS * SAMPLE_RATE // 1000
    wait = PAUSE_MS * SAMPLE_RATE // 1000
    out = []
    for a, b in zip(voiced, voiced[1:], strict=False):
        gap_ms = (b - a - 1) * FRAME_MS
        if gap_ms >= PAUSE_MS:
            end = (a + 1) * n
            p, ms = score(turn, pcm[start : end + wait])
            out.append(Point(group, path.name, "mid", end / SAMPLE_RATE, gap_ms, p, ms))
    end = (voiced[-1] + 1) * n
    p, ms = score(turn, pcm[start : end + wait])
    out.append(Point(group, path.name, "end", end / SAMPLE_RATE, (len(pcm) - end) * 1000 // SAMPLE_RATE, p, ms))
    return out


def share(flags: list[bool]) -> float:
    return round(sum(flags) / len(flags), 3) if flags else float("nan")


def auc(pts: list[Point]) -> float:
    """How well P orders ends above mid pauses: the chance that a random end scores above a random mid pause."""
    ends = np.array([p.p for p in pts if p.kind == "end"])
    mids = np.array([p.p for p in pts if p.kind == "mid"])
    if not len(ends) or not len(mids):
        return float("nan")
    above = (ends[:, None] > mids[None, :]).mean() + 0.5 * (ends[:, None] == mids[None, :]).mean()
    return round(float(above), 3)


def by_threshold(pts: list[Point]) -> dict[str, dict[str, float | int]]:
    mids, ends = [p for p in pts if p.kind == "mid"], [p for p in pts if p.kind == "end"]
    return {
        str(x): {
            "ends_called_complete": share([p.p >= x for p in ends]),
            "mid_pauses_called_complete": share([p.p >= x for p in mids]),
            "ends": len(ends),
            "mid_pauses": len(mids),
        }
        for x in THRESHOLDS
    }


@dataclass(frozen=True, slots=True)
class Policy:
    """Score once at ``PAUSE_MS`` of silence: end there if P >= early; else end after ``hangover_ms`` of silence if
    P >= hold; else wait for ``held_ms``. A fixed hang-over never ends early and never holds."""

    name: str
    hangover_ms: int
    early: float = float("inf")
    hold: float = 0.0
    held_ms: int = 0

    def cuts(self, p: Point) -> bool:
        held = p.p < self.hold
        return p.p >= self.early or p.silence_ms >= (self.held_ms if held else self.hangover_ms)

    def latency_ms(self, p: Point, model_ms: float) -> float:
        if p.p >= self.early:
            return PAUSE_MS + model_ms
        return self.held_ms if p.p < self.hold else self.hangover_ms


def all_policies() -> list[Policy]:
    out = [Policy(f"fixed {h} ms", h) for h in HANGOVERS_MS]
    out += [Policy(f"P>={x} at {PAUSE_MS} ms, else {y} ms", y, early=x) for x in THRESHOLDS for y in FALLBACKS_MS]
    # The other use: keep a fixed hang-over, but hold on where the model is sure the sentence goes on.
    out += [
        Policy(f"{y} ms unless P<{z} at {PAUSE_MS} ms, then {HELD_MS} ms", y, hold=z, held_ms=HELD_MS)
        for y in (250, 400)
        for z in HOLDS
    ]
    return out


def outcome(pts: list[Point], policy: Policy, model_ms: float) -> dict[str, float | int]:
    """The mid pauses a policy cuts, the recordings it breaks, its latency after the true end, and for comparison
    the pauses a fixed hang-over as long as that mean latency would cut."""
    mids, ends = [p for p in pts if p.kind == "mid"], [p for p in pts if p.kind == "end"]
    cut = [p for p in mids if policy.cuts(p)]
    latency = [policy.latency_ms(p, model_ms) for p in ends]
    mean = float(np.mean(latency))
    return {
        "mid_pauses_cut": len(cut),
        "mid_pauses": len(mids),
        "recordings_broken": len({p.file for p in cut}),
        "recordings": len(ends),
        "end_latency_mean_ms": round(mean),
        "end_latency_p95_ms": round(float(np.percentile(latency, 95))),
        "fixed_same_latency_cuts": sum(p.silence_ms >= mean for p in mids),
    }


def policies(pts: list[Point], model_ms: float) -> dict[str, dict[str, float | int]]:
    return {policy.name: outcome(pts, policy, model_ms) for policy in all_policies()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "turn.json")
    args = ap.parse_args()
    turn = SmartTurn(threads=1)
    turn.complete(np.zeros(SAMPLE_RATE, np.int16))  # the first call pays for ONNX Runtime's warm-up
    pts = [pt for group, path in recordings() for pt in points(group, path, turn)]
    costs = [p.call_ms for p in pts]
    p50 = float(np.percentile(costs, 50))
    groups = {
        "all": pts,
        "one-sentence (speechbrain-en, multilingual, jfk)": [p for p in pts if p.group != "librispeech"],
        "librispeech": [p for p in pts if p.group == "librispeech"],
    }
    result = {
        "model": turn.name,
        "pause_ms": PAUSE_MS,
        "cost_ms": {"p50": round(p50, 1), "p95": round(float(np.percentile(costs, 95)), 1), "calls": len(costs)},
        "auc_end_vs_mid": {g: auc(v) for g, v in groups.items()},
        "thresholds": {g: by_threshold(v) for g, v in groups.items()},
        "policies": {g: policies(v, p50) for g, v in groups.items()},
        "points": [asdict(p) for p in pts],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "points"}, indent=1))


if __name__ == "__main__":
    main()
