"""The SpeechBrain ECAPA engine through its real loading code, on an untrained model the test builds.

No ECAPA weights ship on PyPI, so the test writes a small, randomly initialised
ECAPA-TDNN in the layout of SpeechBrain's published checkpoints (hyperparams.yaml
naming the hub in ``pretrained_path``, and ``embedding_model.ckpt``), loads it
with our engine, offline, and checks the embeddings.

Every ``import speechbrain`` imports torchaudio (speechbrain/utils/torch_audio_backend.py), so SpeechBrain
runs only beside a torchaudio built for the installed torch. Skipped where it is not importable; failed under CI.
"""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest

HYPERPARAMS = """\
pretrained_path: speechbrain/spkrec-ecapa-voxceleb
n_mels: 40
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [64, 64, 64, 64, 192]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 16
    lin_neurons: 96
modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
"""


def _speechbrain():
    try:
        import speechbrain.inference.speaker  # noqa: F401
        import torch
    except Exception as e:  # ImportError, or torchaudio's OSError when it does not match torch
        why = (
            "speechbrain is not importable here: it imports torchaudio, which must be built for the installed torch "
            "(pip install 'voxgate[speechbrain]': torch 2.9.1 + torchaudio 2.9, about 4 GB to download) "
            f"[{type(e).__name__}: {e}]"
        )
        if os.environ.get("VOXGATE_REQUIRE_SPEECHBRAIN"):  # .ci/run's SpeechBrain venv: it must import there
            pytest.fail(why)
        pytest.skip(why)
    return torch


@pytest.fixture
def no_network(monkeypatch) -> list[object]:
    """Every address a connection or name lookup is attempted to while the test runs (and refused)."""
    tried: list[object] = []

    def refuse(what):
        def call(*args, **kwargs):
            tried.append(args[1] if what == "connect" else args[0])
            raise OSError(f"network forbidden in this test ({what})")

        return call

    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    return tried


def test_ecapa_engine_loads_a_local_checkpoint_offline(tmp_path, data, no_network):
    torch = _speechbrain()
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    from models.speaker import EcapaEncoder
    from tests.conftest import pcm

    torch.manual_seed(0)
    model = ECAPA_TDNN(40, channels=[64, 64, 64, 64, 192], attention_channels=16, lin_neurons=96)
    (tmp_path / "hyperparams.yaml").write_text(HYPERPARAMS)
    torch.save(model.state_dict(), tmp_path / "embedding_model.ckpt")

    encoder = EcapaEncoder(tmp_path)
    assert encoder.dim == 96
    speech = pcm(data / "voiceid/eagle/speaker_1_utt_1.wav").astype(np.float32) / 32768
    a, b = encoder.embed(speech), encoder.embed(speech[: len(speech) // 2])
    assert a.shape == (96,) and np.isclose(np.linalg.norm(a), 1, atol=1e-4)
    assert not np.allclose(a, b)
    # The weights loaded are the ones saved: the same front end and model, run by hand, give the same vector.
    from speechbrain.lobes.features import Fbank
    from speechbrain.processing.features import InputNormalization

    model.eval()
    with torch.no_grad():
        feats = Fbank(n_mels=40)(torch.from_numpy(speech)[None])
        feats = InputNormalization(norm_type="sentence", std_norm=False)(feats, torch.ones(1))
        ref = model(feats).reshape(-1).numpy()
    assert np.allclose(a, ref / np.linalg.norm(ref), atol=1e-4)
    assert no_network == []


def test_ecapa_engine_never_fetches_what_is_not_local(tmp_path, no_network):
    """A checkpoint that names the hub for a file it lacks is refused, without a connection being tried."""
    _speechbrain()
    from models.errors import ModelUnavailable
    from models.speaker import EcapaEncoder

    hub_only = HYPERPARAMS.replace("pretrained_path: speechbrain/spkrec-ecapa-voxceleb\n", "").replace(
        "!ref <pretrained_path>/", "speechbrain/spkrec-ecapa-voxceleb/"
    )
    assert "spkrec-ecapa-voxceleb/embedding_model.ckpt" in hub_only and "pretrained_path" not in hub_only
    (tmp_path / "hyperparams.yaml").write_text(hub_only)
    with pytest.raises(ModelUnavailable, match="could not load"):
        EcapaEncoder(tmp_path)
    assert no_network == []


def test_ecapa_engine_names_what_is_missing(tmp_path):
    from models.errors import ModelUnavailable
    from models.speaker import EcapaEncoder

    with pytest.raises(ModelUnavailable, match="--ecapa-dir"):
        EcapaEncoder(None)
    with pytest.raises(ModelUnavailable, match="no hyperparams.yaml"):
        EcapaEncoder(tmp_path)
