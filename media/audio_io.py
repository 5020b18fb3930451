"""Decode audio files (WAV, FLAC, Opus, MP3, ... via PyAV) into pipeline frames, refusing bad input clearly; write
mono 16-bit WAV."""

from __future__ import annotations

import struct
import wave
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from media.frames import AudioFrame
from media.resample import Resampler
from models.base import SAMPLE_RATE

MIN_RATE, MAX_RATE = 4_000, 384_000
# WAV writers that stream to a pipe write one of these as the data size: "length unknown", not a lie.
_UNKNOWN_WAV_SIZES = (0, 0xFFFFFFFF, 0x7FFFFFFF)
# A declared duration this many times the cap is refused before decoding. Only "far past": FFmpeg estimates some
# durations from the bitrate (headerless VBR MP3), so a declared length can overstate a recording that fits.
_DECLARED_SLACK = 2.0


class AudioFormatError(ValueError):
    """The input is not audio we can use; the message says why."""


class AudioTooLong(AudioFormatError):
    """The audio decodes to more than the caller's cap: a few MB of compressed silence can hold hours of PCM."""

    def __init__(self, path: Path, max_seconds: float) -> None:
        limit = _span(max_seconds)
        super().__init__(f"{path} is longer than {limit}; send at most {limit} of audio")
        self.max_seconds = max_seconds


def _span(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def _declared_seconds(container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    """The longest duration the file's headers claim, if any; a hint only, since headers can lie either way."""
    claims = []
    if stream.duration and stream.time_base:
        claims.append(float(stream.duration * stream.time_base))
    if container.duration:
        claims.append(container.duration / av.time_base)
    return max(claims, default=None)


def check_wav_header(path: Path) -> None:
    """Sanity-check a RIFF/WAVE header before decoding: rates and sizes must be possible."""
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        file_size = path.stat().st_size
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                raise AudioFormatError(f"{path}: WAV file ends before its data chunk (truncated header)")
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"fmt ":
                fmt = f.read(size)
                if len(fmt) < 16:
                    raise AudioFormatError(f"{path}: WAV fmt chunk is {len(fmt)} bytes, too short")
                channels, rate = struct.unpack("<HI", fmt[2:8])
                if not MIN_RATE <= rate <= MAX_RATE:
                    raise AudioFormatError(
                        f"{path}: WAV header claims a sample rate of {rate} Hz; expected {MIN_RATE}-{MAX_RATE}"
                    )
                if not 1 <= channels <= 32:
                    raise AudioFormatError(f"{path}: WAV header claims {channels} channels")
                f.seek(size % 2, 1)
            elif cid == b"data":
                available = file_size - f.tell()
                if size not in _UNKNOWN_WAV_SIZES and size > available:
                    raise AudioFormatError(
                        f"{path}: WAV header claims {size} bytes of audio but the file holds {available}: "
                        "the file is truncated or its header is corrupt"
                    )
                return
            else:
                f.seek(size + size % 2, 1)


def decode_file(
    path: str | Path, frame_seconds: float = 0.02, max_seconds: float | None = None
) -> Iterator[AudioFrame]:
    """Yield 16 kHz mono frames of ``frame_seconds`` from any audio file FFmpeg reads.

    Raises AudioFormatError (never a decoder traceback) for a missing, empty,
    non-audio or implausible file, and AudioTooLong as soon as the decoded audio
    passes ``max_seconds`` (counted as it decodes: headers are not trusted).
    """
    path = Path(path)
    if not path.is_file():
        raise AudioFormatError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioFormatError(f"{path}: the file is empty")
    check_wav_header(path)
    try:
        container = av.open(str(path))
    except av.FFmpegError as e:
        raise AudioFormatError(f"{path}: not a readable audio file ({e.strerror or e})") from None
    with container:
        if not container.streams.audio:
            raise AudioFormatError(f"{path}: the file has no audio stream")
        stream = container.streams.audio[0]
        if not MIN_RATE <= (stream.rate or 0) <= MAX_RATE:
            raise AudioFormatError(f"{path}: sample rate {stream.rate} Hz is outside {MIN_RATE}-{MAX_RATE}")
        if max_seconds is not None and (_declared_seconds(container, stream) or 0) > max_seconds * _DECLARED_SLACK:
            raise AudioTooLong(path, max_seconds)
        resample = Resampler()
        step = int(SAMPLE_RATE * frame_seconds)
        pending = np.zeros(0, np.int16)
        emitted, decoded = 0, 0.0
        try:
            for frame in container.decode(stream):
                decoded += frame.samples / (frame.sample_rate or stream.rate)
                if max_seconds is not None and decoded > max_seconds:
                    raise AudioTooLong(path, max_seconds)
                pending = np.concatenate([pending, resample(frame)])
                while len(pending) >= step:
                    yield AudioFrame.mono(pending[:step], SAMPLE_RATE, emitted / SAMPLE_RATE)
                    pending, emitted = pending[step:], emitted + step
        except av.FFmpegError as e:
            raise AudioFormatError(f"{path}: audio data is corrupt ({e.strerror or e})") from None
        pending = np.concatenate([pending, resample.flush()])
        if emitted == 0 and len(pending) == 0:
            raise AudioFormatError(f"{path}: the file holds no audio samples")
        for i in range(0, len(pending), step):
            yield AudioFrame.mono(pending[i : i + step], SAMPLE_RATE, (emitted + i) / SAMPLE_RATE)


def read_pcm(path: str | Path, max_seconds: float | None = None) -> np.ndarray:
    """The whole file as 16 kHz mono int16; with ``max_seconds``, AudioTooLong rather than more than that much."""
    frames = decode_file(path, frame_seconds=1.0, max_seconds=max_seconds)
    return np.concatenate([f.samples.reshape(-1) for f in frames])


def write_wav(path: str | Path, pcm: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    """Mono 16-bit PCM as a WAV file; raises OSError where it cannot be written."""
    path = Path(path)
    with open(path, "wb") as f, wave.open(f, "wb") as w:  # wave.open(str) leaves a broken writer when open fails
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(pcm).astype("<i2").tobytes())
    return path
