"""The spoken language of a 'detect' leg: detection with its confidence, a vote over the first finals, and the
agent's correction mid-call, on real speech with the real Whisper model (and the vote rule on its own)."""

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
