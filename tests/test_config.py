"""`serve`'s settings from a TOML file and the environment: precedence, secrets by file, one-line errors."""

from __future__ import annotations

import tomllib

import pytest

from cli.main import main


def effective(capsys, *argv: str) -> dict:
    assert main(["config", "show", *argv]) == 0
    return tomllib.loads(capsys.readouterr().out)


@pytest.fixture
def env(monkeypatch):
    for name in ("VOXGATE_MAX_CALLS", "VOXGATE_CONFIG", "VOXGATE_TURN_SECRET", "VOXGATE_TWILIO_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_flag_beats_the_environment_which_beats_the_file_which_beats_the_default(tmp_path, capsys, env):
    file = tmp_path / "voxgate.toml"
    file.write_text('max-calls = 5\nstun = ["stun:a:3478", "stun:b:3478"]\nno-partials = true\ncompany = "Acme"\n')
    assert effective(capsys)["max-calls"] == 20  # the default
    shown = effective(capsys, "--config", str(file))
    assert (shown["max-calls"], shown["stun"], shown["no-partials"], shown["company"]) == (
        5,
        ["stun:a:3478", "stun:b:3478"],
        True,
        "Acme",
    )
    env.setenv("VOXGATE_MAX_CALLS", "7")
    env.setenv("VOXGATE_NO_PARTIALS", "false")
    shown = effective(capsys, "--config", str(file))
    assert (shown["max-calls"], shown["no-partials"]) == (7, False)
    assert effective(capsys, "--config", str(file), "--max-calls", "9")["max-calls"] == 9
    assert effective(capsys, "--config", str(file), "--max-calls", "20")["max-calls"] == 20  # given, though default
    env.setenv("VOXGATE_CONFIG", str(file))  # the file named by the environment
    assert effective(capsys)["company"] == "Acme"


def test_secrets_come_from_files_and_are_never_shown(tmp_path, capsys, env):
    secret = tmp_path / "turn.secret"
    secret.write_text("s3cret-turn\n")
    file = tmp_path / "voxgate.toml"
    file.write_text(f'turn-secret-file = "{secret}"\nwhip-token = ["w1", "w2"]\n')
    env.setenv("VOXGATE_TWILIO_AUTH_TOKEN_FILE", str(secret))
    assert main(["config", "show", "--config", str(file)]) == 0
    out = capsys.readouterr().out
    shown = tomllib.loads(out)
    assert shown["turn-secret"] == shown["twilio-auth-token"] == "***" and shown["whip-token"] == ["***", "***"]
    assert "s3cret" not in out and "w1" not in out

    from cli import config
    from cli.main import _parser, _subparser

    serve = _subparser(_parser(), "serve")
    argv = ["--config", str(file)]
    args = config.resolve(serve, serve.parse_args(argv), argv, {"VOXGATE_TWILIO_AUTH_TOKEN_FILE": str(secret)})
    assert (args.turn_secret, args.twilio_auth_token, args.whip_token) == ("s3cret-turn", "s3cret-turn", ["w1", "w2"])


@pytest.mark.parametrize(
    "text, where, message",
    [
        ("max-cals = 3", "max-cals", "did you mean 'max-calls'"),
        ('max-calls = "many"', "max-calls", "'many' is not a valid value"),
        ('device = "tpu"', "device", "not one of auto, cpu, cuda"),
        ('no-idv = "yes"', "no-idv", "expected true or false"),
        ("port = [1, 2]", "port", "expected a single value"),
        ('turn-secret-file = "/nonexistent/secret"', "turn-secret-file", "cannot read the secret's file"),
        ("port = ", "not valid TOML", ""),
    ],
)
def test_a_wrong_key_or_value_stops_the_server_with_one_line_naming_it(tmp_path, capsys, env, text, where, message):
    file = tmp_path / "voxgate.toml"
    file.write_text(text + "\n")
    assert main(["serve", "--config", str(file), "--data-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and where in err and message in err, err
    assert not (tmp_path / "data").exists()  # stopped before anything was made


def test_a_wrong_environment_value_names_its_variable(capsys, env):
    env.setenv("VOXGATE_PORT", "eighty")
    assert main(["config", "show"]) == 2
    assert "VOXGATE_PORT: 'eighty' is not a valid value" in capsys.readouterr().err


def test_the_readme_example_is_a_valid_configuration(tmp_path, capsys, env):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = "# voxgate.toml" + readme.split("```toml\n# voxgate.toml", 1)[1].split("```", 1)[0]
    secret = tmp_path / "secret"
    secret.write_text("from-a-file")
    file = tmp_path / "voxgate.toml"
    file.write_text(
        example.replace("/run/secrets/turn", str(secret))
        .replace("/run/secrets/crm", str(secret))
        .replace("/run/secrets/twilio", str(secret))
    )
    shown = effective(capsys, "--config", str(file))
    assert shown["public-url"].startswith("https://") and shown["queue"] == ["support=alice", "sales=bob"]
    assert shown["turn-secret"] == shown["directory-token"] == shown["twilio-auth-token"] == "***"
