"""Decode audio files (WAV, FLAC, Opus, MP3, ... via PyAV) into pipeline frames, refusing bad input clearly."""

from __future__ import annotations

import struct
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


class AudioFormatError(ValueError):
    """The input is not audio we can use; the message says why."""


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


def decode_file(path: str | Path, frame_seconds: float = 0.02) -> Iterator[AudioFrame]:
    """Yield 16 kHz mono frames of ``frame_seconds`` from any audio file FFmpeg reads.

    Raises AudioFormatError (never a decoder traceback) for a missing, empty,
    non-audio or implausible file.
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
        resample = Resampler()
        step = int(SAMPLE_RATE * frame_seconds)
        pending = np.zeros(0, np.int16)
        emitted = 0
        try:
            for frame in container.decode(stream):
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


def read_pcm(path: str | Path) -> np.ndarray:
    """The whole file as 16 kHz mono int16."""
    return np.concatenate([f.samples.reshape(-1) for f in decode_file(path, frame_seconds=1.0)])
