"""Voice ID evaluation on real voices: the metrics, the eval command, and its bound."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from cli.main import main
from models.metrics import equal_error_rate, frr_at_far, min_dcf
from tests.conftest import enrolment


def test_metrics_on_known_score_sets():
    genuine = np.array([0.9, 0.8, 0.7, 0.6])
    impostor = np.array([0.1, 0.2, 0.3, 0.65])
    eer, _ = equal_error_rate(genuine, impostor)
    assert eer == pytest.approx(0.25)  # one impostor above one genuine: 1 of 4 each way at the crossing
    frr, threshold = frr_at_far(genuine, impostor, 0.01)
    assert threshold > 0.65 and frr == pytest.approx(0.25)
    assert min_dcf(np.array([0.9]), np.array([0.1])) == 0.0
    assert 0 < min_dcf(genuine, impostor) <= 1


def test_net_speech_drops_the_pauses(data):
    from media.audio_io import read_pcm
    from media.speech import net_speech
    from models.vad import WebRtcVad

    speech = read_pcm(data / "asr/multilingual/test_pt.wav")
    padded = np.concatenate([np.zeros(32000, np.int16), speech, np.zeros(48000, np.int16)])
    net = net_speech(padded, WebRtcVad())
    assert 2.5 < len(net) / 16000 < len(speech) / 16000 + 0.2  # the 5 s of silence are gone


def test_net_speech_of_a_live_stream_matches_the_whole_recording(data):
    """Calls count speech from 20 ms WebRTC frames (48 kHz stereo); files at once: the same seconds either way."""
    import av

    from media.audio_io import read_pcm
    from media.speech import NetSpeech, net_speech
    from models.vad import WebRtcVad

    speech = read_pcm(sorted((data / "voiceid/librispeech-test-other/3005").glob("*.flac"))[0])
    tap, live = NetSpeech(WebRtcVad()), 0
    stereo48 = np.repeat(np.repeat(speech, 3), 2)  # 48 kHz, two channels interleaved
    for i in range(0, len(stereo48) - 1920 + 1, 1920):
        frame = av.AudioFrame.from_ndarray(stereo48[i : i + 1920].reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = 48000
        live += len(tap.push_frame(frame))
    whole = len(net_speech(speech, WebRtcVad()))
    assert whole > 5 * 16000 and abs(live - whole) / whole < 0.03


def test_eval_command_on_librispeech_meets_its_bound(capsys, data, tmp_path):
    from cli.main import main

    plot = tmp_path / "det.png"
    code = main(
        [
            "voiceid",
            "eval",
            str(data / "voiceid/librispeech-test-other"),
            "--enrol-seconds",
            "20",
            "--test-seconds",
            "3",
            "--plot",
            str(plot),
        ]
    )
    result = json.loads(capsys.readouterr().out)
    print(f"\nvoiceid eval, d-vector, 3 s tests: {result}")
    assert code == 0
    assert {
        "eer_percent",
        "min_dcf",
        "frr_at_far1_percent",
        "genuine_trials",
        "impostor_trials",
        "test_seconds",
    } <= set(result)
    assert result["test_seconds"] == 3.0 and result["speakers"] == 10
    assert result["genuine_trials"] >= 50 and result["impostor_trials"] == 9 * result["genuine_trials"]
    assert result["eer_percent"] <= 1.0  # the bar at 3 s; measured 0.0% here (560 trials)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_refuses_a_directory_without_speakers(capsys, tmp_path):
    from cli.main import main

    (tmp_path / "only-one").mkdir()
    assert main(["voiceid", "eval", str(tmp_path)]) == 2
    assert "need at least two speaker folders" in capsys.readouterr().err


@pytest.fixture
def voice_id(tmp_path):
    from identity.voiceid import VoiceId
    from models.speaker import DVectorEncoder
    from store.security import Vault
    from store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "voxgate.db")
    yield VoiceId(store, Vault.from_file(tmp_path / "secret.key"), [DVectorEncoder()])
    store.close()


def test_enrolment_builds_up_then_verifies_deletes_and_opts_out(voice_id, librispeech_speech):
    from identity.voiceid import Decision

    alice, bob = librispeech_speech["3005"], librispeech_speech["1688"]
    speech = enrolment(alice[:6])
    wording = "I agree to VoxGate keeping a voice print to recognise me."
    started = voice_id.consent("C-1", by="agent-7", wording=wording)
    assert (started.speech_seconds, started.enrolled) == (0, False)
    # Two recordings: progress is kept between them ("12 of 20 s"), and nothing verifies until the print exists.
    first = voice_id.add_speech("C-1", speech[: 12 * 16000])
    assert (first.speech_seconds, first.needed, first.enrolled) == (12.0, 20.0, False)
    assert voice_id.status("C-1")["enrolment"]["speech_seconds"] == 12.0
    assert voice_id.verify("C-1", alice[-1][: 3 * 16000]).decision == Decision.NOT_ENROLLED
    done = voice_id.add_speech("C-1", speech[12 * 16000 :])
    assert done.enrolled and done.speech_seconds == 20.0
    status = voice_id.status("C-1")
    assert status["enrolled"] and "enrolment" not in status
    assert status["consent"]["by"] == "agent-7" and status["consent"]["wording"] == wording

    held_back = alice[-1][: 3 * 16000]
    authenticated = voice_id.verify("C-1", held_back)
    assert authenticated.decision == Decision.AUTHENTICATED and authenticated.threshold == 0.64
    assert voice_id.verify("C-1", bob[-1][: 3 * 16000]).decision == Decision.NOT_AUTHENTICATED
    assert voice_id.verify("C-1", held_back[:16000]).decision == Decision.INCONCLUSIVE  # 1 s: too little speech
    assert voice_id.verify("C-404", held_back).decision == Decision.NOT_ENROLLED

    # Stored sealed: no embedding in the clear, and another key cannot open it.
    from cryptography.exceptions import InvalidTag

    from store.security import Vault

    sealed = voice_id.prints.get("C-1").sealed
    assert sealed.startswith(b"VG1") and b"dvector" not in sealed  # the plaintext is {"dvector": [...]}
    with pytest.raises(InvalidTag):
        Vault(b"\x00" * 32).open(sealed, "voiceprint:C-1")

    assert voice_id.delete("C-1", actor="agent-7")
    assert voice_id.verify("C-1", held_back).decision == Decision.NOT_ENROLLED
    assert voice_id.prints.get("C-1") is None
    voice_id.enrol("C-1", speech, by="agent-7", wording="I agree")
    voice_id.opt_out("C-1", actor="agent-7")
    assert voice_id.verify("C-1", held_back).decision == Decision.OPTED_OUT
    assert voice_id.prints.get("C-1").sealed is None  # the refusal is kept, the print is not
    actions = [r["action"] for r in voice_id.store.audit.log("C-1")]
    assert actions == [
        "voiceprint.consent",
        "voiceprint.enrol",
        "voiceprint.delete",
        "voiceprint.consent",
        "voiceprint.enrol",
        "voiceprint.opt_out",
    ]


def test_adding_speech_needs_consent_and_deletion_takes_an_unfinished_enrolment(voice_id, librispeech_speech):
    from identity.voiceid import EnrolmentError

    speech = librispeech_speech["3005"][0][: 5 * 16000]
    with pytest.raises(EnrolmentError, match="no consent on record"):
        voice_id.add_speech("C-2", speech)
    with pytest.raises(EnrolmentError, match="consent wording"):
        voice_id.consent("C-2", by="agent-7", wording="  ")
    voice_id.enrol("C-2", speech, by="agent-7", wording="I agree")
    sealed = voice_id.prints.enrolment("C-2").sealed
    assert sealed.startswith(b"VG1") and b"sums" not in sealed  # progress is sealed like a print
    assert voice_id.delete("C-2", actor="customer")
    assert voice_id.prints.enrolment("C-2") is None


def test_re_enrolment_keeps_the_old_print_until_the_new_one_is_complete(voice_id, librispeech_speech):
    from identity.voiceid import Decision

    alice = librispeech_speech["3005"]
    voice_id.enrol("C-1", enrolment(alice[:6]), by="agent-7", wording="I agree")
    old = voice_id.prints.get("C-1").sealed
    voice_id.enrol("C-1", alice[6][: 4 * 16000], by="agent-9", wording="I agree again")
    assert voice_id.prints.get("C-1").sealed == old  # still verifying with the old print
    assert voice_id.verify("C-1", alice[-1][: 3 * 16000]).decision == Decision.AUTHENTICATED
    assert voice_id.add_speech("C-1", enrolment(alice[:6], 16.0)).enrolled
    row = voice_id.prints.get("C-1")
    assert row.sealed != old and row.consent.by == "agent-9"


def test_watch_list_hits_whatever_the_claimed_identity(voice_id, librispeech_speech):
    from identity.voiceid import Decision

    fraudster, honest = librispeech_speech["1688"], librispeech_speech["3005"]
    voice_id.watch("FRAUD-1", enrolment(fraudster[:6]), reason="account takeover, case 881", by="fraud-team")
    hits = voice_id.screen(fraudster[-1][: 3 * 16000])
    assert [h["watchlist_id"] for h in hits] == ["FRAUD-1"] and hits[0]["reason"] == "account takeover, case 881"
    assert voice_id.screen(honest[-1][: 3 * 16000]) == []
    # A watch-list print is never an identity to authenticate as.
    assert voice_id.verify("FRAUD-1", fraudster[-1][: 3 * 16000]).decision == Decision.NOT_ENROLLED
    # And the fraudster cannot enrol their voice under a customer's name: the enrolment is refused.
    refused = voice_id.enrol("C-7", enrolment(fraudster[3:9]), by="agent-7", wording="I agree")
    assert not refused.enrolled and "watch list" in refused.refused
    assert voice_id.prints.get("C-7") is None and voice_id.prints.enrolment("C-7") is None
    # An honest customer enrols as usual; an enrolled print can be flagged later.
    assert voice_id.enrol("C-8", enrolment(honest[:6]), by="agent-7", wording="I agree").enrolled
    assert voice_id.flag("C-8", reason="confirmed fraud, case 902", by="fraud-team")
    assert [h["watchlist_id"] for h in voice_id.screen(honest[-1][: 3 * 16000])] == ["C-8"]
    assert not voice_id.flag("C-404", reason="x", by="fraud-team")


def test_cli_enrols_over_several_runs_with_progress_and_deletes(capsys, tmp_path, data):
    from cli.main import main

    files = sorted((data / "voiceid/librispeech-test-other/3005").glob("*.flac"))
    where = ["--data-dir", str(tmp_path)]
    consent = ["--consent", "I agree", "--by", "agent-7"]
    assert main(["voiceid", "enrol", "C-9", str(files[0]), *consent, *where]) == 1  # one short recording
    first = json.loads(capsys.readouterr().out)
    assert first["enrolled"] is False and 0 < first["speech_seconds"] < 20 and first["needed"] == 20
    # Later, more recordings go to the same enrolment (the consent is on record).
    assert main(["voiceid", "enrol", "C-9", *map(str, files[1:6]), *where]) == 0
    assert json.loads(capsys.readouterr().out)["enrolled"] is True
    assert main(["voiceid", "enrol", "C-10", str(files[0]), *where]) == 2  # no consent on record
    assert "no consent on record" in capsys.readouterr().err
    assert main(["voiceid", "delete", "C-9", *where]) == 0
    assert main(["voiceid", "delete", "C-9", *where]) == 1


def test_calibrate_command_reproduces_the_default_thresholds(capsys, data):
    """The shipped thresholds are what calibration on real speech gives, not guesses."""
    from cli.main import main
    from identity.voiceid import Calibration

    assert main(["voiceid", "calibrate", str(data / "voiceid/librispeech-test-other"), "--far", "0.01"]) == 0
    result = json.loads(capsys.readouterr().out)
    print(f"\nvoiceid calibrate on LibriSpeech: {result['thresholds']}")
    measured = Calibration.parse(result["thresholds"]).thresholds
    assert [s for s, _ in measured] == [1.5, 3.0, 6.0]
    for (_, got), (_, shipped) in zip(measured, Calibration().thresholds, strict=True):
        assert abs(got - shipped) < 0.02
    assert all(row["impostor_trials"] >= 100 for row in result["durations"])


def test_calibration_thresholds_by_duration():
    from identity.voiceid import Calibration

    c = Calibration.parse("3:0.64,1.5:0.61,6:0.65")
    assert c.thresholds == ((1.5, 0.61), (3.0, 0.64), (6.0, 0.65))
    assert c.threshold(1.0) is None and c.threshold(1.5) == 0.61 and c.threshold(4.2) == 0.64
    assert c.threshold(60) == 0.65
    with pytest.raises(ValueError, match="look like"):
        Calibration.parse("three seconds")


def test_twenty_concurrent_recordings_into_one_enrolment_keep_all_their_speech(voice_id, librispeech_speech):
    """Recordings posted at once for one customer (threads, as the server's executor runs them) all count, and
    each answer reports the enrolment as it stood after its own speech: no answer goes backwards."""
    from concurrent.futures import ThreadPoolExecutor

    voice_id.consent("C-5", by="agent-7", wording="I agree")
    clips = [u[: int(0.8 * 16000)] for u in librispeech_speech["3005"][:10] + librispeech_speech["3005"][:10]]
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda clip: voice_id.add_speech("C-5", clip), clips))
    assert voice_id.prints.enrolment("C-5").speech_seconds == pytest.approx(16.0)
    seen = sorted(a.speech_seconds for a in answers)
    assert seen == pytest.approx([0.8 * k for k in range(1, 21)])  # each answer is one step of the enrolment
    assert not any(a.enrolled for a in answers)  # 16 s of the 20 needed


def test_a_print_made_with_another_encoder_is_not_enrolled_here_and_breaks_nothing(
    tmp_path, voice_id, librispeech_speech
):
    """``voiceid enrol`` may have used another encoder than ``serve --speaker``: the print does not verify here
    (it says so), and neither a call's check nor the watch-list screen fails."""
    from identity.voiceid import Decision, VoiceId
    from models.speaker import ResemblyzerEncoder

    alice = librispeech_speech["3005"]
    voice_id.enrol("C-1", enrolment(alice[:6]), by="agent-7", wording="I agree")
    voice_id.watch("FRAUD-1", enrolment(alice[:6]), reason="case 9", by="fraud-team")
    other = VoiceId(voice_id.store, voice_id.vault, [ResemblyzerEncoder()])
    verdict, hits = other.check("C-1", alice[-1][: 3 * 16000])
    assert verdict.decision == Decision.NOT_ENROLLED and hits == []
    assert not other.enrolled("C-1") and other.status("C-1")["encoders_missing"] == ["resemblyzer"]
    assert voice_id.verify("C-1", alice[-1][: 3 * 16000]).decision == Decision.AUTHENTICATED  # still fine for dvector


def test_the_enrol_command_uses_the_encoder_the_server_uses(tmp_path, capsys, data):
    files = sorted((data / "voiceid/librispeech-test-other/3005").glob("*.flac"))[:6]
    where = ["--data-dir", str(tmp_path / "d"), "--by", "cli", "--consent", "I agree"]
    assert main(["voiceid", "enrol", "C-1", *map(str, files), *where, "--speaker", "resemblyzer"]) == 0
    capsys.readouterr()
    from identity.voiceid import VoiceId
    from models.speaker import ResemblyzerEncoder
    from store.security import Vault
    from store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "d" / "voxgate.db")
    try:
        assert VoiceId(store, Vault.from_file(tmp_path / "d" / "secret.key"), [ResemblyzerEncoder()]).enrolled("C-1")
    finally:
        store.close()


def test_eval_plot_needs_no_scipy_and_says_what_to_install_without_matplotlib(tmp_path, capsys, monkeypatch, data):
    root = tmp_path / "four"
    for speaker in ("1688", "1998", "2033", "3005"):
        (root / speaker).mkdir(parents=True)
        for f in sorted((data / "voiceid/librispeech-test-other" / speaker).glob("*.flac"))[:7]:
            (root / speaker / f.name).symlink_to(f)
    plot = tmp_path / "det.png"
    monkeypatch.setitem(sys.modules, "scipy", None)  # a default install has no SciPy
    monkeypatch.setitem(sys.modules, "scipy.stats", None)
    assert main(["voiceid", "eval", str(root), "--plot", str(plot)]) == 0
    assert plot.stat().st_size > 1000
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # nor matplotlib: a clear error before any work
    assert main(["voiceid", "eval", str(root), "--plot", str(plot)]) == 2
    assert "pip install 'voxgate[bench]'" in capsys.readouterr().err
