"""The house rules, checked on the source: rooms import one way, only the web edge speaks HTTP server, and
benchmarks and tests share no code. Cheap to run, and they fail the moment a shortcut creeps in."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE = ("cli", "signaling", "journeys", "calls", "identity", "media", "cluster", "store", "models", "web")
# Who may import whom (besides itself, the standard library and third-party packages).
ALLOWED = {
    "cli": {"signaling", "journeys", "calls", "identity", "media", "cluster", "store", "models"},
    "signaling": {"journeys", "calls", "identity", "media", "store", "models", "web"},
    "journeys": {"calls", "identity", "store", "models"},
    "calls": {"identity", "media", "store", "models"},
    "identity": {"media", "store", "models"},
    "media": {"models"},
    "cluster": {"store", "models"},  # beside the store: Redis, as PostgreSQL is the store's
    "store": set(),
    "models": set(),
    "web": set(),
}


def imports(path: Path) -> set[str]:
    """Every module a file imports, by its full dotted name."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def sources(*packages: str) -> list[Path]:
    return [p for package in packages for p in sorted((ROOT / package).rglob("*.py"))]


@pytest.mark.parametrize("package", CODE)
def test_rooms_import_one_way(package):
    wrong = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in sources(package)
        for name in imports(path)
        if name.split(".")[0] in set(CODE) | {"tests", "benchmarks", "peers"}
        and name.split(".")[0] not in ALLOWED[package] | {package}
    }
    assert not wrong, f"{package}/ may import only {sorted(ALLOWED[package])}"


def test_only_the_web_edge_and_the_cli_import_aiohttp_web():
    wrong = [
        str(path.relative_to(ROOT))
        for path in sources(*(p for p in CODE if p not in ("signaling", "cli")))
        if {"aiohttp.web", "aiohttp.web_app"} & imports(path) or any(n.startswith("aiohttp.web") for n in imports(path))
    ]
    assert not wrong


def test_benchmarks_and_tests_share_no_code():
    assert not [p for p in sources("benchmarks") if any(n.split(".")[0] == "tests" for n in imports(p))]
    assert not [p for p in sources("tests") if any(n.split(".")[0] == "benchmarks" for n in imports(p))]


def test_the_web_edge_is_a_minority_of_the_code():
    """signaling/ holds the web edge only: at most 30% of the code packages' lines."""
    lines = {package: sum(len(p.read_text().splitlines()) for p in sources(package)) for package in CODE}
    assert lines["signaling"] <= 0.30 * sum(lines.values()), lines


def test_importing_the_webrtc_transport_changes_nothing_in_aiortc():
    """The fast audio level is installed by the composition root, explicitly, never as an import side effect."""
    code = (
        "import aiortc.rtp; before = aiortc.rtp.compute_audio_level_dbov\n"
        "import media.webrtc, calls.service, signaling.app\n"
        "assert aiortc.rtp.compute_audio_level_dbov is before\n"
        "media.webrtc.use_fast_audio_level()\n"
        "assert aiortc.rtp.compute_audio_level_dbov is media.webrtc.audio_level_dbov\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_loading_a_speaker_model_leaves_the_process_hub_setting_alone():
    """The ECAPA engine turns huggingface_hub offline for its load only (the module flag it checks at call time)."""
    constants = pytest.importorskip("huggingface_hub.constants")
    from models.speaker import EcapaEncoder

    for before in (False, True):
        constants.HF_HUB_OFFLINE = before
        with EcapaEncoder._hub_offline():
            assert constants.HF_HUB_OFFLINE is True
        assert constants.HF_HUB_OFFLINE is before
    constants.HF_HUB_OFFLINE = False
