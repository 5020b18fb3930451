"""Voice ID evaluation on real voices: the metrics, the eval command, and its bound."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from models.metrics import equal_error_rate, frr_at_far, min_dcf


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


def test_eval_command_on_librispeech_meets_its_bound(capsys, data, tmp_path):
    from signaling.cli import main

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
    from signaling.cli import main

    (tmp_path / "only-one").mkdir()
    assert main(["voiceid", "eval", str(tmp_path)]) == 2
    assert "need at least two speaker folders" in capsys.readouterr().err


@pytest.fixture(scope="module")
def librispeech_speech(data):
    """Net speech (float32, 16 kHz) of every LibriSpeech utterance, by speaker, in file order."""
    from media.audio_io import read_pcm
    from media.speech import net_speech
    from models.base import pcm_to_float
    from models.vad import WebRtcVad

    vad = WebRtcVad()
    root = data / "voiceid/librispeech-test-other"
    return {
        d.name: [pcm_to_float(net_speech(read_pcm(f), vad)) for f in sorted(d.glob("*.flac"))]
        for d in sorted(root.iterdir())
        if d.is_dir()
    }


@pytest.fixture
def voice_id(tmp_path):
    from models.speaker import DVectorEncoder
    from signaling.security import Vault
    from signaling.store import Store
    from signaling.voiceid import VoiceId

    store = Store(tmp_path / "voxgate.db")
    yield VoiceId(store, Vault.from_file(tmp_path / "secret.key"), [DVectorEncoder()])
    store.close()


def enrolment(utterances, seconds=20.0):
    joined = np.concatenate(utterances)
    assert len(joined) >= seconds * 16000
    return joined[: int(seconds * 16000)]


def test_enrol_verify_delete_opt_out(voice_id, librispeech_speech, tmp_path):
    from signaling.voiceid import Decision

    alice, bob = librispeech_speech["3005"], librispeech_speech["1688"]
    short = voice_id.enrol("C-1", alice[0][: 5 * 16000], consent_by="agent-7", consent_wording="I agree")
    assert short == {"enrolled": False, "speech_seconds": 5.0, "needed": 20.0}  # progress, nothing stored
    assert voice_id.status("C-1")["enrolled"] is False
    done = voice_id.enrol(
        "C-1",
        enrolment(alice[:6]),
        consent_by="agent-7",
        consent_wording="I agree to VoxGate keeping a voice print to recognise me.",
    )
    assert done["enrolled"] is True
    status = voice_id.status("C-1")
    assert status["enrolled"] and status["consent"]["by"] == "agent-7" and "voice print" in status["consent"]["wording"]

    held_back = alice[-1][: 3 * 16000]
    assert voice_id.verify("C-1", held_back).decision == Decision.AUTHENTICATED
    assert voice_id.verify("C-1", bob[-1][: 3 * 16000]).decision == Decision.NOT_AUTHENTICATED
    assert voice_id.verify("C-1", held_back[:16000]).decision == Decision.INCONCLUSIVE  # 1 s: too little speech
    assert voice_id.verify("C-404", held_back).decision == Decision.NOT_ENROLLED

    # Stored sealed: no embedding in the clear, and another key cannot open it.
    from cryptography.exceptions import InvalidTag

    from signaling.security import Vault

    sealed = voice_id.store.voiceprint("C-1")["sealed"]
    assert sealed.startswith(b"VG1") and b"dvector" not in sealed  # the plaintext is {"dvector": [...]}
    with pytest.raises(InvalidTag):
        Vault(b"\x00" * 32).open(sealed, "voiceprint:C-1")

    assert voice_id.delete("C-1", actor="agent-7")
    assert voice_id.verify("C-1", held_back).decision == Decision.NOT_ENROLLED
    assert voice_id.store.voiceprint("C-1") is None
    voice_id.enrol("C-1", enrolment(alice[:6]), consent_by="agent-7", consent_wording="I agree")
    voice_id.opt_out("C-1", actor="agent-7")
    assert voice_id.verify("C-1", held_back).decision == Decision.OPTED_OUT
    assert voice_id.store.voiceprint("C-1")["sealed"] is None  # the refusal is kept, the print is not
    actions = [r["action"] for r in voice_id.store.audit_log("C-1")]
    assert actions == ["voiceprint.enrol", "voiceprint.delete", "voiceprint.enrol", "voiceprint.opt_out"]


def test_watch_list_hits_whatever_the_claimed_identity(voice_id, librispeech_speech):
    fraudster, honest = librispeech_speech["1688"], librispeech_speech["3005"]
    voice_id.enrol(
        "FRAUD-1",
        enrolment(fraudster[:6]),
        consent_by="fraud-team",
        consent_wording="watch list",
        watchlist=True,
        watch_reason="account takeover, case 881",
    )
    hits = voice_id.screen(fraudster[-1][: 3 * 16000])
    assert [h["watchlist_id"] for h in hits] == ["FRAUD-1"] and hits[0]["reason"] == "account takeover, case 881"
    assert voice_id.screen(honest[-1][: 3 * 16000]) == []
    # A watch-list print is never an identity to authenticate as.
    from signaling.voiceid import Decision

    assert voice_id.verify("FRAUD-1", fraudster[-1][: 3 * 16000]).decision == Decision.NOT_ENROLLED


async def test_live_call_verifies_the_claimed_customer_and_flags_the_watch_list(
    tmp_path, data, whisper, fast_mt, librispeech_speech
):
    """Pure-Python WebRTC callers: an enrolled customer is authenticated from natural speech; a watch-listed
    voice claiming the same identity is refused and raises a high-risk alert."""
    import asyncio

    import aiohttp

    from media.pipeline import Engines
    from models.routing import Router
    from models.speaker import DVectorEncoder
    from models.vad import WebRtcVad
    from tests.peers import SpeechTrack, TestServer, customer_connect
    from tests.test_server import login, new_link, wait_for

    engines = Engines(
        vad=WebRtcVad, asr=whisper, router=Router([fast_mt], whisper.languages()), speaker=DVectorEncoder()
    )
    server = await TestServer(tmp_path / "data", engines).start()
    server.add_agent(language="en")
    voice_id = server.calls.voice_id
    alice, fraud = librispeech_speech["3005"], librispeech_speech["1688"]
    voice_id.enrol("C-1", enrolment(alice[:6]), consent_by="alice", consent_wording="I agree")
    voice_id.enrol(
        "FRAUD-1",
        enrolment(fraud[:6]),
        consent_by="fraud-team",
        consent_wording="watch list",
        watchlist=True,
        watch_reason="case 881",
    )
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            headers = await login(http, server)
            ws = await http.ws_connect(f"{server.base}/api/ws")
            events: list[dict] = []

            async def read():
                async for msg in ws:
                    events.append(msg.json())

            reader = asyncio.create_task(read())
            files = sorted((data / "voiceid/librispeech-test-other/3005").glob("*.flac"))
            genuine = await new_link(http, server, headers, customer_ref="C-1")
            caller, _, _ = await customer_connect(http, genuine["url"], SpeechTrack(files[-1]), video=False)

            def decisions(link_id):
                return [e for e in events if e.get("type") == "voiceid" and e["link_id"] == link_id]

            await wait_for(
                lambda: any(e["decision"] == "authenticated" for e in decisions(genuine["link"]["id"])), timeout=20
            )
            first = decisions(genuine["link"]["id"])
            received = time.time()
            for e in first[1:]:
                t = e["timing"]
                assert t["speech_reached"] <= t["decided"] <= received
                print(
                    f"\nvoice ID at {e['speech_seconds']} s of speech: {e['decision']} (score {e['score']}), "
                    f"decided {t['decided'] - t['speech_reached']:.3f} s after that speech arrived"
                )
            assert first[0]["decision"] == "inconclusive" and first[0]["speech_seconds"] == 0
            assert next(e for e in first if e["decision"] == "authenticated")["speech_seconds"] >= 1.5
            await caller.close()

            impostor_file = sorted((data / "voiceid/librispeech-test-other/1688").glob("*.flac"))[-1]
            claim = await new_link(http, server, headers, customer_ref="C-1")
            caller, _, _ = await customer_connect(http, claim["url"], SpeechTrack(impostor_file), video=False)
            await wait_for(
                lambda: any(e.get("type") == "voiceid_alert" and e["link_id"] == claim["link"]["id"] for e in events),
                timeout=20,
            )
            alert = next(e for e in events if e.get("type") == "voiceid_alert")
            assert alert["risk"] == "high" and alert["hits"][0]["watchlist_id"] == "FRAUD-1"
            assert not any(e["decision"] == "authenticated" for e in decisions(claim["link"]["id"]))
            await caller.close()
            reader.cancel()
    finally:
        await server.stop()


def test_cli_enrols_with_progress_and_deletes(capsys, tmp_path, data):
    from signaling.cli import main

    files = sorted((data / "voiceid/librispeech-test-other/3005").glob("*.flac"))
    args = ["voiceid", "enrol", "C-9", "--consent", "I agree", "--by", "agent-7", "--data-dir", str(tmp_path)]
    assert main(args + [str(files[0])]) == 1  # one short recording: progress, nothing stored
    out = json.loads(capsys.readouterr().out.splitlines()[0])
    assert out["enrolled"] is False and 0 < out["speech_seconds"] < 20
    assert main(args + [str(f) for f in files[:6]]) == 0
    assert json.loads(capsys.readouterr().out)["enrolled"] is True
    assert main(["voiceid", "delete", "C-9", "--data-dir", str(tmp_path)]) == 0
    assert main(["voiceid", "delete", "C-9", "--data-dir", str(tmp_path)]) == 1


def test_calibration_thresholds_by_duration():
    from signaling.voiceid import Calibration

    c = Calibration.parse("3:0.64,1.5:0.61,6:0.65")
    assert c.thresholds == ((1.5, 0.61), (3.0, 0.64), (6.0, 0.65))
    assert c.threshold(1.0) is None and c.threshold(1.5) == 0.61 and c.threshold(4.2) == 0.64
    assert c.threshold(60) == 0.65
    with pytest.raises(ValueError, match="look like"):
        Calibration.parse("three seconds")
