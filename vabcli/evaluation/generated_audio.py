"""`vab eval`: score generated audio against a reference manifest's videos and ground truth.

Generated audio is found where `vab generate --data MANIFEST --out DIR` puts it: DIR/<stem>.wav
(or .flac, or the audio of DIR/<stem>.mp4), stems mirroring the videos below the manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vabcli.core.errors import VabError
from vabcli.data.clips import ClipItem, clip_items
from vabcli.data.manifest import ManifestEntry, read_manifest
from vabcli.evaluation.metrics import (
    EVAL_SAMPLE_RATE,
    ClassJudge,
    OnsetCounts,
    clipping_ratio,
    detect_onsets,
    event_features,
    frechet_distance,
    mel_db,
    silence_ratio,
    sounding,
)
from vabcli.evaluation.options import EvalOptions
from vabcli.generation.outputs import output_stem
from vabcli.media.decode import decode_audio, decode_audio_file
from vabcli.media.probe import probe
from vabcli.tasks.options import ClipOptions

GENERATED_SUFFIXES = (".wav", ".flac", ".mp4")
# The stages `evaluate_generated` reports: once per clip read, then once.
READING, SCORING, PLOTTING = "reading audio", "scoring", "plotting"


class EvalError(VabError):
    """Nothing to evaluate: no generated audio found, or a reference without audio."""


@dataclass
class ClipAudio:
    entry: ManifestEntry
    real: np.ndarray  # the reference video's own audio, exactly as long as the video part
    generated: np.ndarray | None  # None: no generated file found
    generated_path: Path | None


def find_generated(generated: Path, item: ClipItem) -> Path | None:
    stem = generated / output_stem(item)
    for suffix in GENERATED_SUFFIXES:
        path = stem.with_name(stem.name + suffix)
        if path.is_file():
            return path
    return None


def real_audio(entry: ManifestEntry) -> np.ndarray:
    """A manifest line's own audio at EVAL_SAMPLE_RATE, aligned with and as long as its video."""
    info = probe(entry.video)
    start = entry.start or 0.0
    end = info.duration if entry.end is None else min(entry.end, info.duration)
    return decode_audio(info, EVAL_SAMPLE_RATE, start, end - start)


def load_pairs(
    generated: Path | None,
    reference: Path,
    workers: int = ClipOptions.workers,
    on_clip: Callable[[], None] | None = None,
) -> list[ClipAudio]:
    """Real (and, with `generated`, generated) audio of every line of `reference`."""
    entries = read_manifest(reference)
    items = clip_items(None, reference)

    def load(pair: tuple[ManifestEntry, ClipItem]) -> ClipAudio:
        entry, item = pair
        path = find_generated(generated, item) if generated is not None else None
        wav = decode_audio_file(path, EVAL_SAMPLE_RATE) if path is not None else None
        clip = ClipAudio(entry, real_audio(entry), wav, path)
        if on_clip is not None:
            on_clip()
        return clip

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(load, zip(entries, items, strict=True)))


@dataclass
class Heard:
    """One waveform's analysis, computed once: its log-mel spectrum and detected onsets."""

    wav: np.ndarray
    spec: np.ndarray
    onsets: np.ndarray

    @classmethod
    def of(cls, wav: np.ndarray) -> Heard:
        spec = mel_db(wav)
        return cls(wav, spec, detect_onsets(spec))


def score(clips: list[ClipAudio], judge: ClassJudge | None, opts: EvalOptions) -> dict:
    """Every measure over the clips that have generated audio (see `vab eval --help`)."""
    found = [c for c in clips if c.generated is not None]
    if not found:
        raise EvalError("no generated audio found for any reference clip")
    fake = [Heard.of(c.generated) for c in found]
    real = [mel_db(c.real) for c in found]
    onsets = OnsetCounts()
    for clip, heard in zip(found, fake, strict=True):
        if clip.entry.events is not None:
            onsets.add(heard.onsets, clip_events(clip), opts.tolerance)
    hits = [
        judge.clip_label(heard.spec, heard.onsets) == clip.entry.label
        for clip, heard in zip(found, fake, strict=True)
        if judge is not None and isinstance(clip.entry.label, str)
    ]
    events_heard = [
        hit
        for clip, heard in zip(found, fake, strict=True)
        if judge is not None
        for hit in events_heard_as_labelled(clip, heard, judge)
    ]
    with_events = onsets.reference > 0
    return {
        "clips": len(found),
        "missing": len(clips) - len(found),
        "onset_f1": onsets.f1 if with_events else None,
        "onset_precision": onsets.precision if with_events else None,
        "onset_recall": onsets.recall if with_events else None,
        "onset_offset_ms": onsets.offset_ms if with_events else None,
        "class_acc": float(np.mean(hits)) if hits else None,
        "event_class_acc": float(np.mean(events_heard)) if events_heard else None,
        "fd_logmel": frechet_distance(np.concatenate([h.spec for h in fake]), np.concatenate(real)),
        "duration_error_ms": float(
            np.mean([abs(len(c.generated) - len(c.real)) for c in found]) / EVAL_SAMPLE_RATE * 1000
        ),
        "silence_ratio": float(np.mean([silence_ratio(c.generated) for c in found])),
        "silence_ratio_reference": float(np.mean([silence_ratio(c.real) for c in found])),
        "clipping": float(np.mean([clipping_ratio(c.generated) for c in found])),
    }


def judged_sounds(clip: ClipAudio, heard: Heard, judge: ClassJudge) -> list[tuple[str, str | None]]:
    """Per true sound of the clip (each source's events, with that source's label): that label,
    and the class the judge hears in the generated audio just after it (None: nothing sounds)."""
    onsets, labels = labelled_sounds(clip)
    heard_as = judge.predict(event_features(heard.spec, onsets))
    loud = sounding(heard.wav, onsets)
    return [
        (label, said if on else None)
        for said, on, label in zip(heard_as, loud, labels, strict=True)
    ]


def events_heard_as_labelled(clip: ClipAudio, heard: Heard, judge: ClassJudge) -> list[bool]:
    """Per true sound of the clip: is the generated audio just after it heard, and heard by the
    judge as its label?"""
    return [said == label for label, said in judged_sounds(clip, heard, judge)]


def clip_events(clip: ClipAudio) -> np.ndarray:
    """The manifest's events (seconds from the video's start) inside the clip's part of it,
    as seconds from the part's start."""
    start = clip.entry.start or 0.0
    events = np.asarray(clip.entry.events or (), dtype=np.float64) - start
    return events[(events >= 0) & (events < len(clip.real) / EVAL_SAMPLE_RATE)]


def labelled_sounds(clip: ClipAudio) -> tuple[np.ndarray, list[str]]:
    """Onsets of a real clip's sounds and their labels: per object where the manifest has
    sources, else the clip's label for every event (or, without events, every onset heard)."""
    start = clip.entry.start or 0.0
    if clip.entry.sources:
        pairs = [(e - start, label) for label, events in clip.entry.sources for e in events]
    elif isinstance(clip.entry.label, str):
        times = clip_events(clip) if clip.entry.events else detect_onsets(mel_db(clip.real))
        pairs = [(t, clip.entry.label) for t in times]
    else:
        pairs = []
    length = len(clip.real) / EVAL_SAMPLE_RATE
    pairs = [(t, label) for t, label in pairs if 0 <= t < length]
    return np.asarray([t for t, _ in pairs]), [label for _, label in pairs]


def fit_judge(clips: list[ClipAudio]) -> ClassJudge | None:
    """The class judge, fitted on the labelled sounds of the clips' real audio."""
    features, labels = [], []
    for clip in clips:
        onsets, names = labelled_sounds(clip)
        features.append(event_features(mel_db(clip.real), onsets))
        labels += names
    if not labels:
        return None
    return ClassJudge(np.concatenate(features), labels)


@dataclass(frozen=True)
class GeneratedAudioScores:
    scores: dict[str, Any]  # see `score`
    missing: list[Path]  # the reference videos without generated audio
    plots: list[Path]  # the pictures written (`plot`), one per clip with generated audio


def evaluate_generated(
    generated: Path,
    reference: Path,
    opts: EvalOptions | None = None,
    judge_data: Path | None = None,
    workers: int = ClipOptions.workers,
    on_step: Callable[[str], None] | None = None,
    plot: Path | None = None,
) -> GeneratedAudioScores:
    """`vab eval`: every measure of the audio in `generated` against the clips of `reference`,
    with the class judge fitted on the real audio of `judge_data`'s clips (default: the
    reference's). `on_step` hears READING once per clip read, then SCORING once (and PLOTTING
    once, with `plot`: a folder for a spectrogram picture per clip, `evaluation.plots`)."""
    step = on_step or (lambda stage: None)
    clips = load_pairs(generated, reference, workers, lambda: step(READING))
    judge_clips = clips
    if judge_data is not None:
        judge_clips = load_pairs(None, judge_data, workers, lambda: step(READING))
    step(SCORING)
    scores = score(clips, fit_judge(judge_clips), opts or EvalOptions())
    plots: list[Path] = []
    if plot is not None:
        from vabcli.evaluation.plots import plot_clips  # it imports this module: import here

        step(PLOTTING)
        plots = plot_clips(clips, plot)
    missing = [c.entry.video for c in clips if c.generated is None]
    return GeneratedAudioScores(scores, missing, plots)
