"""The customers' texts: every shipped language complete, the operator's files over them, the page's language
chosen as the README says."""

from __future__ import annotations

import json
import re

import pytest

from calls.texts import Catalogue, TextsError
from signaling.middleware import WEB_DIR

SHIPPED = WEB_DIR / "i18n"


def placeholders(text: str) -> set[str]:
    return set(re.findall(r"\{(\w+)\}", text))


def test_every_shipped_language_has_every_text_with_its_placeholders():
    english = json.loads((SHIPPED / "en.json").read_text())
    languages = sorted(p.stem for p in SHIPPED.glob("*.json"))
    assert {"en", "pt", "es", "fr", "de"} <= set(languages)
    for language in languages:
        texts = json.loads((SHIPPED / f"{language}.json").read_text(encoding="utf-8"))
        assert texts.keys() == english.keys(), language
        for key, text in texts.items():
            assert placeholders(text) == placeholders(english[key]), (language, key)
            assert text.strip(), (language, key)
        if language != "en":  # translated, not copied
            assert (
                texts["page.consent"] != english["page.consent"] and texts["voice.consent"] != english["voice.consent"]
            )


def test_the_page_language_is_the_links_else_the_browsers_else_english():
    texts = Catalogue(SHIPPED)
    assert texts.choose("pt", "de-DE,de;q=0.9") == "pt"
    assert texts.choose("detect", "es-MX,fr;q=0.9,en;q=0.8") == "es"
    assert texts.choose("detect", "ko-KR,fr;q=0.5,de;q=0.9") == "de"  # by weight, not by order
    assert texts.choose("ko", None) == "en" and texts.choose("detect", "x-klingon, ;q=nope") == "en"


def test_rendering_fills_placeholders_picks_plurals_and_falls_back_to_english(tmp_path):
    (tmp_path / "pt.json").write_text(json.dumps({"page.start": "Ligar a câmara"}), encoding="utf-8")
    (tmp_path / "it.json").write_text(json.dumps({"page.start": "Avvia il video"}), encoding="utf-8")
    texts = Catalogue(SHIPPED, tmp_path)
    assert texts.render("pt", "page.start") == "Ligar a câmara"  # the operator's
    assert texts.render("pt", "page.hangup") == json.loads((SHIPPED / "pt.json").read_text())["page.hangup"]
    assert "it" in texts.languages and texts.render("it", "page.hangup") == "End call"  # English fills the gaps
    assert texts.render("en", "idv.wrong_left", count=1) == "That is not right. 1 attempt left."
    assert texts.render("en", "idv.wrong_left", count=2) == "That is not right. 2 attempts left."
    assert texts.render("en", "page.title") == "Video call with {company}"  # a missing value shows, never fails
    assert texts.texts("it")["page.start"] == "Avvia il video" and "voice.consent" in texts.texts("it")


@pytest.mark.parametrize(
    ("content", "error"), [("{not json", "pt.json"), ('["a list"]', "one JSON object"), ('{"k": 1}', "one JSON")]
)
def test_an_operators_broken_file_is_named(tmp_path, content, error):
    (tmp_path / "pt.json").write_text(content)
    with pytest.raises(TextsError, match=error):
        Catalogue(SHIPPED, tmp_path)
    with pytest.raises(TextsError, match="no such directory"):
        Catalogue(SHIPPED, tmp_path / "missing")


def test_the_agents_display_name_is_set_up_with_the_cli(tmp_path, capsys):
    from cli.main import main as cli
    from store.sqlite import SqliteStore

    where = ["--data-dir", str(tmp_path)]
    assert cli(["agent", "add", "m.silva", "--display-name", "Maria", *where]) == 0
    assert cli(["agent", "add", "bob", "--display-name", "x" * 41, *where]) == 2
    assert "display-name" in capsys.readouterr().err
    store = SqliteStore(tmp_path / "voxgate.db")
    assert store.agents.by_name("m.silva").display_name == "Maria"
    assert cli(["agent", "display-name", "m.silva", "--display-name", "Maria S.", *where]) == 0
    assert store.agents.by_name("m.silva").display_name == "Maria S."
    assert cli(["agent", "display-name", "m.silva", *where]) == 0  # cleared: customers see "an agent"
    assert store.agents.by_name("m.silva").display_name is None
    store.close()
