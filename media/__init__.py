"""The real-time media path: transports, frames, resampling, VAD segmentation, speech taps, the pipeline, events.

media/ owns time. Transports (``webrtc``: a call's peers, and what each side
hears of the other, ``voice_out``: the voice and its translation, mixed) turn
audio into frames; one ``SpeechTap`` per call leg
resamples to 16 kHz mono once, cuts speech segments with a VAD once, and
hands them to every listener (the ``Pipeline`` for ASR and MT; voice ID's
``NetSpeech``). The pipeline drives the engines it is handed off the event
loop and emits typed events stamped with audio time and wall time.

Imports: the standard library, numpy, PyAV, aiortc and ``models``. Never
``store``, ``identity``, ``calls``, ``signaling`` or ``cli``.
"""
