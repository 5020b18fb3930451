"""The real-time pipeline: frames, resampling, VAD segmentation, net speech, stage wiring, events.

media/ owns time. It turns WebRTC or file audio into 16 kHz mono frames, cuts
speech segments with a VAD, drives the engines it is handed (off the event
loop), and emits typed events stamped with audio time and wall time.

Imports: the standard library, numpy, PyAV and ``models`` (interfaces only;
engines are injected). Never ``signaling``.
"""
