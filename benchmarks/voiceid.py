"""Voice ID accuracy at 1.5 s, 3 s and full length, on read speech and on 8 kHz telephony.

    python -m benchmarks.voiceid [--out results/voiceid.json]

Runs ``voxgate voiceid eval``'s evaluation on
* voiceid/librispeech-test-other (10 speakers x 10 utterances, 16 kHz);
* voiceid/fsdd-8k (4 speakers x 500 spoken digits, 8 kHz), digits concatenated
  in order into utterances of 8 digits (about 3-4 s of speech each),
for the bundled d-vector encoder, Resemblyzer, and the two fused. Writes JSON
and one DET plot per dataset (3 s tests, fused).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
import wave
from collections import defaultdict
from pathlib import Path

import numpy as np

from models import registry
from signaling.voiceid import evaluate, plot_det

DATA = Path(os.environ.get("VOXGATE_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def fsdd_layout(out: Path, digits_per_utterance: int = 8) -> Path:
    """DIR/<speaker>/<utterance>.wav from the flat FSDD files, at their own 8 kHz."""
    by_speaker: dict[str, list[Path]] = defaultdict(list)
    for f in (DATA / "voiceid" / "fsdd-8k").glob("*.wav"):
        digit, speaker, index = re.match(r"(\d)_([a-z]+)_(\d+)\.wav", f.name).groups()
        by_speaker[speaker].append((int(index), int(digit), f))
    for speaker, files in by_speaker.items():
        files.sort()
        (out / speaker).mkdir(parents=True, exist_ok=True)
        for k in range(0, len(files) - digits_per_utterance + 1, digits_per_utterance):
            pcm = []
            for _, _, f in files[k : k + digits_per_utterance]:
                with wave.open(str(f)) as w:
                    pcm.append(np.frombuffer(w.readframes(w.getnframes()), np.int16))
            with wave.open(str(out / speaker / f"{k // digits_per_utterance:03d}.wav"), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(8000)
                w.writeframes(np.concatenate(pcm).tobytes())
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=Path("results/voiceid.json"))
    args = p.parse_args()
    vad = registry.build("vad", "webrtc")
    encoders = {name: registry.build("speaker", name) for name in ("dvector", "resemblyzer")}
    variants = {"dvector": ["dvector"], "resemblyzer": ["resemblyzer"], "fused": ["dvector", "resemblyzer"]}
    tmp = Path(tempfile.mkdtemp(prefix="voxgate-voiceid-"))
    datasets = {
        "librispeech-test-other": DATA / "voiceid" / "librispeech-test-other",
        "fsdd-8k (8-digit utterances)": fsdd_layout(tmp / "fsdd"),
    }
    results = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for label, root in datasets.items():
        for test_seconds in (1.5, 3.0, None):
            for variant, names in variants.items():
                t0 = time.time()
                summary, trials = evaluate(root, [encoders[n] for n in names], vad, 20.0, test_seconds)
                row = {"dataset": label, "variant": variant, **summary, "seconds": round(time.time() - t0, 1)}
                print(json.dumps(row), flush=True)
                results.append(row)
                if test_seconds == 3.0 and variant == "fused":
                    stem = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
                    plot_det(
                        trials,
                        args.out.with_name(f"det-{stem}.png"),
                        f"{label}, 3 s tests, d-vector + Resemblyzer: EER {summary['eer_percent']}%",
                    )
    args.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "results": results}, indent=2))


if __name__ == "__main__":
    main()
