"""Enrolment quality (identity.quality): the SNR estimate against known SNRs, the second-voice flag on single and
mixed enrolments, and what noise and a second voice do to the print.

    python -m benchmarks.enrol_quality [--out benchmarks/results/2026-11-28/enrol-quality.json]

Real speech only (net speech by the WebRTC VAD): voiceid/librispeech-test-other (10 speakers), voiceid/fsdd-8k
(4 speakers, the first 120 digits each, joined), asr/speechbrain-en (2 speakers, all they say: 16 and 11 s).
Enrolments are 20 s of one speaker (all of speechbrain's). Noise is added to net speech at a known SNR (the clean
speech's power over the noise's): white and pink noise made here, and babble (three other LibriSpeech speakers
summed). The clean recordings have noise of their own, so at 20-30 dB the estimate tends to theirs.

Mixed enrolments: a contiguous block of 20%, 30% or 50% of a single enrolment replaced by the next speaker of the
same corpus. Prints (the unit mean of the enrolment windows) are scored by cosine against five 3 s crops of each
LibriSpeech speaker's last 15 s (never enrolled); "pass" is the share of genuine scores at or above the threshold
that lets 1% of impostors through with clean prints; "other passes" the share of the second voice's tests that a
mixed print accepts. About 3 minutes of CPU (the d-vector encoder, one thread): run it on an idle machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from identity.quality import SECOND_SPEAKER_BELOW, second_speaker_score, wada_snr
from media.audio_io import read_pcm
from media.speech import net_speech
from models.base import SAMPLE_RATE, pcm_to_float, unit
from models.engines import build_speaker
from models.metrics import equal_error_rate
from models.vad import WebRtcVad
from models.voiceprint import windows

DATA = Path(os.environ.get("VOXGATE_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
OUT = Path(__file__).resolve().parent / "results" / "2026-11-28" / "enrol-quality.json"
R = SAMPLE_RATE
SNRS = (0, 5, 10, 20, 30)
FRACTIONS = (0.2, 0.3, 0.5)
NOISY_PRINTS = (("white", 10), ("white", 20), ("babble", 10))


def load() -> dict[str, dict[str, np.ndarray]]:
    """Net speech per corpus, per speaker, joined."""
    vad = WebRtcVad()

    def speech(pcm: np.ndarray) -> np.ndarray:
        return pcm_to_float(net_speech(pcm, vad))

    libri = DATA / "voiceid" / "librispeech-test-other"
    out: dict[str, dict[str, np.ndarray]] = {"librispeech": {}, "fsdd": {}, "speechbrain": {}}
    for d in sorted(p for p in libri.iterdir() if p.is_dir()):
        out["librispeech"][d.name] = np.concatenate([speech(read_pcm(f)) for f in sorted(d.glob("*.flac"))])
    digits: dict[str, list] = defaultdict(list)
    for f in (DATA / "voiceid" / "fsdd-8k").glob("*.wav"):
        _, who, index = re.match(r"(\d)_([a-z]+)_(\d+)\.wav", f.name).groups()
        digits[who].append((int(index), f.name, f))
    for who, files in sorted(digits.items()):
        out["fsdd"][who] = speech(np.concatenate([read_pcm(f) for *_, f in sorted(files)[:120]]))
    for who in ("spk1", "spk2"):
        files = sorted((DATA / "asr" / "speechbrain-en").glob(f"{who}_*.wav"))
        out["speechbrain"][who] = np.concatenate([speech(read_pcm(f)) for f in files])
    return out


def noise(kind: str, n: int, rng: np.random.Generator, babble: np.ndarray) -> np.ndarray:
    """Unit-power noise: white, pink (1/f power), or babble."""
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        spectrum = np.fft.rfft(rng.standard_normal(n))
        x = np.fft.irfft(spectrum / np.sqrt(np.maximum(np.arange(len(spectrum)), 1)), n)
    else:
        x = babble[:n].astype(np.float64)
    return x / np.sqrt(np.mean(x**2))


def at_snr(clean: np.ndarray, kind: str, snr: float, rng: np.random.Generator, babble: np.ndarray) -> np.ndarray:
    power = np.mean(clean.astype(np.float64) ** 2)
    return (clean + noise(kind, len(clean), rng, babble) * math.sqrt(power / 10 ** (snr / 10))).astype(np.float32)


def babble_for(speaker: str, libri: dict[str, np.ndarray], n: int) -> np.ndarray:
    others = [k for k in libri if k != speaker][:3]
    return sum(libri[k][-n:] / np.std(libri[k][-n:]) for k in others)


class Embedder:
    """The encoder's window embeddings, remembered: mixed enrolments share most windows with the single one."""

    def __init__(self) -> None:
        self.encoder = build_speaker("dvector", threads=1)
        self.seen: dict[bytes, np.ndarray] = {}

    def __call__(self, speech: np.ndarray) -> np.ndarray:
        rows = []
        for w in windows(speech):
            key = hashlib.sha1(np.ascontiguousarray(w, np.float32).tobytes()).digest()
            if key not in self.seen:
                self.seen[key] = self.encoder.embed(w)
            rows.append(self.seen[key])
        return np.stack(rows)


def summary(values: list[float]) -> dict:
    v = np.asarray(values, dtype=float)
    return {"n": len(v), "median": round(float(np.median(v)), 2), "min": round(float(v.min()), 2),
            "max": round(float(v.max()), 2)}  # fmt: skip


def snr_validation(speech: dict[str, dict[str, np.ndarray]]) -> dict:
    rng = np.random.default_rng(1)
    libri = speech["librispeech"]
    clean, by = [], defaultdict(list)
    for speakers in speech.values():
        for who, x in speakers.items():
            x = x[: 20 * R]
            babble = babble_for(who, libri, len(x))
            clean.append(wada_snr(x))
            for kind in ("white", "pink", "babble"):
                for snr in SNRS:
                    by[(kind, snr)].append(wada_snr(at_snr(x, kind, snr, rng, babble)))
    return {
        "clean_recordings": summary(clean),
        "estimated_by_true_snr": {
            kind: {str(snr): summary(by[(kind, snr)]) for snr in SNRS} for kind in ("white", "pink", "babble")
        },
    }


def flags_and_prints(speech: dict[str, dict[str, np.ndarray]], embed: Embedder) -> dict:
    rng = np.random.default_rng(7)
    libri = speech["librispeech"]
    tests = {k: np.stack([embed.encoder.embed(x[-15 * R :][i * 3 * R : (i + 1) * 3 * R]) for i in range(5)])
             for k, x in libri.items()}  # fmt: skip
    scores: dict[str, list[float]] = defaultdict(list)  # condition: second-voice scores
    prints: dict[str, list[tuple[str, str | None, np.ndarray]]] = defaultdict(list)  # condition: (who, other, print)
    for corpus, speakers in speech.items():
        names = list(speakers)
        for i, who in enumerate(names):
            other = names[(i + 1) % len(names)]
            x = speakers[who][: 20 * R]
            singles = [x] if corpus == "speechbrain" else [x, speakers[who][-20 * R :]]
            for k, single in enumerate(singles):
                e = embed(single)
                scores[f"{corpus}/single"].append(second_speaker_score(e))
                if corpus == "librispeech" and k == 0:
                    prints["clean"].append((who, None, unit(e.mean(axis=0))))
            o = speakers[other]
            source = o[len(o) // 3 :] if corpus != "speechbrain" else o
            for f in FRACTIONS:
                m = int(f * len(x))
                at = int(rng.integers(0, len(x) - m + 1))
                mixed = x.copy()
                mixed[at : at + m] = source[:m]
                e = embed(mixed)
                scores[f"{corpus}/mixed {f:.0%}"].append(second_speaker_score(e))
                if corpus == "librispeech":
                    prints[f"second voice {f:.0%}"].append((who, other, unit(e.mean(axis=0))))
            if corpus == "librispeech":
                babble = babble_for(who, libri, len(x))
                for kind, snr in NOISY_PRINTS:
                    e = embed(at_snr(x, kind, snr, rng, babble))
                    scores[f"{corpus}/single, {kind} {snr} dB"].append(second_speaker_score(e))
                    prints[f"{kind} {snr} dB"].append((who, None, unit(e.mean(axis=0))))

    def trials(rows):
        genuine, impostor, other = [], [], []
        for who, second, p in rows:
            for k, t in tests.items():
                s = list(t @ p)
                (genuine if k == who else other if k == second else impostor).extend(s)
        return np.array(genuine), np.array(impostor), np.array(other)

    _, clean_impostor, _ = trials(prints["clean"])
    threshold = float(np.quantile(clean_impostor, 0.99))
    quality = {}
    for condition, rows in prints.items():
        g, i, o = trials(rows)
        quality[condition] = {
            "genuine_mean": round(float(g.mean()), 3),
            "eer_pct": round(100 * equal_error_rate(g, i)[0], 1),
            "pass_pct": round(100 * float(np.mean(g >= threshold)), 1),
            **({"other_passes_pct": round(100 * float(np.mean(o >= threshold)), 1)} if len(o) else {}),
        }
    flags = {c: {**summary(v), "flagged": f"{sum(s < SECOND_SPEAKER_BELOW for s in v)}/{len(v)}"}
             for c, v in scores.items()}  # fmt: skip
    single = [s for c, v in scores.items() if c.endswith("/single") for s in v]
    mixed = [s for c, v in scores.items() if "mixed" in c for s in v]
    return {
        "second_speaker_below": SECOND_SPEAKER_BELOW,
        "flag_rate_single": f"{sum(s < SECOND_SPEAKER_BELOW for s in single)}/{len(single)}",
        "flag_rate_mixed": f"{sum(s < SECOND_SPEAKER_BELOW for s in mixed)}/{len(mixed)}",
        "second_speaker_scores": flags,
        "print_threshold_cosine": round(threshold, 3),
        "prints_vs_clean_tests": quality,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    started = time.process_time()
    speech = load()
    result = {"snr": snr_validation(speech), **flags_and_prints(speech, Embedder())}
    result["cpu_seconds"] = round(time.process_time() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
