"""The menu file: what an operator writes (YAML or JSON) and how it is checked, and how a customer's values are.

A menu is screens of options and of data-entry fields with their validation, and actions (``show`` data from the
directory or the CRM, ``idv``, ``callback``, ``agent``, ``video``). ``load_menus`` checks everything at load and
names every problem with its file, screen and field: a server never starts on a menu that would fail a customer
half-way. ``check_value`` checks what a customer enters against a field. No I/O besides reading the files, no
state: the live side (``journeys.menus``) imports these frozen types.
"""

from __future__ import annotations

import difflib
import json
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from importlib.resources import files
from pathlib import Path
from typing import Any

from store.errors import Invalid

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
    names = {f.name for s in screens.values() for f in s.fields}
    for screen in screens.values():
        _check_links(p, screen, screens, names)
    p.raise_if_any()
    return Menu(menu_id, title or {DEFAULT_LANGUAGE: menu_id}, str(start), screens, source)


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
    return _show_action(p, raw, at, nxt)


def _show_action(p: _Problems, raw: dict, at: str, nxt: str | None) -> Action:
    """A show action: where the data comes from, and which of its fields to show under which labels."""
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
    lengths = _lengths(p, raw, kind, at)
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


def _lengths(p: _Problems, raw: dict, kind: str, at: str) -> dict[str, int | None]:
    """min_length and max_length, each None when absent or wrong."""
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
    return lengths


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
