"""``voxgate serve``'s settings from a TOML file and VOXGATE_* environment variables, as well as its flags.

Every option of ``serve`` is a setting, under one name everywhere: the flag ``--max-calls``, the file's key
``max-calls = 20``, the variable ``VOXGATE_MAX_CALLS=20``. A secret may be read from a file instead
(``turn-secret-file = "/run/secrets/turn"``, ``VOXGATE_TURN_SECRET_FILE``), as orchestrators mount them.
Precedence: a flag given > the environment > the file > the default. A key or value that is wrong stops the
server with one line naming it. Repeatable options take a list in the file and commas in the environment.
"""

from __future__ import annotations

import argparse
import difflib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PREFIX = "VOXGATE_"
NOT_SETTINGS = frozenset({"help", "config", "action"})
SECRETS = frozenset(
    {
        "turn_password",
        "turn_secret",
        "directory_token",
        "twilio_auth_token",
        "whip_token",
        "audiohook_key",
        "metrics_token",
        "database",  # a URL may carry a password
        "redis",
        "payments_stripe_secret_key",
        "payments_stripe_webhook_secret",
        "payments_redirect_secret",
        "callbacks_sms_secret",
        "menus_crm_token",
    }
)
# A journey's settings may sit in a table of its own: ``[payments] provider = "stripe"`` is ``payments-provider``.
SECTIONS = frozenset({"menus", "callbacks", "payments"})
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class ConfigError(Exception):
    """One line: which setting, from where, and what is wrong with it."""


def settings_of(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The parser's settings by key (the flag's name without dashes)."""
    return {
        a.option_strings[-1].lstrip("-"): a
        for a in parser._actions
        if a.option_strings and a.dest not in NOT_SETTINGS and a.option_strings[-1].startswith("--")
    }


def given(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The destinations set on the command line itself (parsed again with every default suppressed)."""
    saved = {a: a.default for a in parser._actions}
    try:
        for action in parser._actions:
            action.default = argparse.SUPPRESS
        return set(vars(parser.parse_known_args(argv)[0]))
    finally:
        for action, default in saved.items():
            action.default = default


def resolve(
    parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str], env: Mapping[str, str]
) -> argparse.Namespace:
    """``args`` (parsed from ``argv`` by ``parser``, the ``serve`` parser) with every setting not given as a flag
    taken from the environment, else the file, else left at its default."""
    settings = settings_of(parser)
    on_command_line = given(parser, argv)
    config = args.config or (Path(env[f"{PREFIX}CONFIG"]) if env.get(f"{PREFIX}CONFIG") else None)
    file = _read(config, settings) if config else {}
    for key, action in settings.items():
        if action.dest in on_command_line:
            continue
        name = f"{PREFIX}{key.upper().replace('-', '_')}"
        if name in env or f"{name}_FILE" in env:
            value = _secret_file(env[f"{name}_FILE"], name) if f"{name}_FILE" in env else env[name]
            setattr(args, action.dest, _from_text(action, value, name))
        elif key in file:
            setattr(args, action.dest, _from_toml(action, file[key], f"{config}: {key}"))
    args.config = config
    return args


def show(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The effective settings as a TOML file would hold them; secrets masked, unset ones commented out."""
    lines = []
    for key, action in settings_of(parser).items():
        value = getattr(args, action.dest)
        if value in (None, []):
            lines.append(f"# {key} =")
        elif action.dest in SECRETS:
            lines.append(f"{key} = {_toml(['***'] * len(value) if isinstance(value, list) else '***')}")
        else:
            lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines)


def _read(path: Path, settings: dict[str, argparse.Action]) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    out = {}
    for key, value in _flatten(data).items():
        base = key.removesuffix("-file")
        if key.endswith("-file") and base in settings and settings[base].dest in SECRETS:
            out[base] = _secret_file(value, f"{path}: {key}") if isinstance(value, str) else value
        elif key in settings:
            out[key] = value
        else:
            near = difflib.get_close_matches(key, list(settings), n=1)
            raise ConfigError(f"{path}: unknown setting {key!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
    return out


def _flatten(data: dict[str, Any]) -> dict[str, Any]:
    """The journeys' tables' keys as the flags name them (``[payments] max-amount`` is ``payments-max-amount``)."""
    out = {}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, dict):
            out.update({f"{key}-{name}": item for name, item in value.items()})
        else:
            out[key] = value
    return out


def _secret_file(path: str, where: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as e:
        raise ConfigError(f"{where}: cannot read the secret's file {path} ({e.strerror})") from None


def _from_text(action: argparse.Action, text: str, where: str) -> Any:
    """A value from the environment: text, as a flag's would be."""
    if _is_flag(action):
        if text.strip().lower() not in TRUE + FALSE:
            raise ConfigError(f"{where}: expected true or false, not {text!r}")
        return text.strip().lower() in TRUE
    if _is_list(action):
        return [_convert(action, item.strip(), where) for item in text.split(",") if item.strip()]
    return _convert(action, text, where)


def _from_toml(action: argparse.Action, value: Any, where: str) -> Any:
    if _is_flag(action):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, not {value!r}")
        return value
    if _is_list(action):
        items = value if isinstance(value, list) else [value]
        return [_convert(action, _scalar(item, where), where) for item in items]
    return _convert(action, _scalar(value, where), where)


def _scalar(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"{where}: expected a single value, not {value!r}")
    return str(value)


def _convert(action: argparse.Action, text: str, where: str) -> Any:
    try:
        value = action.type(text) if callable(action.type) else text
    except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
        raise ConfigError(f"{where}: {text!r} is not a valid value ({e})") from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ConfigError(f"{where}: {text!r} is not one of {choices}")
    return value


def _is_flag(action: argparse.Action) -> bool:
    return isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction)


def _is_list(action: argparse.Action) -> bool:
    return isinstance(action, argparse._AppendAction)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
