"""The visual IVR: an operator's menu, navigated on the customer's phone from a one-time link, in their language.

Three layers, so that each can be tested alone:

* **The menu file** (YAML or JSON; ``load_menus``): screens of options and of data-entry fields with their
  validation, and actions (``show`` data from the directory or the CRM, ``idv``, ``callback``, ``agent``,
  ``video``). Everything is checked at load, every problem named with its file, screen and field: a server never
  starts on a menu that would fail a customer half-way.
* **``MenuSession``**, the navigation as a pure state machine: the current screen, the values entered, the
  history for the back button, and the step each input makes. Actions that need I/O come back to the caller
  (``Outcome.run``), whose answers are inputs again (``shown``, ``handed``, ``idv_finished``).
* **``MenuService``**, over ``calls.CallService``: menu links (``POST /api/links {"kind": "menu"}``), the
  customer's session behind a key (the link is used up on one device, as a video link is), and the effects:
  each step in the store (``store.steps``), as a customer event (``menu.choice``) and live on the console of
  the link's agent; ID&V through ``identity.idv.LiveIdv`` without media; the hand-off to a free agent of a skill
  queue on a video link that remembers the menu it came from (``detail.from``).

Secrets never leave the session: a PIN or code goes to ID&V only, and a field marked ``secret`` is recorded as
entered, never with its value.
"""

from __future__ import annotations

import asyncio
import difflib
import hmac
import json
import logging
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import partial
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

from calls.service import CallService
from identity.directory import DirectoryError, HttpClient
from identity.idv import LiveIdv, Status
from identity.idv import Step as IdvStep
from journeys.settings import MenuSettings
from store.base import Agent, Link
from store.errors import Conflict, Forbidden, Gone, Invalid, NotFound, Refused
from store.security import new_token, token_hash

log = logging.getLogger(__name__)

DEFAULT_LANGUAGE = "en"
EXAMPLES = Path(str(files("journeys"))) / "menus"
SUFFIXES = (".yaml", ".yml", ".json")
FIELD_TYPES = ("digits", "text", "date", "amount", "choice")
ACTIONS = ("show", "idv", "callback", "agent", "video")
SOURCES = ("directory", "rest")
BUILT_IN = ("customer_id", "phone")  # values a "show" URL may use besides the entered ones
DIRECTORY_FIELDS = ("customer_id", "name", "phones")
MAX_TEXT = 200  # characters a text field takes, unless the menu says fewer
_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_LANG = re.compile(r"[a-z]{2,3}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_AMOUNT = re.compile(r"\d{1,9}(?:[.,]\d{1,2})?")

Texts = dict[str, str]  # language -> text; always has DEFAULT_LANGUAGE


def text_in(texts: Texts | None, language: str) -> str:
    """A menu text in ``language``, else in English (a menu may translate only some of its texts)."""
    if not texts:
        return ""
    return texts.get(language) or texts[DEFAULT_LANGUAGE]


# -- the menu, as loaded -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    value: str
    label: Texts


@dataclass(frozen=True)
class Field:
    """One data-entry field and its validation. ``min``/``max``: a length for digits and text, a value for an
    amount, a date (or ``today``) for a date."""

    name: str
    type: str
    label: Texts
    required: bool = True
    min_length: int | None = None
    max_length: int | None = None
    pattern: re.Pattern | None = None
    min: Any = None
    max: Any = None
    choices: tuple[Choice, ...] = ()
    secret: bool = False  # recorded as entered, never with its value
    hint: Texts | None = None
    error: Texts | None = None  # the operator's own words when the pattern does not match


@dataclass(frozen=True)
class Action:
    """What an option (or a screen's fields, once entered) does besides moving to a screen."""

    type: str  # one of ACTIONS
    next: str | None = None  # the screen to go on to afterwards (show, idv)
    source: str | None = None  # show: directory | rest
    url: str | None = None  # show, rest: a URL template of entered values, {customer_id} and {phone}
    show: tuple[tuple[str, Texts], ...] = ()  # show: the answer's fields to show, with their labels
    verified: bool = True  # show: only to a customer ID&V verified
    queue: str | None = None  # agent, video, callback: the skill queue (None: the routing's default)
    subject: Texts | None = None  # callback: what it is about


@dataclass(frozen=True)
class Option:
    id: str
    label: Texts
    next: str | None = None
    action: Action | None = None


@dataclass(frozen=True)
class Screen:
    id: str
    title: Texts
    text: Texts | None = None
    options: tuple[Option, ...] = ()
    fields: tuple[Field, ...] = ()
    submit: Texts | None = None  # the fields' button
    then: Option | None = None  # where the fields lead, once valid (next and/or action)


@dataclass(frozen=True)
class Menu:
    id: str
    title: Texts
    start: str
    screens: dict[str, Screen]
    source: str  # the file it came from

    @property
    def languages(self) -> list[str]:
        return sorted({lang for s in self.screens.values() for lang in s.title} | set(self.title))

    def language_for(self, wanted: str | None, accept_language: str | None = None) -> str:
        """The link's language if the menu speaks it, else the browser's first that it does, else English."""
        langs = self.languages
        if wanted in langs:
            return wanted  # type: ignore[return-value]
        for part in (accept_language or "").split(","):
            code = part.split(";")[0].split("-")[0].strip().lower()
            if code in langs:
                return code
        return DEFAULT_LANGUAGE

    def actions(self) -> list[Action]:
        found = []
        for s in self.screens.values():
            for o in (*s.options, *((s.then,) if s.then else ())):
                if o.action is not None:
                    found.append(o.action)
        return found


class MenuError(ValueError):
    """A menu file that cannot be served; one line per problem, each naming the file, screen and field."""


# -- loading and checking ------------------------------------------------------------------------------------------


def load_menus(paths: tuple[Path, ...] | list[Path] = ()) -> dict[str, Menu]:
    """Every menu in these folders or files (none given: the shipped example), by id. Raises ``MenuError``."""
    files_ = []
    for path in paths or (EXAMPLES,):
        path = Path(path)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES)
            if not found:
                raise MenuError(f"{path}: no menu files (*.yaml, *.yml, *.json) in this folder")
            files_ += found
        elif path.is_file():
            files_.append(path)
        else:
            raise MenuError(f"{path}: no such file or folder of menus")
    menus: dict[str, Menu] = {}
    for path in files_:
        menu = load_menu(path)
        if menu.id in menus:
            raise MenuError(f"{path}: menu id {menu.id!r} is also the id of {menus[menu.id].source}")
        menus[menu.id] = menu
    return menus


def load_menu(path: Path) -> Menu:
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise MenuError(f"{path}: cannot read it ({e})") from None
    return parse_menu(_decode(raw, path), str(path))


def _decode(raw: str, path: Path) -> object:
    if path.suffix == ".json":
        try:
            return json.loads(raw)
        except json.JSONDecodeError as e:
            raise MenuError(f"{path}: not valid JSON: {e}") from None
    import yaml

    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise MenuError(f"{path}: not valid YAML: {e}") from None


def parse_menu(data: object, source: str = "<menu>") -> Menu:
    """A menu from its decoded file, checked whole: every problem found is in the one ``MenuError``."""
    p = _Problems(source)
    if not isinstance(data, dict):
        raise MenuError(f"{source}: a menu is a mapping with id, title, start and screens")
    p.keys(data, ("id", "title", "start", "screens"), "")
    menu_id = data.get("id")
    if not isinstance(menu_id, str) or not _ID.fullmatch(menu_id):
        p.add("", "id: letters, digits, '-' and '_', at most 40 (it names the menu in POST /api/links)")
        menu_id = "?"
    title = p.texts(data.get("title"), "", "title")
    screens_raw = data.get("screens")
    screens: dict[str, Screen] = {}
    if not isinstance(screens_raw, dict) or not screens_raw:
        p.add("", "screens: a mapping of screen ids to screens, at least one")
    else:
        names: dict[str, str] = {}
        for sid, raw in screens_raw.items():
            screen = _screen(p, str(sid), raw, names)
            if screen is not None:
                screens[screen.id] = screen
    start = data.get("start", next(iter(screens), None))
    if start not in screens and screens:
        p.add("", f"start: no screen {start!r}" + _near(start, screens))
    for screen in screens.values():
        _check_links(p, screen, screens, set(_field_names(screens)))
    p.raise_if_any()
    return Menu(menu_id, title or {DEFAULT_LANGUAGE: menu_id}, str(start), screens, source)


def _field_names(screens: Mapping[str, Screen]) -> list[str]:
    return [f.name for s in screens.values() for f in s.fields]


class _Problems:
    def __init__(self, source: str) -> None:
        self.source, self.lines = source, []

    def add(self, where: str, problem: str) -> None:
        self.lines.append(f"{self.source}: {where + ': ' if where else ''}{problem}")

    def raise_if_any(self) -> None:
        if self.lines:
            raise MenuError("\n".join(self.lines))

    def keys(self, data: dict, allowed: tuple[str, ...], where: str) -> None:
        for key in data:
            if key not in allowed:
                self.add(where, f"unknown key {key!r}" + _near(key, allowed) + f" (known: {', '.join(allowed)})")

    def texts(self, value: object, where: str, name: str, required: bool = True) -> Texts | None:
        """A text: one string (English), or one per language, English among them."""
        if value is None:
            if required:
                self.add(where, f"{name}: missing")
            return None
        if isinstance(value, str) and value.strip():
            return {DEFAULT_LANGUAGE: value}
        if isinstance(value, dict) and value:
            bad = [k for k, v in value.items() if not (isinstance(k, str) and _LANG.fullmatch(k))]
            bad += [k for k, v in value.items() if not isinstance(v, str)]
            if bad:
                self.add(where, f"{name}: {bad[0]!r} is not a language code (such as en, pt) with a text")
                return None
            if DEFAULT_LANGUAGE not in value or not value[DEFAULT_LANGUAGE].strip():
                self.add(where, f"{name}: needs an English text (en), shown where a language has none")
                return None
            return dict(value)
        self.add(where, f"{name}: a text, or a mapping of language codes to texts")
        return None


def _near(word: object, known) -> str:
    near = difflib.get_close_matches(str(word), [str(k) for k in known], n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def _screen(p: _Problems, sid: str, raw: object, names: dict[str, str]) -> Screen | None:
    where = f"screen {sid!r}"
    if not _ID.fullmatch(sid):
        p.add(where, "a screen id has letters, digits, '-' and '_' only, at most 40")
    if not isinstance(raw, dict):
        p.add(where, "a screen is a mapping with title, and options or fields")
        return None
    p.keys(raw, ("title", "text", "options", "fields", "submit", "next", "action"), where)
    title = p.texts(raw.get("title"), where, "title")
    text = p.texts(raw.get("text"), where, "text", required=False)
    options = tuple(_options(p, raw.get("options"), where))
    fields = tuple(_fields(p, raw.get("fields"), where, names))
    then = None
    if "next" in raw or "action" in raw:
        then = _target(p, raw, where, "")
    if options and fields:
        p.add(where, "has both options and fields: a screen asks one or the other")
    if fields and then is None:
        p.add(where, "has fields but no next or action: where do they go once entered?")
    if options and then is not None:
        p.add(where, "next and action belong to each option, not to a screen of options")
    if not options and not fields and then is not None:
        p.add(where, "next or action with no fields: put it on an option")
    submit = p.texts(raw.get("submit"), where, "submit", required=False)
    return Screen(sid, title or {DEFAULT_LANGUAGE: sid}, text, options, fields, submit, then)


def _options(p: _Problems, raw: object, where: str) -> list[Option]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not raw:
        p.add(where, "options: a list of options, at least one")
        return []
    out, seen = [], set()
    for i, item in enumerate(raw):
        at = f"{where}: option {i + 1}"
        if not isinstance(item, dict):
            p.add(at, "an option is a mapping with label, and next or action")
            continue
        oid = str(item.get("id", i + 1))
        at = _option_at(where, oid)
        if not _ID.fullmatch(oid) or oid in seen:
            p.add(at, "id: letters, digits, '-' and '_', unique on its screen")
        seen.add(oid)
        p.keys(item, ("id", "label", "next", "action"), at)
        label = p.texts(item.get("label"), at, "label")
        target = _target(p, item, at, oid)
        if target is None:
            p.add(at, "needs next (a screen) or action")
            continue
        out.append(Option(oid, label or {DEFAULT_LANGUAGE: oid}, target.next, target.action))
    return out


def _option_at(where: str, oid: str) -> str:
    """An option as problems name it: by its id, or by its place when it has none."""
    return f"{where}: option {oid}" if oid.isdigit() else f"{where}: option {oid!r}"


def _target(p: _Problems, raw: dict, where: str, oid: str) -> Option | None:
    nxt, action = raw.get("next"), raw.get("action")
    if nxt is None and action is None:
        return None
    if nxt is not None and action is not None:
        p.add(where, "next and action: one or the other (an action's own next says where it goes after)")
    if nxt is not None and not isinstance(nxt, str):
        p.add(where, "next: a screen id")
        nxt = None
    return Option(oid, {}, nxt, _action(p, action, where) if action is not None else None)


def _action(p: _Problems, raw: object, where: str) -> Action | None:
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, dict) or raw.get("type") not in ACTIONS:
        kind = raw.get("type") if isinstance(raw, dict) else raw
        p.add(where, f"action: type must be one of {', '.join(ACTIONS)}, not {kind!r}" + _near(kind, ACTIONS))
        return None
    kind = raw["type"]
    at = f"{where}: action {kind!r}"
    allowed = {
        "show": ("type", "source", "url", "fields", "verified", "next"),
        "idv": ("type", "next"),
        "callback": ("type", "queue", "subject"),
        "agent": ("type", "queue"),
        "video": ("type", "queue"),
    }[kind]
    p.keys(raw, allowed, at)
    nxt = raw.get("next")
    if nxt is not None and not isinstance(nxt, str):
        p.add(at, "next: a screen id")
        nxt = None
    queue = raw.get("queue")
    if queue is not None and not (isinstance(queue, str) and _ID.fullmatch(queue)):
        p.add(at, "queue: the name of a skill queue")
        queue = None
    subject = p.texts(raw.get("subject"), at, "subject", required=False)
    if kind != "show":
        return Action(kind, next=nxt, queue=queue, subject=subject)
    source = raw.get("source", "directory")
    if source not in SOURCES:
        p.add(at, f"source: {' or '.join(SOURCES)}, not {source!r}")
    url = raw.get("url")
    if source == "rest" and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
        p.add(at, "url: the CRM's http(s) URL, with {placeholders} of entered values, {customer_id} or {phone}")
        url = None
    elif source != "rest" and url is not None:
        p.add(at, "url: only for source: rest")
    shown = raw.get("fields")
    rows: list[tuple[str, Texts]] = []
    if not isinstance(shown, dict) or not shown:
        p.add(at, "fields: a mapping of the answer's fields to show, to their labels")
    else:
        for key, label in shown.items():
            if source == "directory" and key not in DIRECTORY_FIELDS:
                p.add(at, f"fields: the directory has {', '.join(DIRECTORY_FIELDS)}, not {key!r}")
            text = p.texts(label, at, f"fields: {key}")
            if text:
                rows.append((str(key), text))
    verified = raw.get("verified", True)
    if not isinstance(verified, bool):
        p.add(at, "verified: true or false")
        verified = True
    return Action("show", nxt, source, url, tuple(rows), verified)


def _fields(p: _Problems, raw: object, where: str, names: dict[str, str]) -> list[Field]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not raw:
        p.add(where, "fields: a list of fields, at least one")
        return []
    out = []
    for i, item in enumerate(raw):
        name = item.get("name") if isinstance(item, dict) else None
        at = f"{where}: field {name!r}" if isinstance(name, str) else f"{where}: field {i + 1}"
        if not isinstance(item, dict):
            p.add(at, "a field is a mapping with name, label and type")
            continue
        if not (isinstance(name, str) and _NAME.fullmatch(name)) or name in BUILT_IN:
            p.add(at, "name: lower-case letters, digits and '_' (not customer_id or phone), at most 40")
            continue
        if name in names:
            p.add(at, f"name: also a field of {names[name]} (a menu's field names are unique)")
        names[name] = where
        field_ = _field(p, item, at, name)
        if field_ is not None:
            out.append(field_)
    return out


def _field(p: _Problems, raw: dict, at: str, name: str) -> Field | None:
    allowed = ("name", "label", "type", "required", "min_length", "max_length", "pattern", "min", "max")
    p.keys(raw, (*allowed, "choices", "secret", "hint", "error"), at)
    kind = raw.get("type")
    if kind not in FIELD_TYPES:
        p.add(at, f"type: one of {', '.join(FIELD_TYPES)}, not {kind!r}" + _near(kind, FIELD_TYPES))
        return None
    label = p.texts(raw.get("label"), at, "label")
    flags = {k: raw.get(k, d) for k, d in (("required", True), ("secret", False))}
    for k, v in flags.items():
        if not isinstance(v, bool):
            p.add(at, f"{k}: true or false")
    lengths = {k: raw.get(k) for k in ("min_length", "max_length")}
    for k, v in lengths.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_TEXT):
            p.add(at, f"{k}: a whole number from 0 to {MAX_TEXT}")
            lengths[k] = None
    if lengths["min_length"] is not None and lengths["max_length"] is not None:
        if lengths["min_length"] > lengths["max_length"]:
            p.add(at, "min_length is more than max_length")
    if any(v is not None for v in lengths.values()) and kind not in ("digits", "text"):
        p.add(at, "min_length and max_length are for digits and text fields")
    pattern = None
    if (source := raw.get("pattern")) is not None:
        if kind not in ("digits", "text"):
            p.add(at, "pattern: for digits and text fields")
        try:
            pattern = re.compile(str(source))
        except re.error as e:
            p.add(at, f"pattern: not a regular expression ({e})")
    low, high = _bounds(p, kind, raw.get("min"), raw.get("max"), at)
    choices = _choices(p, raw.get("choices"), kind, at)
    return Field(
        name,
        kind,
        label or {DEFAULT_LANGUAGE: name},
        flags["required"] is not False,
        lengths["min_length"],
        lengths["max_length"],
        pattern,
        low,
        high,
        choices,
        flags["secret"] is True,
        p.texts(raw.get("hint"), at, "hint", required=False),
        p.texts(raw.get("error"), at, "error", required=False),
    )


def _bounds(p: _Problems, kind: str, low: object, high: object, at: str) -> tuple[Any, Any]:
    if low is None and high is None:
        return None, None
    if kind == "amount":
        out = []
        for name, v in (("min", low), ("max", high)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                p.add(at, f"{name}: a number")
                v = None
            out.append(Decimal(str(v)) if v is not None else None)
        return out[0], out[1]
    if kind == "date":
        out = []
        for name, v in (("min", low), ("max", high)):
            if isinstance(v, date):
                v = v.isoformat()  # YAML reads 2024-01-31 as a date
            if v is not None and v != "today" and not (isinstance(v, str) and _iso_date(v)):
                p.add(at, f"{name}: a date (YYYY-MM-DD) or today")
                v = None
            out.append(v)
        return out[0], out[1]
    p.add(at, "min and max: for amount and date fields (digits and text have min_length and max_length)")
    return None, None


def _choices(p: _Problems, raw: object, kind: str, at: str) -> tuple[Choice, ...]:
    if kind != "choice":
        if raw is not None:
            p.add(at, "choices: only for a choice field")
        return ()
    if not isinstance(raw, list) or not raw:
        p.add(at, "choices: a list of {value, label}, at least one")
        return ()
    out = []
    for i, item in enumerate(raw):
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(value, str | int) or isinstance(value, bool):
            p.add(at, f"choices: item {i + 1} needs a value (text) and a label")
            continue
        p.keys(item, ("value", "label"), f"{at}: choice {item['value']!r}")
        label = p.texts(item.get("label"), f"{at}: choice {item['value']!r}", "label")
        out.append(Choice(str(item["value"]), label or {DEFAULT_LANGUAGE: str(item["value"])}))
    return tuple(out)


def _check_links(p: _Problems, screen: Screen, screens: Mapping[str, Screen], names: set[str]) -> None:
    """Every next names a screen; every URL placeholder names a value the menu can have."""
    where = f"screen {screen.id!r}"
    for option in (*screen.options, *((screen.then,) if screen.then else ())):
        at = _option_at(where, option.id) if option.id else where
        for nxt in (option.next, option.action.next if option.action else None):
            if nxt is not None and nxt not in screens:
                p.add(at, f"next: no screen {nxt!r}" + _near(nxt, screens))
        action = option.action
        if action is not None and action.url:
            try:
                used = [name for _, name, _, _ in string.Formatter().parse(action.url) if name is not None]
            except ValueError as e:
                p.add(at, f"url: {e}")
                continue
            for name in used:
                if name not in names and name not in BUILT_IN:
                    p.add(at, f"url: {{{name}}} is no field of this menu" + _near(name, [*names, *BUILT_IN]))


def _iso_date(text: str) -> date | None:
    if not _DATE.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


# -- validating what the customer enters -------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """Why a value was refused: a text key of the page's catalogue (``menu.*``) and its parameters, or the
    operator's own words (``words``, for a pattern)."""

    key: str
    params: dict = field(default_factory=dict)
    words: Texts | None = None


def check_value(f: Field, raw: object, today: date) -> tuple[str | None, Problem | None]:
    """The value as kept (digits, trimmed text, ISO date, amount with two decimals, a choice's value), or why not."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None, (Problem("menu.required") if f.required else None)
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        return None, Problem("menu.invalid")
    text = str(raw).strip()
    if f.type == "digits":
        text = re.sub(r"[\s-]", "", text)  # 1234 5678 and 1234-5678 are what people type
        if not text.isascii() or not text.isdigit():
            return None, Problem("menu.digits")
    if f.type in ("digits", "text"):
        if not text.isprintable():
            return None, Problem("menu.invalid")
        if f.min_length is not None and len(text) < f.min_length:
            return None, Problem("menu.too_short", {"min": f.min_length})
        if len(text) > (f.max_length if f.max_length is not None else MAX_TEXT):
            return None, Problem("menu.too_long", {"max": f.max_length or MAX_TEXT})
        if f.pattern is not None and not f.pattern.fullmatch(text):
            return None, Problem("menu.pattern", words=f.error)
        return text, None
    if f.type == "date":
        return _check_date(f, text, today)
    if f.type == "amount":
        return _check_amount(f, text)
    value = next((c.value for c in f.choices if c.value == text), None)
    return (value, None) if value is not None else (None, Problem("menu.choice"))


def _check_date(f: Field, text: str, today: date) -> tuple[str | None, Problem | None]:
    day = _iso_date(text)
    if day is None:
        return None, Problem("menu.date")
    low = today if f.min == "today" else _iso_date(f.min) if f.min else None
    high = today if f.max == "today" else _iso_date(f.max) if f.max else None
    if low is not None and day < low:
        return None, Problem("menu.date_min", {"min": low.isoformat()})
    if high is not None and day > high:
        return None, Problem("menu.date_max", {"max": high.isoformat()})
    return day.isoformat(), None


def _check_amount(f: Field, text: str) -> tuple[str | None, Problem | None]:
    if not _AMOUNT.fullmatch(text):
        return None, Problem("menu.amount")
    try:
        value = Decimal(text.replace(",", "."))
    except InvalidOperation:
        return None, Problem("menu.amount")
    if f.min is not None and value < f.min:
        return None, Problem("menu.amount_min", {"min": f"{f.min:.2f}"})
    if f.max is not None and value > f.max:
        return None, Problem("menu.amount_max", {"max": f"{f.max:.2f}"})
    return f"{value:.2f}", None


class FieldErrors(Invalid):
    """Entered values refused, by field: the page shows each beside its field."""

    def __init__(self, problems: dict[str, Problem]) -> None:
        names = ", ".join(problems)
        super().__init__(f"check {names}", "menu.check")
        self.problems = problems
        self.messages: dict[str, str] = {}  # by field, in the page's language (the service renders them)


# -- the navigation: a pure state machine --------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one input did: the step to record (kind, detail) and the action to run, if any."""

    step: tuple[str, dict] | None = None
    run: Action | None = None


class MenuSession:
    """One customer's way through a menu. ``mode``: ``screen`` (choosing or entering), ``idv`` (identifying and
    verifying), ``result`` (an action's answer on screen), ``done`` (handed on: to an agent or a callback)."""

    def __init__(self, menu: Menu, today: Callable[[], date] = date.today) -> None:
        self.menu, self._today = menu, today
        self.screen_id = menu.start
        self.history: list[str] = []
        self.values: dict[str, str] = {}
        self.secret: set[str] = set()  # fields whose values are never recorded nor shown
        self.mode = "screen"
        self.result: dict | None = None  # the last action's answer: {"kind": ..., ...}
        self.after: str | None = None  # where "continue" goes from a result
        self.pending: Action | None = None  # an action waiting for ID&V to verify the customer
        self.idv_status: str | None = None  # ID&V's status once it finished
        self.customer_id: str | None = None  # who ID&V identified

    @property
    def screen(self) -> Screen:
        return self.menu.screens[self.screen_id]

    @property
    def verified(self) -> bool:
        return self.idv_status == Status.VERIFIED.value

    def choose(self, option_id: object) -> Outcome:
        self._need("screen")
        option = next((o for o in self.screen.options if o.id == str(option_id)), None)
        if option is None:
            raise Invalid(f"no option {option_id!r} on this screen")
        step = ("choice", {"screen": self.screen_id, "option": option.id, "label": text_in(option.label, "en")})
        return self._go(option, step)

    def enter(self, raw: object) -> Outcome:
        """The screen's fields, all at once; every refused one is in the ``FieldErrors``."""
        self._need("screen")
        fields = self.screen.fields
        if not fields:
            raise Conflict("this screen has no fields to enter")
        if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
            raise Invalid("values: an object of field names to values")
        if unknown := set(raw) - {f.name for f in fields}:
            raise Invalid(f"no such fields on this screen: {', '.join(sorted(unknown))}")
        values, problems = {}, {}
        for f in fields:
            value, problem = check_value(f, raw.get(f.name), self._today())
            if problem is not None:
                problems[f.name] = problem
            elif value is not None:
                values[f.name] = value
        if problems:
            raise FieldErrors(problems)
        self.values.update(values)
        self.secret |= {f.name for f in fields if f.secret}
        shown = {f.name: ("(entered)" if f.secret else values[f.name]) for f in fields if f.name in values}
        assert self.screen.then is not None
        return self._go(self.screen.then, ("entry", {"screen": self.screen_id, "values": shown}))

    def back(self) -> Outcome:
        if self.mode == "done":
            raise Gone("this menu has ended", "menu.ended")
        if self.mode in ("idv", "result"):
            self.mode, self.result, self.pending = "screen", None, None
        elif self.history:
            self.screen_id = self.history.pop()
        else:
            raise Conflict("this is the first screen")
        return Outcome(("choice", {"screen": self.screen_id, "back": True}))

    def proceed(self) -> Outcome:
        """Continue from an action's result: to the action's next screen, or back to where it was chosen."""
        self._need("result")
        self.mode, self.result = "screen", None
        if self.after and self.after != self.screen_id:
            self.history.append(self.screen_id)
            self.screen_id = self.after
        self.after = None
        return Outcome(("choice", {"screen": self.screen_id, "continue": True}))

    def idv_finished(self, status: str, customer_id: str | None) -> Outcome:
        """ID&V settled (verified, identified only, or not): run the action that waited for it, or say so."""
        self._need("idv")
        self.idv_status, self.customer_id = status, customer_id
        step = ("action", {"action": "idv", "status": status, "customer_id": customer_id})
        pending, self.pending = self.pending, None
        if pending is not None and self.verified:
            return Outcome(step, pending)
        key = "menu.verified" if self.verified else "menu.not_verified"
        self.mode, self.result = "result", {"kind": "message", "key": key}
        return Outcome(step)

    def idv_off(self) -> None:
        """No identity check on this server: the action cannot be done."""
        self._need("idv")
        self.pending, self.mode = None, "result"
        self.result = {"kind": "message", "key": "menu.unavailable"}

    def shown(self, rows: list[dict] | None, problem: str | None = None) -> None:
        """A show action's answer: the rows ({label, value}), or the text key of why there is none."""
        self.mode = "result"
        self.result = {"kind": "rows", "rows": rows} if rows else {"kind": "message", "key": problem or "menu.none"}

    def handed(self, kind: str, url: str | None, problem: str | None = None) -> None:
        """An agent, video or callback action's answer: the page to go to (the menu is over), or why not."""
        if url is not None:
            self.mode, self.result = "done", {"kind": "redirect", "url": url, "action": kind}
        else:
            self.mode, self.result = "result", {"kind": "message", "key": problem or "menu.unavailable"}
            if problem == "menu.nobody":
                self.result["offer"] = "callback"

    def take_offer(self) -> Outcome:
        """Nobody was free: the customer takes the callback offered instead."""
        self._need("result")
        if (self.result or {}).get("offer") != "callback":
            raise Conflict("no callback is offered now")
        return Outcome(("choice", {"screen": self.screen_id, "option": "callback offered"}), Action("callback"))

    def _go(self, option: Option, step: tuple[str, dict]) -> Outcome:
        if option.next is not None:
            self.history.append(self.screen_id)
            self.screen_id = option.next
            return Outcome(step)
        action = option.action
        assert action is not None
        self.after = action.next
        if action.type == "idv" or (action.type == "show" and action.verified and not self.verified):
            self.pending = None if action.type == "idv" else action
            if self.idv_status is not None:  # settled already: a second check changes nothing
                self.mode = "idv"
                return Outcome(step, self.idv_finished(self.idv_status, self.customer_id).run)
            self.mode = "idv"
            return Outcome(step, Action("idv", action.next))
        return Outcome(step, action)

    def _need(self, mode: str) -> None:
        if self.mode == "done":
            raise Gone("this menu has ended", "menu.ended")
        if self.mode != mode:
            raise Conflict(f"not possible now (the menu is at its {self.mode} step)")

    def view(self, language: str, render: Callable[..., str]) -> dict:
        """What the page shows now, in ``language``; ``render(key, **params)`` gives the page's own texts."""
        s = self.screen
        view: dict[str, Any] = {
            "mode": self.mode,
            "can_back": self.mode in ("idv", "result") or (self.mode == "screen" and bool(self.history)),
            "screen": {
                "id": s.id,
                "title": text_in(s.title, language),
                "text": text_in(s.text, language),
                "options": [{"id": o.id, "label": text_in(o.label, language)} for o in s.options],
                "fields": [_field_view(f, language, self.values, self.secret) for f in s.fields],
                "submit": text_in(s.submit, language) or render("menu.continue"),
            },
            "result": None,
            "idv_status": self.idv_status,
        }
        if self.result is not None:
            r = dict(self.result)
            if r["kind"] == "message":
                r["message"] = render(r.pop("key"))
            view["result"] = r
            view["can_continue"] = self.mode == "result"
        return view


def _field_view(f: Field, language: str, values: dict, secret: set) -> dict:
    view = {
        "name": f.name,
        "type": f.type,
        "label": text_in(f.label, language),
        "hint": text_in(f.hint, language),
        "required": f.required,
        "value": "" if f.name in secret else values.get(f.name, ""),
        "secret": f.secret,
    }
    if f.min_length is not None:
        view["min_length"] = f.min_length
    if f.type in ("digits", "text"):
        view["max_length"] = f.max_length if f.max_length is not None else MAX_TEXT
    if f.choices:
        view["choices"] = [{"value": c.value, "label": text_in(c.label, language)} for c in f.choices]
    return view


# -- the service: links, sessions, effects ---------------------------------------------------------------------------


@dataclass
class _Live:
    """A started menu: its session behind the page's key, its language, its ID&V."""

    link: Link
    session: MenuSession
    key_hash: str
    language: str
    started: float
    idv: LiveIdv | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one step at a time: the order is the record


LINK_FIELDS = {"kind", "menu", "customer_ref", "phone", "language", "reason", "expires_in"}
STEPS = ("choose", "enter", "back", "continue", "callback", "identify", "verify", "skip")


class MenuService:
    def __init__(self, settings: MenuSettings, calls: CallService, http: HttpClient | None = None) -> None:
        self.settings, self.calls, self.http = settings, calls, http or HttpClient()
        self.store, self.hub, self.texts = calls.store, calls.hub, calls.services.texts
        self.menus = load_menus(settings.dirs)
        self._check_queues()
        self.live: dict[str, _Live] = {}

    def _check_queues(self) -> None:
        """A menu's queue must be one the routing has: a typo would strand every customer who asks for it."""
        queues = self.calls.settings.routing.queues
        for menu in self.menus.values():
            for action in menu.actions():
                if action.queue is not None and action.queue not in queues:
                    raise MenuError(
                        f"{menu.source}: action {action.type!r}: no queue {action.queue!r} in the routing "
                        f"(queues: {', '.join(sorted(queues))})"
                    )

    # -- links ---------------------------------------------------------------------------------------------------

    async def create(self, agent: Agent, body: dict) -> tuple[Link, str, str]:
        """``POST /api/links {"kind": "menu", "menu": ID, ...}``, by an agent or the IVR's account."""
        if unknown := set(body) - LINK_FIELDS:
            raise Invalid(f"unknown fields: {', '.join(sorted(unknown))}")
        menu_id = body.get("menu", "example" if "example" in self.menus else next(iter(self.menus)))
        if not isinstance(menu_id, str) or menu_id not in self.menus:
            raise Invalid(f"menu: one of {', '.join(sorted(self.menus))}")
        expires_in = body.get("expires_in")
        if expires_in is not None and (isinstance(expires_in, bool) or not isinstance(expires_in, int | float)):
            raise Invalid("expires_in must be a number of seconds")
        return await self.calls.create_link(
            agent,
            customer_ref=body.get("customer_ref"),
            phone=body.get("phone"),
            language=body.get("language"),
            reason=body.get("reason"),
            ttl=expires_in,
            kind="menu",
            detail={"menu": menu_id},
        )

    # -- the customer's page ------------------------------------------------------------------------------------

    async def info(self, token: str, who: str, accept_language: str | None = None) -> dict:
        """What the page shows before it starts: company, phrase, the menu's title, in the customer's language.
        Marks the link opened (as a video link's first read does)."""
        link = await self._menu_link(token, who)
        info = await self.calls.join_info(token, who, accept_language)
        menu = self._menu_of(link)
        language = menu.language_for(link.language, accept_language)
        return {
            "company": info["company"],
            "phrase": info["phrase"],
            "expires_in": info["expires_in"],
            "language": language,
            "languages": menu.languages,
            "title": text_in(menu.title, language),
            "texts": self.texts.texts(language),
        }

    async def start(self, token: str, who: str, accept_language: str | None = None) -> dict:
        """Use the link up on this device: the page gets the key its steps carry, and the first screen."""
        link = await self._menu_link(token, who)
        menu = self._menu_of(link)
        await self._prune()
        if not self.store.links.consume(link.id):
            raise Gone("this link has been used; each link works once, on one device", "link.used")
        key = new_token(16)
        live = _Live(
            self.store.links.get(link.id) or link,
            MenuSession(menu, self._today),
            token_hash(key),
            menu.language_for(link.language, accept_language),
            self.store.clock(),
        )
        self.live[link.id] = live
        self.store.audit.add("customer", "menu.start", link.id, menu.id)
        self._link_changed(live.link)
        self._record(live, "action", {"action": "start", "menu": menu.id, "language": live.language})
        return {"key": key, **self._view(live)}

    async def state(self, token: str, key: object) -> dict:
        live = self._session(token, key)
        async with live.lock:
            self._alive(live)
            if live.idv is not None:  # a slow directory answered since: the menu goes on
                await self._idv_settled(live)
            return self._view(live)

    async def step(self, token: str, body: dict) -> dict:
        """One input of the customer's, with the key: ``{"key", "step": STEP, ...}``; returns the new view."""
        live = self._session(token, body.get("key"))
        kind = body.get("step")
        if kind not in STEPS:
            raise Invalid(f"step: one of {', '.join(STEPS)}")
        async with live.lock:
            self._alive(live)
            s = live.session
            if kind == "choose":
                await self._follow(live, s.choose(body.get("option")))
            elif kind == "enter":
                try:
                    outcome = s.enter(body.get("values"))
                except FieldErrors as e:
                    e.messages = {name: self._problem(live, p) for name, p in e.problems.items()}
                    raise
                await self._follow(live, outcome)
            elif kind == "back":
                await self._follow(live, s.back())
            elif kind == "continue":
                await self._follow(live, s.proceed())
            elif kind == "callback":
                await self._follow(live, s.take_offer())
            else:
                await self._idv_step(live, kind, body)
            return self._view(live)

    # -- running actions ----------------------------------------------------------------------------------------

    async def _follow(self, live: _Live, outcome: Outcome) -> None:
        if outcome.step is not None:
            self._record(live, *outcome.step)
        if outcome.run is not None:
            await self._run(live, outcome.run)

    async def _run(self, live: _Live, action: Action) -> None:
        if action.type == "idv":
            await self._begin_idv(live)
        elif action.type == "show":
            await self._show(live, action)
        elif action.type == "callback":
            self._callback(live, action)
        else:
            await self._to_agent(live, action)

    async def _show(self, live: _Live, action: Action) -> None:
        s = live.session
        try:
            data = await (self._from_crm(live, action) if action.source == "rest" else self._from_directory(live))
        except DirectoryError as e:
            log.warning("menu %s: %s", live.link.id, e)
            s.shown(None, "menu.unavailable")
            self._record(live, "action", {"action": "show", "source": action.source, "ok": False, "error": str(e)})
            return
        rows = [
            {"label": text_in(label, live.language), "value": _shown(data.get(key))}
            for key, label in action.show
            if data is not None and data.get(key) not in (None, "", [])
        ]
        s.shown(rows)
        self._record(live, "action", {"action": "show", "source": action.source, "ok": bool(rows)})

    async def _from_directory(self, live: _Live) -> dict | None:
        customer_id = live.session.customer_id or live.link.customer_ref
        if not customer_id or self.calls.services.idv is None:
            return None
        customer = await self.calls.services.idv.directory.by_id(customer_id)
        if customer is None:
            return None
        return {"customer_id": customer.id, "name": customer.name, "phones": list(customer.phones)}

    async def _from_crm(self, live: _Live, action: Action) -> dict | None:
        """GET the action's URL with the entered values in it (each URL-quoted); a JSON object back."""
        assert action.url is not None
        values = {"customer_id": live.session.customer_id or live.link.customer_ref or "", "phone": live.link.phone}
        values = {k: quote(str(v or ""), safe="") for k, v in {**values, **live.session.values}.items()}
        url = action.url.format_map(_Blank(values))
        headers = {"Authorization": f"Bearer {self.settings.crm_token}"} if self.settings.crm_token else {}
        timeout = aiohttp.ClientTimeout(total=self.settings.crm_timeout)
        try:
            async with self.http.get(url, headers=headers, timeout=timeout) as r:
                if r.status == 404:
                    return None
                if r.status != 200:
                    raise DirectoryError(f"the CRM answered HTTP {r.status}")
                body = await r.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as e:
            raise DirectoryError(f"the CRM did not answer ({type(e).__name__})") from None
        if not isinstance(body, dict):
            raise DirectoryError("the CRM answered with no JSON object")
        return body

    def _callback(self, live: _Live, action: Action) -> None:
        """The callback booking page, filled in with what the menu knows."""
        s, link = live.session, live.link
        query = {
            "phone": link.phone or "",
            "customer_id": s.customer_id or link.customer_ref or "",
            "subject": text_in(action.subject, live.language) if action.subject else "",
            "queue": action.queue or "",
            "language": live.language,
            "from": link.id,
        }
        url = "/callback?" + urlencode({k: v for k, v in query.items() if v})
        s.handed("callback", url)
        self._record(live, "action", {"action": "callback", "queue": action.queue})
        self._end(live, "the customer asked for a callback")

    async def _to_agent(self, live: _Live, action: Action) -> None:
        """A video link with the first free agent of the option's queue (else the queue of the customer's likely
        reason, else the default), remembering this menu; nobody free: say so."""
        s, link = live.session, live.link
        agent, queue = self.calls.route(s.customer_id or link.customer_ref, link.phone, action.queue)
        if agent is None:
            s.handed(action.type, None, "menu.nobody")
            self._record(live, "action", {"action": action.type, "queue": queue, "agent": None})
            return
        try:
            video, url, _ = await self.calls.create_link(
                agent,
                kind="video",
                detail={"from": link.id},
                phone=link.phone,
                customer_ref=s.customer_id or link.customer_ref,
                language=link.language,  # the caller's, as the IVR gave it (the menu may not speak it)
            )
        except Refused as e:
            log.warning("menu %s: no video link for %s: %s", link.id, agent.name, e.message)
            s.handed(action.type, None, "menu.unavailable")
            self._record(live, "action", {"action": action.type, "queue": queue, "agent": None, "error": e.message})
            return
        s.handed(action.type, url)
        self._record(live, "action", {"action": action.type, "queue": queue, "agent": agent.name, "link_id": video.id})
        self._end(live, f"handed to {agent.name} on video link {video.id}")

    # -- ID&V, without media --------------------------------------------------------------------------------------

    async def _begin_idv(self, live: _Live) -> None:
        ctx = self.calls.services.idv
        if ctx is None or not self.calls.idv_active():
            live.session.idv_off()
            return
        if live.idv is not None:  # under way (the customer went back, and came again): the page shows where it is
            await self._idv_settled(live)
            return
        first: asyncio.Future = asyncio.get_running_loop().create_future()

        def to_customer(message: dict | None) -> None:
            if not first.done():
                first.set_result(message)

        live.idv = LiveIdv(
            ctx,
            live.link.id,
            live.link.phone,
            None,
            partial(self.hub.publish, live.link.agent_id),
            to_customer,
            texts=partial(self.texts.render, live.language),
            page=True,
        )
        live.idv.begin()
        try:
            await asyncio.wait_for(asyncio.shield(first), timeout=self.settings.crm_timeout + 5.0)
        except TimeoutError:
            return  # the directory is slow: the page shows the check under way, and asks again
        await self._idv_settled(live)

    async def _idv_step(self, live: _Live, kind: str, body: dict) -> None:
        idv = live.idv
        if live.session.mode != "idv" or idv is None:
            raise Conflict("no identity check is under way")
        if kind == "identify":
            number = body.get("customer_id")
            await idv.identify(number if isinstance(number, str) else "")
            self._record(live, "entry", {"screen": "idv", "values": {"customer_number": "(entered)"}})
        elif kind == "verify":
            code = body.get("code")
            await idv.verify_code(code if isinstance(code, str) else "")
            kind_ = idv.record.code_kind or "code"
            self._record(live, "entry", {"screen": "idv", "values": {kind_: "(entered)"}})
        else:
            await idv.skip()
            self._record(live, "choice", {"screen": "idv", "skip": True})
        await self._idv_settled(live)

    async def _idv_settled(self, live: _Live) -> None:
        """ID&V done: the menu goes on (to the action that waited for it, or a message)."""
        assert live.idv is not None
        record = live.idv.record
        if record.step != IdvStep.DONE or live.session.mode != "idv":
            return
        await self._follow(live, live.session.idv_finished(record.status.value, record.customer_id))

    # -- views and records --------------------------------------------------------------------------------------

    def _view(self, live: _Live) -> dict:
        view = live.session.view(live.language, partial(self.texts.render, live.language))
        if live.session.mode == "idv" and live.idv is not None:
            view["idv"] = live.idv.customer_view()
        return view

    def _problem(self, live: _Live, problem: Problem) -> str:
        if problem.words:
            return text_in(problem.words, live.language)
        return self.texts.render(live.language, problem.key, **problem.params)

    def _record(self, live: _Live, kind: str, detail: dict) -> None:
        """One step, in order: in the store, as a customer event, and live on the link's agent's console."""
        link = live.link
        seq = self.store.steps.add(link.id, kind, detail)
        step = {"link_id": link.id, "seq": seq, "at": self.store.clock(), "step": kind, "detail": detail}
        customer = live.session.customer_id or link.customer_ref
        if customer or link.phone:
            try:
                event = {"step": kind, **detail}
                self.calls.context.record(customer, link.phone, "menu.choice", event, f"menu:{link.id}")
            except Refused as e:  # an event too large, say: the step is in the store all the same
                log.warning("menu %s: step not kept as a customer event: %s", link.id, e.message)
        message = {"type": "menu", "link_id": link.id, "step": step, "idv": live.session.idv_status}
        self.hub.publish(link.agent_id, message)

    def _end(self, live: _Live, reason: str) -> None:
        if self.store.links.finish(live.link.id, "ended", reason):
            self.store.audit.add("customer", "menu.end", live.link.id, reason)
            self._link_changed(self.store.links.get(live.link.id))
        self.live.pop(live.link.id, None)

    def _link_changed(self, link: Link | None) -> None:
        if link is not None:
            self.hub.publish(link.agent_id, {"type": "link", "link": link.to_dict()})

    # -- the agent's side -------------------------------------------------------------------------------------------

    def for_agent(self, agent: Agent, link_id: str) -> dict:
        """A menu link's steps and ID&V, for its own agent or the agent of a call it led to."""
        link = self.store.links.get(link_id)
        if link is None or link.kind != "menu":
            raise NotFound("no such menu link")
        if link.agent_id != agent.id and not self._led_to(agent, link.id):
            raise NotFound("no such menu link")
        menu = self.menus.get((link.detail or {}).get("menu", ""))
        return {
            "link": link.to_dict(),
            "menu": {"id": menu.id, "title": text_in(menu.title, "en")} if menu else None,
            "steps": [s.__dict__ for s in self.store.steps.of(link.id)],
            "idv": self.store.idv.get(link.id),
        }

    def _led_to(self, agent: Agent, menu_link_id: str) -> bool:
        links = self.store.links.of_agent(agent.id, 200)
        return any((link.detail or {}).get("from") == menu_link_id for link in links)

    # -- helpers --------------------------------------------------------------------------------------------------

    async def _menu_link(self, token: str, who: str) -> Link:
        link = await self.calls.customer_link(token, who)
        if link.kind != "menu":
            raise Conflict(f"this link opens a {link.kind}, not a menu")
        return link

    def _menu_of(self, link: Link) -> Menu:
        menu = self.menus.get((link.detail or {}).get("menu", ""))
        if menu is None:
            raise Gone("this menu is no longer offered; ask for a new link", "menu.ended")
        return menu

    def _session(self, token: str, key: object) -> _Live:
        link = self.store.links.by_token(token_hash(token)) if isinstance(token, str) and token else None
        live = self.live.get(link.id) if link is not None else None
        if live is None or not isinstance(key, str) or not hmac.compare_digest(token_hash(key), live.key_hash):
            if link is not None and link.kind == "menu" and link.state == "ended":
                raise Gone("this menu has ended", "menu.ended")
            raise Forbidden("not this menu's customer")
        return live

    def _alive(self, live: _Live) -> None:
        """The agent may revoke a menu in use, and a menu may not outlast its time."""
        link = self.store.links.get(live.link.id)
        if link is None or link.state == "revoked":
            self.live.pop(live.link.id, None)
            raise Gone("this link has been cancelled by the agent", "link.revoked")
        if self.store.clock() - live.started > self.settings.session_ttl:
            self._end(live, "the menu's time ran out")
            raise Gone("this menu has timed out; ask for a new link", "menu.timed_out")

    async def _prune(self) -> None:
        """Menus the customer left unfinished end when their time is up: memory stays bounded, and the consoles
        see them done."""
        now = self.store.clock()
        for live in [x for x in self.live.values() if now - x.started > self.settings.session_ttl]:
            self._end(live, "the menu's time ran out")
            if live.idv is not None:
                await live.idv.close()

    def _today(self) -> date:
        return date.fromtimestamp(self.store.clock())

    async def close(self) -> None:
        for live in list(self.live.values()):
            if live.idv is not None:
                await live.idv.close()
        self.live.clear()


class _Blank(dict):
    """A value the customer has not entered (a field on a screen they did not visit) is empty in a URL."""

    def __missing__(self, key: str) -> str:
        return ""


def _shown(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)
