"""What a shorter Whisper encoder window costs in accuracy, and saves in time (issue 10).

    python -m benchmarks.windows [--out benchmarks/results/windows.json]

Whisper base decodes every final with its encoder on a 30 s window, whatever
the utterance's length; the server's ``--final-window fit`` gives a short
utterance a 15 or 20 s window instead. Measured here, greedy as the server
decodes, on every window:

* WER against the shared transcripts: asr/speechbrain-en, asr/multilingual
  (en, pt, es, fr, de, it) and jfk;
* on the LibriSpeech test-other utterances of up to 13 s (no transcripts are
  shared for them), WER against a stronger reference: beam 5 on the 30 s
  window;
* the encoder's cost on one utterance (median of 5).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import ctranslate2
import numpy as np

from benchmarks.conversation import DATA, JFK, read_tsv
from media.audio_io import read_pcm
from models.base import SAMPLE_RATE, pcm_to_float
from models.decoding import FINAL, Job, WhisperRunner
from models.locate import whisper_base_dir
from models.metrics import word_error_rate

WINDOWS = (3000, 2000, 1500)  # 10 ms frames: 30, 20 and 15 s


def labelled() -> list[tuple[np.ndarray, str, str]]:
    out = [
        (read_pcm(DATA / "asr/speechbrain-en" / r["wav"]), "en", r["transcript"])
        for r in read_tsv(DATA / "asr/speechbrain-en/transcripts.tsv")
    ]
    for r in read_tsv(DATA / "asr/multilingual/transcripts.tsv"):
        if r["language"] in ("en", "pt", "es", "fr", "de", "it"):
            out.append((read_pcm(DATA / "asr/multilingual" / r["file"]), r["language"], r["transcript"]))
    return [*out, (read_pcm(DATA / "asr/jfk.flac"), "en", JFK)]


def decode(runner: WhisperRunner, pcm: np.ndarray, language: str, window: int) -> str:
    job = Job(runner, pcm_to_float(pcm), language, ("transcribe",), window, FINAL)
    return runner.decode([job])[0].texts["transcribe"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "windows.json")
    args = ap.parse_args()
    greedy = WhisperRunner(whisper_base_dir(), cpu_threads=2)
    beam = WhisperRunner(whisper_base_dir(), cpu_threads=2, beam_size=5)
    result: dict = {"machine": f"{os.uname().machine}, {os.cpu_count()} cores", "date": time.strftime("%F")}
    items = labelled()
    result["labelled_wer_percent"] = {
        w // 100: round(100 * word_error_rate([(ref, decode(greedy, pcm, lang, w)) for pcm, lang, ref in items]), 2)
        for w in WINDOWS
    }
    libri = [read_pcm(p) for p in sorted((DATA / "voiceid/librispeech-test-other").glob("*/*.flac"))]
    libri = [pcm for pcm in libri if len(pcm) <= 13 * SAMPLE_RATE]
    references = [decode(beam, pcm, "en", 3000) for pcm in libri]
    result["librispeech_utterances"] = len(libri)
    result["librispeech_wer_vs_beam5_30s_percent"] = {
        w // 100: round(
            100
            * word_error_rate(
                [(ref, decode(greedy, pcm, "en", w)) for pcm, ref in zip(libri, references, strict=True)]
            ),
            2,
        )
        for w in WINDOWS
    }
    pt = items[[lang for _, lang, _ in items].index("pt")][0]
    audio = pcm_to_float(pt)
    costs = {}
    for w in WINDOWS:
        mel = greedy.model.feature_extractor(audio)[:, :w]
        features = ctranslate2.StorageView.from_array(
            np.ascontiguousarray(np.pad(mel, ((0, 0), (0, w - mel.shape[1])))[None])
        )
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            greedy.model.model.encode(features, to_cpu=True)
            times.append(time.perf_counter() - t0)
        costs[w // 100] = round(statistics.median(times), 3)
    result["encoder_seconds_pt_4s"] = costs
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
