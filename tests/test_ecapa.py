"""The SpeechBrain ECAPA engine through its real loading code, on an untrained model the test builds.

No ECAPA weights ship on PyPI, so the test writes a small, randomly initialised
ECAPA-TDNN in the layout of SpeechBrain's published checkpoints (hyperparams.yaml
naming the hub in ``pretrained_path``, and ``embedding_model.ckpt``), loads it
with our engine, offline, and checks the embeddings.
"""

from __future__ import annotations

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
        pytest.skip(
            "speechbrain is not importable here: it needs torch with a matching torchaudio, which the test extra "
            "does not install (pip install 'voxgate[speechbrain]': torch 2.9.1 + torchaudio 2.9, about 7 GB) "
            f"[{type(e).__name__}: {e}]"
        )
    return torch


def test_ecapa_engine_loads_a_local_checkpoint_offline(tmp_path, data):
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


def test_ecapa_engine_names_what_is_missing(tmp_path):
    from models.errors import ModelUnavailable
    from models.speaker import EcapaEncoder

    with pytest.raises(ModelUnavailable, match="--ecapa-dir"):
        EcapaEncoder(None)
    with pytest.raises(ModelUnavailable, match="no hyperparams.yaml"):
        EcapaEncoder(tmp_path)
