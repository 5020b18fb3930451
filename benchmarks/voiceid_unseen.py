"""Voice ID on voices it has never heard: the shipped cohort and thresholds, built and judged on separate people.

    python -m benchmarks.voiceid_unseen [--encoder dvector] [--out results/2026-11-28/voiceid-unseen.json]
    python -m benchmarks.voiceid_unseen --write   # also writes identity/cohort.npz (the shipped cohort)

The 251 readers of voiceid/librispeech-train-clean-100 (one utterance each) are dealt, in order of their ids, into
three disjoint thirds:

* cohort: ``voxgate voiceid cohort`` on them gives the S-norm cohort that ships (``identity/cohort.npz``);
* a and b: calibrated on a (``voxgate voiceid calibrate``: 1% false accepts, per channel and duration), judged on
  b at those thresholds, and the other way round: the false accepts and rejects a new population gets. The
  thresholds that ship (``Calibration``) are calibrated on a and b together, and judged on the ten readers of
  voiceid/librispeech-test-other (another LibriSpeech subset, noisier). S-norm and, for comparison, raw cosine.

A reader's utterance is split for trials (``identity.evaluation.load_speech``): enrolment from the head, tests
from the last 6 s. Writes JSON and a PNG (false accepts and rejects by duration, per set, per scoring).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from identity.evaluation import build_cohort, enrol_speakers, load_speech, rates_at, run_trials
from identity.voiceid import COHORT, Calibration, Channel
from models import registry
from models.engines import build_speaker
from models.metrics import equal_error_rate, frr_at_far
from models.voiceprint import Cohort

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "voiceid"
TRAIN = DATA / "librispeech-train-clean-100"
OTHER = DATA / "librispeech-test-other"
DURATIONS = Calibration().checkpoints
ENROL = Calibration().enrol_seconds


def thirds(root: Path, into: Path) -> dict[str, Path]:
    """Symlinked folders of every third reader: the cohort, a and b."""
    readers = sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: int(d.name))
    parts = {}
    for i, part in enumerate(("cohort", "a", "b")):
        (into / part).mkdir(parents=True)
        for d in readers[i::3]:
            (into / part / d.name).symlink_to(d)
        parts[part] = into / part
    return parts


def calibrate(speech, encoders, scoring: str, cohort: Cohort, channel: Channel, far: float = 0.01) -> dict:
    enrolled = enrol_speakers(speech, encoders, ENROL)
    rows = {}
    for seconds in DURATIONS:
        _, trials = run_trials(speech, speech, encoders, ENROL, seconds, scoring, enrolled, cohort, channel)
        genuine = [t.score for t in trials if t.genuine]
        impostor = [t.score for t in trials if not t.genuine]
        frr, threshold = frr_at_far(genuine, impostor, far)
        rows[seconds] = {
            "threshold": round(threshold, 4),
            "frr_percent": round(frr * 100, 2),
            "eer_percent": round(equal_error_rate(genuine, impostor)[0] * 100, 2),
            "genuine": len(genuine),
            "impostor": len(impostor),
        }
    return rows


def judge(speech, encoders, scoring: str, cohort: Cohort, channel: Channel, thresholds: dict) -> dict:
    enrolled = enrol_speakers(speech, encoders, ENROL)
    rows = {}
    for seconds in DURATIONS:
        summary, trials = run_trials(speech, speech, encoders, ENROL, seconds, scoring, enrolled, cohort, channel)
        rows[seconds] = {
            **rates_at(trials, thresholds[seconds]),
            "eer_percent": summary["eer_percent"],
            "frr_at_far1_percent": summary["frr_at_far1_percent"],
            "genuine": summary["genuine_trials"],
            "impostor": summary["impostor_trials"],
        }
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", action="append", help="speaker encoder(s) to fuse (default dvector)")
    p.add_argument("--per-speaker", type=int, default=4, help="cohort windows per reader")
    p.add_argument("--top-k", type=int, default=200)
    p.add_argument("--write", action="store_true", help="add the cohort's rows to identity/cohort.npz")
    p.add_argument("--cohort-only", action="store_true", help="build (and with --write, ship) the cohort; no trials")
    p.add_argument("--channel", action="append", choices=[c.value for c in Channel], help="default: both")
    p.add_argument("--scoring", action="append", choices=("snorm", "cosine"), help="default: both")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results/2026-11-28/voiceid-unseen.json")
    args = p.parse_args()
    names = args.encoder or ["dvector"]
    encoders = [build_speaker(n, threads=os.cpu_count() or 1) for n in names]
    vad = registry.build("vad", "webrtc")
    started = time.time()
    out: dict = {"encoders": names, "enrol_seconds_max": ENROL, "top_k": args.top_k, "channels": {}}
    with tempfile.TemporaryDirectory() as tmp:
        parts = thirds(TRAIN, Path(tmp))
        about = (
            f"{len(list(parts['cohort'].iterdir()))} readers of LibriSpeech train-clean-100 (CC BY 4.0), every "
            "third by id from the first; 3 s windows; built by benchmarks/voiceid_unseen.py"
        )
        cohort_speech = load_speech(parts["cohort"], vad, split=False)
        built = build_cohort(cohort_speech, encoders, args.per_speaker, about)
        if args.write:
            existing = Cohort.load(COHORT).vectors if COHORT.is_file() else {}
            Cohort({**existing, **built.vectors}, about).save(COHORT)
        cohort = Cohort(built.vectors, about, args.top_k)
        if args.cohort_only:
            print(f"cohort rows: { {k: len(v) for k, v in built.vectors.items()} }")
            return
        out["cohort"] = {"readers": len(cohort_speech), "rows": {k: len(v) for k, v in built.vectors.items()}}
        for channel in [Channel(c) for c in args.channel or Channel]:
            a, b = (load_speech(parts[k], vad, channel) for k in ("a", "b"))
            other = load_speech(OTHER, vad, channel)
            result: dict = {"speakers": {"a": len(a), "b": len(b), "test-other": len(other)}}
            for scoring in args.scoring or ("snorm", "cosine"):
                # Two folds (calibrate on one half, judge on the other), then the thresholds that ship: both halves.
                folds = {}
                for name, (fit, held) in {"a->b": (a, b), "b->a": (b, a)}.items():
                    rows = calibrate(fit, encoders, scoring, cohort, channel)
                    thresholds = {s: r["threshold"] for s, r in rows.items()}
                    folds[name] = judge(held, encoders, scoring, cohort, channel, thresholds)
                rows = calibrate({**a, **b}, encoders, scoring, cohort, channel)
                thresholds = {s: r["threshold"] for s, r in rows.items()}
                result[scoring] = {
                    "thresholds": ",".join(f"{s:g}:{t}" for s, t in thresholds.items()),
                    "calibration": rows,
                    "heldout": folds,
                    "test-other": judge(other, encoders, scoring, cohort, channel, thresholds),
                }
                print(channel, scoring, json.dumps(result[scoring]), flush=True)
            out["channels"][channel.value] = result
    out["seconds"] = round(time.time() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    plot(out, args.out.with_suffix(".png"))
    print(f"wrote {args.out}")


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, (channel, result) in zip(axes, out["channels"].items(), strict=False):
        for scoring, style in (("snorm", "-"), ("cosine", ":")):
            if scoring not in result:
                continue
            sets = {**{f"held out {k}": v for k, v in result[scoring]["heldout"].items()}}
            sets["test-other"] = result[scoring]["test-other"]
            for (name, rows), colour in zip(sets.items(), ("C0", "C2", "C1"), strict=True):
                seconds = [float(s) for s in rows]
                for key, marker, alpha in (("far_percent", "o", 1.0), ("frr_percent", "x", 0.5)):
                    values = [r[key] for r in rows.values()]
                    label = f"{key[:3].upper()} {name} {scoring}"
                    ax.plot(seconds, values, style, color=colour, marker=marker, alpha=alpha, label=label)
        ax.axhline(1.2, color="grey", lw=0.5)
        ax.set_title(f"{channel}: at thresholds calibrated on other readers", fontsize=9)
        ax.set_xlabel("seconds of net speech")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("%")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
