"""Voice ID: accuracy at 1.5 s, 3 s and full length, and how fast a live call's decision reaches the console.

    python -m benchmarks.voiceid [--calls 10] [--no-live] [--out results/voiceid.json]
    python -m benchmarks.voiceid --channel phone [--out results/voiceid-phone.json]

Accuracy: ``voxgate voiceid eval``'s evaluation (20 s prints, cosine) on
* voiceid/librispeech-test-other (10 speakers x 10 utterances, 16 kHz);
* voiceid/fsdd-8k (4 speakers x 500 spoken digits, 8 kHz), digits concatenated
  in order into utterances of 8 digits (about 3-4 s of speech each),
for the bundled d-vector encoder, Resemblyzer, and the two fused; plus the
print-against-print scores behind ``Calibration.print_match`` (an enrolment
screened against the watch list).

Live: a real ``voxgate serve`` process with the ten LibriSpeech speakers
enrolled through ``voxgate voiceid enrol`` and in the directory through
``voxgate customer add``. aiortc callers ring from a speaker's number and play a
held-back utterance of that speaker (genuine) or of the next one (impostor), at
real time, first one call at a time, then all genuine calls at once. For each,
the time from the moment the caller had sent 1.5 s and 3 s of net speech (the
same VAD run on the audio it sent) to the decision arriving on the agent's
WebSocket. Writes JSON, a DET plot per dataset and ``voiceid.png``.

``--channel phone``: accuracy only, every recording heard as a phone call
reaches VoxGate (``identity.voiceid.telephone``: 8 kHz, μ-law, back to
16 kHz), at 1.5, 3 and 6 s, the checkpoints live calls decide at: prints in
the phone space (enrolled on the phone, or a wideband enrolment's phone
space: the same speech through the same channel), against phone tests; on
LibriSpeech also wideband prints against phone tests (what scoring without a
phone space would give). False accepts and rejects at the shipped phone
thresholds and at the wideband ones, and print against print in the phone
space (``Calibration.phone_print_match``). FSDD is cut into 16-digit
utterances here, so that 6 s tests exist.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import wave
from collections import defaultdict
from pathlib import Path

import aiohttp
import numpy as np

from benchmarks.subtitles import pct
from identity.evaluation import evaluate, load_speech, plot_det, rates_at, run_trials
from identity.voiceid import Calibration, Channel
from media.audio_io import AudioFormatError, read_pcm
from media.speech import NetSpeech, net_speech
from models import registry
from models.base import SAMPLE_RATE, pcm_to_float
from models.voiceprint import enrol
from peers.ports import free_port
from peers.servers import wait_ready
from peers.webrtc import SpeechTrack, customer_connect

DATA = Path(os.environ.get("VOXGATE_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
LIBRI = DATA / "voiceid" / "librispeech-test-other"


def fsdd_layout(out: Path, digits_per_utterance: int = 8) -> Path:
    """DIR/<speaker>/<utterance>.wav from the flat FSDD files, at their own 8 kHz."""
    by_speaker: dict[str, list] = defaultdict(list)
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


def accuracy(out: Path, datasets: dict[str, Path]) -> list[dict]:
    vad = registry.build("vad", "webrtc")
    encoders = {name: registry.build("speaker", name) for name in ("dvector", "resemblyzer")}
    variants = {"dvector": ["dvector"], "resemblyzer": ["resemblyzer"], "fused": ["dvector", "resemblyzer"]}
    rows = []
    for label, root in datasets.items():
        for test_seconds in (1.5, 3.0, None):
            for variant, names in variants.items():
                t0 = time.time()
                summary, trials = evaluate(root, [encoders[n] for n in names], vad, 20.0, test_seconds)
                row = {"dataset": label, "variant": variant, **summary, "seconds": round(time.time() - t0, 1)}
                print(json.dumps(row), flush=True)
                rows.append(row)
                if test_seconds == 3.0 and variant in ("dvector", "fused"):
                    stem = re.sub(r"[^a-z0-9]+", "-", f"{label} {variant}".lower()).strip("-")
                    plot_det(
                        trials, out.with_name(f"det-{stem}.png"), f"{label}, 3 s, {variant}: EER {row['eer_percent']}%"
                    )
    return rows


def print_against_print(root: Path, channel: Channel = Channel.WIDEBAND) -> dict:
    """Two 20 s prints per speaker, from the two halves of their recordings: same-speaker and other-speaker scores."""
    vad, encoder = registry.build("vad", "webrtc"), registry.build("speaker", "dvector")
    halves = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        heard = [channel.hear(read_pcm(f)) for f in sorted(d.iterdir())]
        speech = np.concatenate([pcm_to_float(net_speech(pcm, vad)) for pcm in heard])
        mid = len(speech) // 2
        n = min(mid, 20 * SAMPLE_RATE)
        halves[d.name] = [enrol([encoder], s).vectors["dvector"] for s in (speech[:n], speech[mid : mid + n])]
    genuine = [float(a @ b) for a, b in halves.values()]
    impostor = [float(halves[x][0] @ halves[y][1]) for x in halves for y in halves if x != y]
    return {
        "speakers": len(halves),
        "genuine_min": round(min(genuine), 3),
        "genuine_median": round(float(np.median(genuine)), 3),
        "impostor_max": round(max(impostor), 3),
        "impostor_median": round(float(np.median(impostor)), 3),
    }


def phone_accuracy(out: Path, datasets: dict[str, Path], mismatch: set[str]) -> list[dict]:
    """Trials heard on the phone at each phone checkpoint; for the datasets in ``mismatch``, also against prints
    of the recordings as they are (wideband). Rates at the shipped phone and wideband thresholds."""
    vad, encoder = registry.build("vad", "webrtc"), [registry.build("speaker", "dvector")]
    shipped = Calibration()
    rows = []
    for label, root in datasets.items():
        phone = load_speech(root, vad, Channel.PHONE)
        prints = {"phone": phone} | ({"wideband": load_speech(root, vad)} if label in mismatch else {})
        for seconds in shipped.for_channel(Channel.PHONE).checkpoints:
            for kind, enrolments in prints.items():
                t0 = time.time()
                try:
                    summary, trials = run_trials(enrolments, phone, encoder, 20.0, seconds, "cosine")
                except AudioFormatError:
                    continue  # recordings too short for this duration
                row = {
                    "dataset": label,
                    "prints": kind,
                    **summary,
                    "at_phone_threshold": rates_at(trials, shipped.for_channel(Channel.PHONE).threshold(seconds)),
                    "at_wideband_threshold": rates_at(trials, shipped.threshold(seconds)),
                    "seconds": round(time.time() - t0, 1),
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
                if seconds == 3.0 and kind == "phone":
                    stem = re.sub(r"[^a-z0-9]+", "-", f"{label} phone".lower()).strip("-")
                    title = f"{label}, phone channel, 3 s: EER {row['eer_percent']}%"
                    plot_det(trials, out.with_name(f"det-{stem}.png"), title)
    return rows


def plot_phone(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    for dataset, prints in sorted({(r["dataset"], r["prints"]) for r in result["accuracy"]}):
        rows = [r for r in result["accuracy"] if (r["dataset"], r["prints"]) == (dataset, prints)]
        style = "o-" if prints == "phone" else "s--"
        label = f"{dataset}, {prints} prints" + ("" if prints == "phone" else " (scored without a phone space)")
        a.plot([r["test_seconds"] for r in rows], [r["eer_percent"] for r in rows], style, label=label)
    a.set_xticks([1.5, 3.0, 6.0], ["1.5 s", "3 s", "6 s"])
    a.set_xlabel("net speech heard on the phone")
    a.set_ylabel("EER (%)")
    a.set_title("Phone channel (8 kHz G.711), 20 s prints")
    a.set_ylim(0, 14)
    a.legend(fontsize=7, loc="upper right")
    rows = [r for r in result["accuracy"] if r["prints"] == "phone" and r["dataset"].startswith("librispeech")]
    x = np.arange(len(rows))
    thresholds = (("at_phone_threshold", "phone thresholds"), ("at_wideband_threshold", "wideband thresholds"))
    for k, (key, label) in enumerate(thresholds):
        b.bar(x + k * 0.4 - 0.3, [r[key]["far_percent"] for r in rows], 0.2, label=f"false accepts, {label}")
        b.bar(x + k * 0.4 - 0.1, [r[key]["frr_percent"] for r in rows], 0.2, label=f"false rejects, {label}")
    b.set_xticks(x, [f"{r['test_seconds']:g} s" for r in rows])
    b.set_ylabel("%")
    b.set_ylim(0, 50)
    b.set_title("LibriSpeech on the phone: rates at each channel's thresholds")
    b.legend(fontsize=7, loc="upper right")
    fig.suptitle(f"VoxGate voice ID on the phone, bundled d-vector encoder, {result['machine']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# -- live ------------------------------------------------------------------------------------------------------


def cli(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, check=False).stdout


def prepare(data_dir: Path) -> tuple[str, dict[str, dict]]:
    """An agent, and every LibriSpeech speaker in the directory and enrolled from their first ~20 s of speech.

    Returns the agent's API token and, per speaker, their phone and the held-back utterance (their longest
    recording not used to enrol)."""
    token = cli("agent", "add", "bench", "--data-dir", str(data_dir)).split("api token:")[1].split()[0]
    vad = registry.build("vad", "webrtc")
    speakers = {}
    for i, d in enumerate(sorted(p for p in LIBRI.iterdir() if p.is_dir())):
        files = sorted(d.glob("*.flac"))
        used, seconds = [], 0.0
        while seconds < 20.0:
            used.append(files[len(used)])
            seconds += len(net_speech(read_pcm(used[-1]), vad)) / SAMPLE_RATE
        phone = f"+4477009001{i:02d}"
        cli("customer", "add", f"C-{d.name}", "--phone", phone, "--data-dir", str(data_dir))
        cli("voiceid", "enrol", f"C-{d.name}", *map(str, used), "--consent", "benchmark", "--by", "bench",
            "--data-dir", str(data_dir))  # fmt: skip
        held_back = max(files[len(used) :], key=lambda f: f.stat().st_size)
        speakers[d.name] = {"phone": phone, "test": held_back}
    return token, speakers


def marks(pcm: np.ndarray, at: tuple[float, ...] = (1.5, 3.0)) -> dict[float, float]:
    """Seconds into ``pcm`` at which its net speech reaches each of ``at`` (the VAD the server runs, 20 ms frames)."""
    tap, heard, out = NetSpeech(registry.build("vad", "webrtc")), 0, {}
    for i in range(0, len(pcm), 320):
        heard += len(tap.push(pcm[i : i + 320]))
        for s in at:
            if s not in out and heard >= s * SAMPLE_RATE:
                out[s] = (i + 320) / SAMPLE_RATE
    return out


async def call(http, base: str, headers: dict, phone: str, pcm: np.ndarray, events: dict) -> dict:
    """One caller: ring from ``phone``, play ``pcm`` once, and measure each decision against its speech mark."""
    async with http.post(f"{base}/api/links", json={"phone": phone}, headers=headers) as r:
        link = await r.json()
    link_id = link["link"]["id"]
    events[link_id] = []
    audio = np.concatenate([np.zeros(SAMPLE_RATE, np.int16), pcm])
    track = SpeechTrack(audio)
    track.loop = False
    pc, _, _ = await customer_connect(http, link["url"], track, video=False)
    await asyncio.sleep(len(audio) / SAMPLE_RATE + 1.5)
    await pc.close()
    at = marks(audio)
    row: dict = {"link_id": link_id}
    for t, message in events[link_id]:
        if message["type"] == "voiceid" and message["speech_seconds"] >= 1.5:
            mark = 3.0 if message["speech_seconds"] >= 3.0 else 1.5
            if f"decided_{mark:g}s_after_s" not in row and mark in at:
                row[f"decided_{mark:g}s_after_s"] = round(t - (track.started + at[mark]), 3)
                row[f"decision_{mark:g}s"] = message["decision"]
                row[f"server_{mark:g}s_s"] = round(
                    message["timing"]["decided"] - message["timing"]["speech_reached"], 3
                )
        if message["type"] == "idv":
            row["status"] = message["status"]
            row["verified_by"] = message["verified_by"]
    return row


async def live(n_calls: int, work: Path) -> dict:
    data_dir = work / "live"
    token, speakers = prepare(data_dir)
    names = sorted(speakers)[:n_calls]
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--data-dir", str(data_dir), "--port", str(port),
         "--max-calls", "64", "--max-calls-per-agent", "64"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
    events: dict[str, list] = {}
    runs = {}
    try:
        await wait_ready(base)
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"{base}/api/ws", headers=headers)

            async def listen() -> None:
                async for msg in ws:
                    m = json.loads(msg.data)
                    if m.get("link_id") in events:
                        events[m["link_id"]].append((time.time(), m))

            listener = asyncio.create_task(listen())
            tests = {name: read_pcm(speakers[name]["test"]) for name in names}
            genuine = [await call(http, base, headers, speakers[n]["phone"], tests[n], events) for n in names]
            impostor = [
                await call(http, base, headers, speakers[names[(k + 1) % len(names)]]["phone"], tests[n], events)
                for k, n in enumerate(names)
            ]
            together = await asyncio.gather(
                *(call(http, base, headers, speakers[n]["phone"], tests[n], events) for n in names)
            )
            runs = {
                "one at a time, genuine": genuine,
                "one at a time, impostor": impostor,
                "all at once, genuine": together,
            }
            listener.cancel()
    finally:
        server.terminate()
        server.wait(30)
    summary = {}
    for label, rows in runs.items():
        s: dict = {"calls": len(rows)}
        for mark in ("1.5", "3"):
            lat = [r[f"decided_{mark}s_after_s"] for r in rows if f"decided_{mark}s_after_s" in r]
            s[f"after_{mark}s_mark_p50_s"], s[f"after_{mark}s_mark_p95_s"] = pct(lat, 50), pct(lat, 95)
            s[f"after_{mark}s_mark_max_s"] = pct(lat, 100)
            server_side = [r[f"server_{mark}s_s"] for r in rows if f"server_{mark}s_s" in r]
            s[f"server_{mark}s_p50_s"] = pct(server_side, 50)
            s[f"decisions_{mark}s"] = {d: sum(r.get(f"decision_{mark}s") == d for r in rows) for d in
                                       ("authenticated", "not_authenticated", "inconclusive")}  # fmt: skip
        s["final_status"] = {st: sum(r.get("status") == st for r in rows) for st in {r.get("status") for r in rows}}
        summary[label] = s
        print(json.dumps({label: s}), flush=True)
    return {"summary": summary, "calls": runs}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    for dataset in sorted({r["dataset"] for r in result["accuracy"]}):
        for variant, style in (("dvector", "o-"), ("fused", "s--")):
            rows = [r for r in result["accuracy"] if r["dataset"] == dataset and r["variant"] == variant]
            x = [r["test_seconds"] or 8.0 for r in rows]
            a.plot(x, [r["eer_percent"] for r in rows], style, label=f"{dataset}, {variant}")
    a.axhline(1.0, color="grey", lw=0.8)
    a.set_xticks([1.5, 3.0, 8.0], ["1.5 s", "3 s", "full"])
    a.set_xlabel("net speech in the test")
    a.set_ylabel("EER (%)")
    a.set_title("Accuracy, 20 s prints (grey: the 1% goal)")
    a.legend(fontsize=7)
    if result.get("live"):
        labels, data = [], []
        for run, rows in result["live"]["calls"].items():
            for mark in ("1.5", "3"):
                values = [r[f"decided_{mark}s_after_s"] for r in rows if f"decided_{mark}s_after_s" in r]
                if values:
                    labels.append(f"{run.replace(', ', chr(10))}\n{mark} s mark")
                    data.append(values)
        b.boxplot(data, tick_labels=labels)
        b.tick_params(axis="x", labelsize=7)
        b.set_ylabel("seconds to the decision on the console")
        b.set_title("Live calls: speech mark -> decision on the agent's socket")
    fig.suptitle(f"VoxGate voice ID, bundled d-vector encoder, {result['machine']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, help="JSON to write (default results/voiceid.json, or voiceid-phone.json)")
    p.add_argument("--calls", type=int, default=10, help="live calls per run (one per LibriSpeech speaker)")
    p.add_argument("--no-live", action="store_true", help="accuracy only")
    p.add_argument("--channel", choices=[c.value for c in Channel], default="wideband",
                   help="phone: accuracy heard through the phone channel (no live calls)")  # fmt: skip
    args = p.parse_args()
    args.out = args.out or Path("results/voiceid-phone.json" if args.channel == "phone" else "results/voiceid.json")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="voxgate-voiceid-"))
    if args.channel == "phone":
        phone_run(args.out, work)
        return
    datasets = {"librispeech-test-other": LIBRI, "fsdd-8k (8-digit utterances)": fsdd_layout(work / "fsdd")}
    result: dict = {"machine": f"{os.uname().machine}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d")}
    result["accuracy"] = accuracy(args.out, datasets)
    result["print_against_print"] = {label: print_against_print(root) for label, root in datasets.items()}
    print(json.dumps(result["print_against_print"]), flush=True)
    args.out.write_text(json.dumps(result, indent=2))
    if not args.no_live:
        result["live"] = asyncio.run(live(args.calls, work))
        args.out.write_text(json.dumps(result, indent=2, default=str))
    plot(result, args.out.with_suffix(".png"))


def phone_run(out: Path, work: Path) -> None:
    libri, fsdd = "librispeech-test-other", "fsdd-8k (16-digit utterances)"
    datasets = {libri: LIBRI, fsdd: fsdd_layout(work / "fsdd", digits_per_utterance=16)}
    shipped = Calibration()
    result: dict = {
        "machine": f"{os.uname().machine}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "channel": "phone",
        "shipped": {"phone": shipped.phone, "wideband": shipped.thresholds},
    }
    rows = result["accuracy"] = phone_accuracy(out, datasets, mismatch={libri})
    result["calibrated"] = {
        label: ",".join(
            f"{r['test_seconds']:g}:{r['threshold_at_far1']}"
            for r in rows
            if r["dataset"] == label and r["prints"] == "phone"
        )
        for label in datasets
    }
    result["print_against_print"] = {name: print_against_print(root, Channel.PHONE) for name, root in datasets.items()}
    print(json.dumps({k: result[k] for k in ("calibrated", "print_against_print")}), flush=True)
    out.write_text(json.dumps(result, indent=2))
    plot_phone(result, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
