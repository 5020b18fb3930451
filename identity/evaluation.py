"""Voice ID evaluation: how well voice prints tell speakers apart, on an operator's own recordings.

``voxgate voiceid eval DIR`` reads ``DIR/<speaker>/<files>`` (WAV/FLAC, any
rate). Each speaker enrols from their first files, up to ``enrol_seconds`` of
net speech; every other file is a test utterance cut to ``test_seconds`` of net
speech. Every test is tried against every enrolment: genuine trials (same
speaker) and impostor trials (another). Scores are what ``serve`` computes:
S-norm against the cohort that ships with VoxGate (or ``--cohort``), or, with
``scoring="cosine"``, cosine similarities to the print. The summary gives the
false accepts and rejects at the thresholds ``serve`` would use (or others).

``voxgate voiceid cohort DIR`` builds a cohort from recordings of people who
are not customers (public speech): 3 s windows of each, in both spaces.

``voxgate voiceid calibrate DIR`` runs the same trials at each duration live
calls decide at (``Calibration.checkpoints``: 1.5, 3 and 6 s of net speech) and gives the thresholds that
hold false accepts to a target rate: the server's ``--voiceid-thresholds``.

``--channel phone`` hears every recording, prints and tests alike, as a phone
call reaches VoxGate (``identity.voiceid.telephone``: 8 kHz, μ-law, back to
16 kHz): the phone space VoxGate scores phone calls in, whichever channel a
print was enrolled on (a wideband enrolment's phone space is its speech heard
through the same channel). Its thresholds are ``--voiceid-phone-thresholds``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np

from identity.voiceid import Calibration, Channel, on_the_phone, shipped_cohort, space_key
from media.audio_io import AudioFormatError, read_pcm
from media.speech import net_speech
from models.base import SAMPLE_RATE, SpeakerEncoder, VadEngine, pcm_to_float
from models.metrics import det_curve, equal_error_rate, frr_at_far, min_dcf
from models.voiceprint import Cohort, embed, enrol, raw_score, windows

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".opus", ".mp3"}


@dataclass
class Trial:
    enrolled: str
    tested: str
    score: float  # the one decisions use
    raw: float
    snorm: float

    @property
    def genuine(self) -> bool:
        return self.enrolled == self.tested


def load_speakers(roots: Path | Sequence[Path]) -> dict[str, list[Path]]:
    """``ROOT/<speaker>/<files>`` of each root; with several roots a speaker is ``root/speaker``."""
    roots = [roots] if isinstance(roots, Path) else list(roots)
    speakers = {
        f"{root.name}/{d.name}" if len(roots) > 1 else d.name: sorted(
            f for f in d.iterdir() if f.suffix.lower() in AUDIO_SUFFIXES
        )
        for root in roots
        for d in sorted(root.iterdir())
        if d.is_dir()
    }
    speakers = {k: v for k, v in speakers.items() if v}
    if len(speakers) < 2:
        raise AudioFormatError(f"{', '.join(map(str, roots))}: need at least two speaker folders with recordings")
    return speakers


Speech = dict[str, list[np.ndarray]]  # per speaker, each recording's net speech (float32, 16 kHz), in file order

# A speaker with one recording (public sets often have one per reader) is tested on its last 6 s of net speech (the
# longest checkpoint) and enrols from the rest, at least 4 s. Both sides then come from one session: kinder to
# genuine trials than two calls on different days would be.
SPLIT_TEST_SECONDS, SPLIT_ENROL_SECONDS = 6.0, 4.0


def load_speech(
    root: Path | Sequence[Path], vad: VadEngine, channel: Channel = Channel.WIDEBAND, split: bool = True
) -> Speech:
    """Every speaker's recordings as heard on ``channel``, cut to net speech by the VAD calls use. ``split``: for
    trials, a single recording is split in two (enrolment, test); one too short for both is left out."""
    speech = {
        speaker: [pcm_to_float(net_speech(channel.hear(read_pcm(f)), vad)) for f in files]
        for speaker, files in load_speakers(root).items()
    }
    if not split:
        return speech
    tail, head = int(SPLIT_TEST_SECONDS * SAMPLE_RATE), int(SPLIT_ENROL_SECONDS * SAMPLE_RATE)
    for speaker, recordings in list(speech.items()):
        if len(recordings) == 1:
            s = recordings[0]
            if len(s) >= head + tail:
                speech[speaker] = [s[:-tail], s[-tail:]]
            else:
                del speech[speaker]
    if len(speech) < 2:
        raise AudioFormatError(f"{root}: need two speakers with two recordings, or one long enough to split")
    return speech


def evaluate(
    root: Path | Sequence[Path],
    encoders: Sequence[SpeakerEncoder],
    vad: VadEngine,
    enrol_seconds: float = Calibration().enrol_seconds,
    test_seconds: float | None = 3.0,
    channel: Channel = Channel.WIDEBAND,
    calibration: Calibration = Calibration(),
    cohort: Cohort | None = None,
) -> tuple[dict, list[Trial]]:
    """Run every trial; returns (summary, trials). ``test_seconds=None`` tests on whole utterances.

    Scored as ``serve`` scores with ``calibration`` (its ``scoring``, against ``cohort`` or the shipped one);
    ``channel``: how every recording is heard. The summary gives the rates at ``calibration``'s threshold for
    the channel and duration: what a live call would decide.
    """
    speech = load_speech(root, vad, channel)
    summary, trials = run_trials(
        speech, speech, encoders, enrol_seconds, test_seconds, calibration.scoring, cohort=cohort, channel=channel
    )
    threshold = calibration.for_channel(channel).threshold(test_seconds) if test_seconds is not None else None
    summary["channel"] = channel.value
    if threshold is not None:
        summary["at_threshold"] = rates_at(trials, threshold)
    return summary, trials


def rates_at(trials: list[Trial], threshold: float) -> dict:
    """False accepts and false rejects at one threshold, as a live call would decide."""
    genuine = np.array([t.score for t in trials if t.genuine])
    impostor = np.array([t.score for t in trials if not t.genuine])
    return {
        "threshold": threshold,
        "far_percent": round(float(np.mean(impostor >= threshold)) * 100, 2),
        "frr_percent": round(float(np.mean(genuine < threshold)) * 100, 2),
    }


Enrolled = tuple[dict, dict[str, int]]  # each speaker's print, and how many of their recordings it took


def enrol_speakers(enrolments: Speech, encoders: Sequence[SpeakerEncoder], enrol_seconds: float) -> Enrolled:
    """Each speaker's print from their first recordings, up to ``enrol_seconds`` of speech (keeping one to test)."""
    prints, used = {}, {}
    for speaker, speech in enrolments.items():
        taken: list[np.ndarray] = []
        while len(taken) < len(speech) - 1 and sum(len(s) for s in taken) < enrol_seconds * SAMPLE_RATE:
            taken.append(speech[len(taken)])
        prints[speaker] = enrol(encoders, np.concatenate(taken)[: int(enrol_seconds * SAMPLE_RATE)])
        used[speaker] = len(taken)
    return prints, used


def run_trials(
    enrolments: Speech,
    recordings: Speech,
    encoders: Sequence[SpeakerEncoder],
    enrol_seconds: float,
    test_seconds: float | None,
    scoring: str,
    enrolled: Enrolled | None = None,
    cohort: Cohort | None = None,
    channel: Channel = Channel.WIDEBAND,
) -> tuple[dict, list[Trial]]:
    """Each speaker enrols from the first of ``enrolments``' recordings; the rest of ``recordings`` are tests.
    ``enrolled`` (from ``enrol_speakers``) saves embedding the same prints again for another test length.
    Every trial gets both scores, raw and S-norm against ``cohort`` (default: the shipped one) in ``channel``'s
    space; ``scoring`` says which one decides."""
    prints, used = enrolled or enrol_speakers(enrolments, encoders, enrol_seconds)
    tests = []
    for speaker in prints:
        for s in recordings[speaker][used[speaker] :]:
            if test_seconds is not None:
                if len(s) < 0.9 * test_seconds * SAMPLE_RATE:
                    continue  # too little speech in this file for a test of that length
                s = s[: int(test_seconds * SAMPLE_RATE)]
            tests.append((speaker, embed(encoders, s)))
    names = [e.name for e in encoders]
    scorer = (cohort or shipped_cohort()).scorer({n: space_key(n, channel) for n in names})
    trials = []
    for speaker, vp in prints.items():
        for tested, t in tests:
            raw, snorm = raw_score(vp.vectors, t), scorer.score(vp.vectors, t)
            trials.append(Trial(speaker, tested, snorm if scoring == "snorm" else raw, raw, snorm))
    return summarise(trials, enrol_seconds, test_seconds, names, prints, scoring), trials


def build_cohort(speech: Speech, encoders: Sequence[SpeakerEncoder], per_speaker: int, about: str) -> Cohort:
    """Up to ``per_speaker`` 3 s windows of each speaker, embedded in the wideband and the phone space.

    ``speech`` is as recorded (wideband): the phone space hears it through ``telephone``, as prints do.
    """
    rows: dict[str, list[np.ndarray]] = {}
    for recordings in speech.values():
        joined = np.concatenate(recordings)
        chunks = windows(joined)[::2][:per_speaker]  # half-overlapping windows: every other one does not overlap
        for space in Channel:
            for chunk in chunks:
                heard = chunk if space is Channel.WIDEBAND else on_the_phone(chunk)
                for name, v in embed(encoders, heard).items():
                    rows.setdefault(space_key(name, space), []).append(v)
    return Cohort({k: np.stack(v) for k, v in rows.items()}, about)


def summarise(
    trials: list[Trial],
    enrol_seconds: float,
    test_seconds: float | None,
    encoders: list[str],
    prints: dict,
    scoring: str,
) -> dict:
    genuine = np.array([t.score for t in trials if t.genuine])
    impostor = np.array([t.score for t in trials if not t.genuine])
    if not len(genuine) or not len(impostor):
        raise AudioFormatError("no genuine or no impostor trials: each speaker needs a test file with enough speech")
    eer, threshold = equal_error_rate(genuine, impostor)
    frr, far_threshold = frr_at_far(genuine, impostor, 0.01)
    eers = {
        kind: equal_error_rate(
            [getattr(t, kind) for t in trials if t.genuine], [getattr(t, kind) for t in trials if not t.genuine]
        )[0]
        for kind in ("raw", "snorm")
    }
    return {
        "eer_percent": round(eer * 100, 2),
        "min_dcf": round(min_dcf(genuine, impostor, p_target=0.01), 4),
        "frr_at_far1_percent": round(frr * 100, 2),
        "threshold_at_far1": round(far_threshold, 4),
        "threshold_at_eer": round(threshold, 4),
        "eer_percent_cosine": round(eers["raw"] * 100, 2),
        "eer_percent_snorm": round(eers["snorm"] * 100, 2),
        "genuine_trials": int(len(genuine)),
        "impostor_trials": int(len(impostor)),
        "speakers": len(prints),
        "enrol_seconds": enrol_seconds,
        "enrol_seconds_min": round(min(p.speech_seconds for p in prints.values()), 2),
        "test_seconds": test_seconds,
        "encoders": encoders,
        "scoring": scoring,
        "fusion": "mean of the encoders' scores" if len(encoders) > 1 else None,
    }


PLOT_NEEDS = "matplotlib"  # an extra: pip install 'voxgate[bench]'


def _probit(p) -> np.ndarray:
    """The normal deviate of each rate: a DET plot's axes (the standard library's, so no SciPy is needed)."""
    inv = NormalDist().inv_cdf
    return np.array([inv(float(x)) for x in np.clip(np.atleast_1d(p), 1e-4, 1 - 1e-4)])


def plot_det(trials: list[Trial], path: Path, title: str) -> None:
    """A DET curve as PNG. Needs matplotlib (``voxgate[bench]``); callers check ``PLOT_NEEDS`` first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    genuine = [t.score for t in trials if t.genuine]
    impostor = [t.score for t in trials if not t.genuine]
    _, frr, far = det_curve(genuine, impostor)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(_probit(far), _probit(frr))
    ticks = [0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4]
    ax.set_xticks(_probit(ticks), [f"{t:.1%}" for t in ticks])
    ax.set_yticks(_probit(ticks), [f"{t:.1%}" for t in ticks])
    ax.set_xlim(*_probit([0.0005, 0.5]))
    ax.set_ylim(*_probit([0.0005, 0.5]))
    ax.plot(_probit([0.0005, 0.5]), _probit([0.0005, 0.5]), color="grey", lw=0.5)
    ax.set_xlabel("false accepts")
    ax.set_ylabel("false rejects")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def calibrate(
    root: Path | Sequence[Path],
    encoders: Sequence[SpeakerEncoder],
    vad: VadEngine,
    target_far: float = 0.01,
    durations: Sequence[float] = Calibration().checkpoints,
    enrol_seconds: float = Calibration().enrol_seconds,
    channel: Channel = Channel.WIDEBAND,
    scoring: str = Calibration().scoring,
    cohort: Cohort | None = None,
) -> dict:
    """Thresholds by duration for ``target_far`` false accepts, as ``voxgate serve --voiceid-thresholds`` (or,
    for ``channel`` phone, ``--voiceid-phone-thresholds``) takes them, in ``scoring``'s units.

    A duration with no trials (recordings too short for it) is left out: live calls then keep the threshold
    of the longest shorter duration, which is stricter on more speech only if the data says so.
    """
    speech = load_speech(root, vad, channel)
    enrolled = enrol_speakers(speech, encoders, enrol_seconds)  # the same prints for every test length
    rows = []
    for seconds in durations:
        try:
            _, trials = run_trials(speech, speech, encoders, enrol_seconds, seconds, scoring, enrolled, cohort, channel)
        except AudioFormatError:
            continue
        genuine = [t.score for t in trials if t.genuine]
        impostor = [t.score for t in trials if not t.genuine]
        frr, threshold = frr_at_far(genuine, impostor, target_far)
        rows.append(
            {
                "test_seconds": seconds,
                "threshold": round(threshold, 4),
                "frr_percent": round(frr * 100, 2),
                "eer_percent": round(equal_error_rate(genuine, impostor)[0] * 100, 2),
                "genuine_trials": len(genuine),
                "impostor_trials": len(impostor),
            }
        )
    if not rows:
        raise AudioFormatError(f"{root}: no speaker has a test recording long enough for {min(durations)} s")
    flag = "--voiceid-phone-thresholds" if channel is Channel.PHONE else "--voiceid-thresholds"
    return {
        "target_far_percent": round(target_far * 100, 3),
        "channel": channel.value,
        "scoring": scoring,
        "thresholds": ",".join(f"{r['test_seconds']:g}:{r['threshold']}" for r in rows),
        "durations": rows,
        "encoders": [e.name for e in encoders],
        "note": f"pass thresholds to `voxgate serve {flag}`; a target of 1% needs >= 100 impostor "
        "trials per duration to mean anything (the more the better)",
    }
