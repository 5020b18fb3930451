"""Anti-spoofing: the AASIST engine from its wheel, and ``voxgate voiceid spoof-eval`` end to end.

The live risk signal, and ID&V refusing a voice verification on a spoof decision, are in test_idv.py and
test_idv_flow.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from media import audio_io
from models.base import pcm_to_float

LIBRI = "voiceid/librispeech-test-other"


def write_wav(path, pcm: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    audio_io.write_wav(path, pcm)


def loudspeaker(pcm: np.ndarray) -> np.ndarray:
    """A recording played through a small loudspeaker (a band-pass and soft clipping): a replay, not a voice."""
    spectrum = np.fft.rfft(pcm.astype(np.float64))
    f = np.fft.rfftfreq(len(pcm), 1 / 16000)
    spectrum *= 1 / np.sqrt(1 + (300 / np.maximum(f, 1)) ** 4) / np.sqrt(1 + (f / 5000) ** 8)
    y = np.fft.irfft(spectrum, len(pcm))
    return (np.tanh(3 * y / np.abs(y).max()) * 16000).astype(np.int16)


def test_aasist_loads_from_its_wheel_and_scores_real_speech(aasist, data):
    from media.audio_io import read_pcm
    from models import registry

    assert registry.spec("spoof", "aasist").status()[0]
    assert aasist.name == "aasist" and abs(aasist.seconds - 64600 / 16000) < 1e-9
    speech = pcm_to_float(read_pcm(sorted((data / LIBRI / "3005").glob("*.flac"))[0]))
    score = aasist.score(speech)
    assert np.isfinite(score)
    assert aasist.score(speech) == score  # deterministic: the network is in evaluation mode
    assert aasist.score(speech[:24000]) != score  # short speech is repeated to fill its input, not refused
    with pytest.raises(ValueError):
        aasist.score(np.zeros(0, np.float32))


def test_spoof_eval_prints_the_eer_and_the_threshold_per_kind(aasist, data, tmp_path, capsys):
    from cli.main import main
    from identity.spoofing import summarise
    from media.audio_io import read_pcm

    files = sorted((data / LIBRI).glob("*/*.flac"))[::20][:5]
    for f in files:
        pcm = read_pcm(f)[: 16000 * 6]
        write_wav(tmp_path / "live" / f"{f.stem}.wav", pcm)
        write_wav(tmp_path / "attacks" / "loudspeaker" / f"{f.stem}.wav", loudspeaker(pcm))
    (tmp_path / "attacks" / "silence").mkdir()
    write_wav(tmp_path / "attacks" / "silence" / "nothing.wav", np.zeros(16000, np.int16))  # no speech: left out
    out = tmp_path / "scores.json"
    args = ["voiceid", "spoof-eval", "--bonafide", str(tmp_path / "live"), "--spoof", str(tmp_path / "attacks")]
    assert main([*args, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1, printed
    summary = json.loads(printed)
    print(f"\nspoof-eval, AASIST, loudspeaker replays: {summary}")
    assert (summary["bonafide"], summary["spoof"]) == (5, 5)
    assert 0 <= summary["eer_percent"] <= 100 and summary["threshold"] == summary["threshold_at_eer"]
    assert set(summary["spoof_kinds"]) == {"attacks/loudspeaker"} and set(summary["bonafide_kinds"]) == {"live"}
    scores = json.loads(out.read_text())["scores"]
    assert len(scores["spoof"]["attacks/loudspeaker"]) == 5
    # At a threshold no voice reaches (as --threshold gives it), every live voice is refused and no spoof passes.
    strict = summarise(scores["bonafide"], scores["spoof"], threshold=1000.0)
    assert strict["bonafide_refused_percent"] == 100 and strict["spoof_accepted_percent"] == 0


def test_spoof_eval_refuses_an_empty_folder(aasist, tmp_path, capsys):
    from cli.main import main

    (tmp_path / "live").mkdir()
    (tmp_path / "fake").mkdir()
    code = main(["voiceid", "spoof-eval", "--bonafide", str(tmp_path / "live"), "--spoof", str(tmp_path / "fake")])
    assert code != 0
    assert "no recordings" in capsys.readouterr().err
