"""The spoken language of a 'detect' leg: detection with its confidence, a vote over the first finals, the
agent's correction mid-call, and a customer who changes language after the vote settled (re-detection), on real
speech with the real Whisper models (and the vote's rules on their own)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from media.events import FinalTranscript, LanguageChanged, Translation
from media.frames import AudioFrame
from media.pipeline import LanguageVote, Pipeline, PipelineConfig
from models.base import pcm_to_float
from models.decoding import Job
from models.errors import UnsupportedLanguage
from models.metrics import normalise_words
from tests.conftest import pcm

SILENCE = np.zeros(16000, np.int16)  # a second: the endpoint


def frames(mono: np.ndarray) -> list[AudioFrame]:
    """20 ms frames of 16 kHz audio, followed by a second of silence so the utterance ends."""
    mono = np.concatenate([mono, SILENCE])
    return [AudioFrame.mono(mono[i : i + 320], 16000, i / 16000) for i in range(0, len(mono), 320)]


class Listener:
    """Reads a pipeline's events as they come, so a test can wait for one before it speaks again."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.events: list = []
        self._arrived = asyncio.Event()
        self.task = asyncio.create_task(self._read(pipeline))

    async def _read(self, pipeline: Pipeline) -> None:
        async for e in pipeline.events():
            self.events.append(e)
            self._arrived.set()

    async def wait_for_finals(self, n: int) -> None:
        async with asyncio.timeout(60):
            while len(self.finals) < n:
                self._arrived.clear()
                await self._arrived.wait()

    @property
    def finals(self) -> list[FinalTranscript]:
        return [e for e in self.events if isinstance(e, FinalTranscript)]


async def say(pipeline: Pipeline, mono: np.ndarray) -> None:
    for f in frames(mono):
        await pipeline.push(f)
    await asyncio.sleep(0)


# -- the vote rule (no model) ---------------------------------------------------------------------------------------


def test_the_vote_leads_with_the_most_weight_and_settles_at_three_confident_votes():
    vote = LanguageVote()
    assert (vote.leader, vote.settled, vote.confidence) == (None, False, None)
    assert vote.add("en", 0.6)  # the first detection leads: announced
    assert (vote.leader, vote.settled, vote.confidence) == ("en", False, 1.0)
    assert vote.add("pt", 0.9)  # more weight: a new leader, announced
    assert vote.leader == "pt" and not vote.settled and vote.confidence == pytest.approx(0.6)
    assert vote.add("pt", 0.9)  # 1.8 of 2.4 = 75% after 3 votes: settled, announced
    assert vote.leader == "pt" and vote.settled and vote.confidence == pytest.approx(0.75)
    assert not vote.add("en", 1.0)  # settled means settled
    assert vote.leader == "pt" and vote.votes == 3


def test_the_vote_needs_three_votes_even_when_unanimous_and_a_tie_keeps_the_leader():
    vote = LanguageVote()
    assert vote.add("pt", 0.95)
    assert not vote.add("pt", 0.95)  # same leader, not settled yet: nothing to announce
    assert not vote.settled
    assert vote.add("pt", 0.95) and vote.settled
    tie = LanguageVote()
    tie.add("en", 0.5)
    assert not tie.add("es", 0.5) and tie.leader == "en"


def test_low_confidence_keeps_detecting_and_the_leader_settles_at_eight_votes():
    vote = LanguageVote()
    for language in ["es", "pt", "es", "pt", "es", "pt", "es"]:  # never 70%: keeps voting
        vote.add(language, 0.5)
        assert not vote.settled
    assert vote.leader == "es" and vote.confidence == pytest.approx(4 / 7)
    assert vote.add("pt", 0.4) and vote.settled  # the eighth vote settles on the leader, whatever its share
    assert vote.leader == "es" and vote.votes == 8


def settled_on(language: str) -> LanguageVote:
    vote = LanguageVote()
    for _ in range(3):
        vote.add(language, 0.99)
    assert vote.settled and vote.rechecking
    return vote


def test_a_settled_vote_switches_on_two_confident_long_finals_in_a_row_in_the_same_other_language():
    vote = settled_on("en")
    assert not vote.recheck("pt", 0.97, 4.0)  # one final never switches
    assert not vote.recheck("en", 0.6, 3.0)  # back in English, however unsure: the run is broken
    assert not vote.recheck("pt", 0.97, 4.0)
    assert not vote.recheck("en", None, 3.0)  # decoded in English with no doubt (no detection): broken too
    assert not vote.recheck("pt", 0.97, 4.0)
    assert not vote.recheck("es", 0.9, 3.0)  # another language, confidently: a run of its own
    assert vote.leader == "en" and vote.switches == 0
    assert not vote.recheck("pt", 0.97, 4.0)
    assert not vote.recheck("pt", 0.99, 0.6)  # too short to tell ("sim"): neither counts nor breaks the run
    assert not vote.recheck("es", 0.55, 3.0)  # unsure of another language (Spanish or Portuguese?): neither
    assert vote.leader == "en"
    assert vote.recheck("pt", 0.9, 2.0)  # the second in a row: switched
    assert (vote.leader, vote.settled, vote.rechecking, vote.switches) == ("pt", True, True, 1)
    assert vote.confidence == pytest.approx(1.0) and not vote.add("en", 1.0)  # switched, not voting again
    assert not vote.recheck("en", 0.95, 3.0) and vote.recheck("en", 0.95, 3.0)  # and it can switch back


def test_a_language_given_or_set_by_the_agent_is_never_re_detected():
    given = LanguageVote("en")
    assert not given.rechecking
    assert not any(given.recheck("pt", 1.0, 5.0) for _ in range(4)) and given.leader == "en"
    vote = settled_on("en")
    vote.recheck("pt", 0.99, 5.0)
    vote.settle("en")  # the agent confirms English: the run of Portuguese, and any to come, count for nothing
    assert not vote.rechecking
    assert not any(vote.recheck("pt", 1.0, 5.0) for _ in range(4)) and vote.leader == "en" and vote.switches == 0


def test_a_given_language_is_settled_and_the_agent_overrules_a_vote():
    fixed = LanguageVote("en")
    assert fixed.settled and not fixed.add("pt", 1.0) and fixed.leader == "en"
    vote = LanguageVote()
    vote.add("en", 0.9)
    vote.settle("pt")
    assert vote.leader == "pt" and vote.settled and not vote.add("en", 1.0)


# -- detection on real speech --------------------------------------------------------------------------------------


def test_a_decode_told_a_language_can_still_say_what_it_hears(whisper, data):
    """Generation follows the language given; detection reports the one spoken, with its probability."""
    audio = pcm_to_float(pcm(data / "asr/multilingual/test_pt.wav"))
    told, free, plain = whisper.runner.decode(
        [
            Job(whisper.runner, audio, "en", detect=True),
            Job(whisper.runner, audio, None),
            Job(whisper.runner, audio, "pt"),  # batched with the others: asked nothing, told nothing
        ]
    )
    assert told.language == "en" and told.detected_language == "pt" and told.language_probability > 0.5
    assert free.language == free.detected_language == "pt" and free.language_probability > 0.5
    assert "raposa" in free.texts["transcribe"].lower()
    assert (plain.detected_language, plain.language_probability) == (None, None)


def test_an_english_only_model_cannot_tell_so_detection_goes_to_the_multilingual_one(data):
    from models.asr_whisper import WhisperEngine
    from models.locate import whisper_tiny_en_dir

    engine = WhisperEngine(english_model_dir=whisper_tiny_en_dir())
    try:
        audio = pcm_to_float(pcm(data / "asr/multilingual/test.wav"))
        assert engine.final_job(audio, "en").runner is engine.english
        assert engine.final_job(audio, "en", detect=True).runner is engine.runner
        [d] = engine.english.decode([Job(engine.english, audio, "en", detect=True)])
        assert d.language == "en" and (d.detected_language, d.language_probability) == (None, None)
    finally:
        engine.close()


async def test_a_portuguese_speaker_on_a_detect_leg_is_voted_portuguese(engines, data):
    """Three Portuguese sentences: the first leads at once, the third settles it; each announcement comes right
    before its final, and the translation follows the language."""
    pipeline = Pipeline(engines, PipelineConfig(language=None, target_language="en", partials=False))
    listener = Listener(pipeline)
    sentence = pcm(data / "asr/multilingual/test_pt.wav")
    for _ in range(3):
        await say(pipeline, sentence)
    await pipeline.close()
    await listener.task
    events = listener.events
    changes = [e for e in events if isinstance(e, LanguageChanged)]
    assert [(c.language, c.settled, c.by) for c in changes] == [("pt", False, "detected"), ("pt", True, "detected")]
    assert all(c.confidence == pytest.approx(1.0) for c in changes)
    finals = listener.finals
    assert len(finals) == 3 and all(f.language == "pt" and "raposa" in f.text.lower() for f in finals)
    for change, final in zip(changes, (finals[0], finals[2]), strict=True):
        assert events[events.index(change) + 1] is final and change.segment == final.segment
        assert (change.audio_start, change.audio_end) == (final.audio_start, final.audio_end)
    assert pipeline.language == "pt"
    translations = [e for e in events if isinstance(e, Translation)]
    assert len(translations) == 3 and all(t.source_language == "pt" for t in translations)
    assert {"type": "language", "language": "pt", "settled": True, "by": "detected"}.items() <= changes[
        -1
    ].to_dict().items()


async def test_the_agent_corrects_the_language_mid_call(engines, data):
    """A leg announced as English hears Portuguese; the agent says Portuguese: the next sentence is Portuguese
    text, translated from Portuguese, and the correction is announced."""
    pipeline = Pipeline(engines, PipelineConfig(language="en", target_language="en", partials=False))
    listener = Listener(pipeline)
    sentence = pcm(data / "asr/multilingual/test_pt.wav")
    await say(pipeline, sentence)
    await listener.wait_for_finals(1)
    with pytest.raises(UnsupportedLanguage, match="xx-unknown"):
        pipeline.set_language("xx-unknown")
    assert pipeline.language == "en"
    pipeline.set_language("pt")
    await say(pipeline, sentence)
    await pipeline.close()
    await listener.task
    first, second = listener.finals
    assert first.language == "en"  # decoded as it was announced (a fixed language is never detected)
    assert second.language == "pt" and {"raposa", "velha"} <= set(normalise_words(second.text))
    [change] = [e for e in listener.events if isinstance(e, LanguageChanged)]
    assert (change.language, change.by, change.settled, change.confidence) == ("pt", "agent", True, None)
    assert change.segment == first.segment
    assert listener.events.index(first) < listener.events.index(change) < listener.events.index(second)
    [translation] = [e for e in listener.events if isinstance(e, Translation)]  # en->en needs none; pt->en does
    assert translation.source_language == "pt" and translation.segment == second.segment
    assert "fox" in translation.text.lower()


# -- re-detection after the vote settled, on real speech --------------------------------------------------------


@pytest.fixture(scope="module")
def english_engines(fast_mt):
    """The server's default ASR: English on Whisper tiny.en (no language ID of its own), the rest on base."""
    from models.asr_whisper import WhisperEngine
    from models.engines import Engines
    from models.locate import whisper_tiny_en_dir
    from models.routing import Router
    from models.vad import WebRtcVad

    asr = WhisperEngine(english_model_dir=whisper_tiny_en_dir())
    yield Engines(vad=WebRtcVad, asr=asr, router=Router([fast_mt], asr.languages()))
    asr.close()


ENGLISH = ("asr/multilingual/test.wav", "asr/speechbrain-en/spk1_snt1.wav", "asr/speechbrain-en/spk1_snt4.wav")


async def hear(pipeline: Pipeline, data, files: list[str]) -> list:
    """Say each recording in turn, close, and return every event."""
    listener = Listener(pipeline)
    for f in files:
        await say(pipeline, pcm(data / f))
    await pipeline.close()
    await listener.task
    return listener.events


async def test_a_customer_who_changes_to_portuguese_mid_call_is_re_detected_and_translated_from_it(
    english_engines, data
):
    """Settled on English by the vote (tiny.en then decodes it, with no language ID), the customer speaks
    Portuguese: tiny.en is unsure of it, so each such final gets one language-ID pass; the second in a row switches
    the leg, announced just before that final, and the next is Portuguese text translated from Portuguese."""
    pipeline = Pipeline(english_engines, PipelineConfig(language=None, target_language="en", partials=False))
    events = await hear(pipeline, data, [*ENGLISH, *["asr/multilingual/test_pt.wav"] * 3])
    changes = [e for e in events if isinstance(e, LanguageChanged)]
    assert [(c.language, c.settled, c.by) for c in changes] == [
        ("en", False, "detected"),
        ("en", True, "detected"),
        ("pt", True, "detected"),
    ]
    finals = [e for e in events if isinstance(e, FinalTranscript)]
    assert [f.language for f in finals] == ["en"] * 5 + ["pt"]
    switch = changes[-1]
    assert events[events.index(switch) + 1] is finals[4] and switch.segment == finals[4].segment
    assert switch.confidence == pytest.approx(1.0)
    assert {"raposa", "velha"} <= set(normalise_words(finals[5].text))
    assert pipeline.language == "pt"
    [translation] = [e for e in events if isinstance(e, Translation)]  # English needs none into English
    assert translation.source_language == "pt" and translation.segment == finals[5].segment
    assert "fox" in translation.text.lower()
    # Two paid passes (the Portuguese finals tiny.en decoded); the third came free with base's own decode.
    assert 2 <= pipeline.rechecks["passes"] <= 2 + pipeline.guesses["withdrawn"]
    assert (pipeline.rechecks["checked"], pipeline.rechecks["switched"]) == (3, 1)


async def test_one_portuguese_sentence_at_a_time_never_flips_an_english_leg(engines, data):
    """On the multilingual model (no English model), every final's detection comes with its decode, free: an
    off-language sentence between English ones, twice, is heard as Portuguese and still does not switch the leg."""
    pipeline = Pipeline(engines, PipelineConfig(language=None, target_language="en", partials=False))
    portuguese = "asr/multilingual/test_pt.wav"
    events = await hear(pipeline, data, [*ENGLISH, portuguese, ENGLISH[0], portuguese])
    changes = [e for e in events if isinstance(e, LanguageChanged)]
    assert [(c.language, c.settled) for c in changes] == [("en", False), ("en", True)]
    assert [f.language for f in events if isinstance(f, FinalTranscript)] == ["en"] * 6
    assert pipeline.language == "en"
    assert (pipeline.rechecks["checked"], pipeline.rechecks["switched"], pipeline.rechecks["passes"]) == (3, 0, 0)


async def test_a_language_the_agent_set_is_never_overruled_by_re_detection(engines, data):
    """The agent says English before the customer speaks: two Portuguese sentences in a row change nothing, and
    cost no language ID at all."""
    pipeline = Pipeline(engines, PipelineConfig(language=None, target_language="en", partials=False))
    pipeline.set_language("en")
    events = await hear(pipeline, data, ["asr/multilingual/test_pt.wav"] * 2)
    changes = [e for e in events if isinstance(e, LanguageChanged)]
    assert [(c.language, c.by) for c in changes] == [("en", "agent")]
    finals = [e for e in events if isinstance(e, FinalTranscript)]
    assert len(finals) == 2 and all(f.language == "en" for f in finals)
    assert pipeline.language == "en" and not pipeline.rechecks


async def test_an_english_leg_pays_no_language_id_pass_for_ordinary_english(english_engines, data):
    """Once settled on English, tiny.en decodes it and is sure of ordinary English: no final gets a language-ID
    pass, and no decode runs besides the finals (and guesses withdrawn when speech resumed). A Portuguese sentence
    costs one pass, and an English one between two of them (tiny.en sure of it) keeps the leg English."""
    pipeline = Pipeline(english_engines, PipelineConfig(language=None, target_language="en", partials=False))
    more = [f"asr/speechbrain-en/{name}.wav" for name in ("spk1_snt2", "spk1_snt5", "spk2_snt1", "spk2_snt4")]
    listener = Listener(pipeline)
    for f in ENGLISH:
        await say(pipeline, pcm(data / f))
    await listener.wait_for_finals(3)
    assert pipeline._vote.rechecking
    counts = english_engines.asr.scheduler.counts
    before, withdrawn = counts["final"], pipeline.guesses["withdrawn"]
    for f in more:
        await say(pipeline, pcm(data / f))
    await listener.wait_for_finals(7)
    assert not pipeline.rechecks  # no pass paid, and no detection came with any final
    assert counts["final"] - before <= len(more) + pipeline.guesses["withdrawn"] - withdrawn
    portuguese = "asr/multilingual/test_pt.wav"
    for f in (portuguese, ENGLISH[0], portuguese):
        await say(pipeline, pcm(data / f))
    await pipeline.close()
    await listener.task
    assert [f.language for f in listener.finals] == ["en"] * 10
    assert [e.language for e in listener.events if isinstance(e, LanguageChanged)] == ["en", "en"]  # the vote's
    assert 2 <= pipeline.rechecks["passes"] <= 2 + pipeline.guesses["withdrawn"]
    assert (pipeline.rechecks["checked"], pipeline.rechecks["switched"]) == (2, 0)
