"""Measures of generated audio against ground truth, named for what they compute.

None of them is FAD, KL or DeSync: those need pretrained audio networks this project cannot
download. All work on mono float audio at EVAL_SAMPLE_RATE.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from vabcli.evaluation.melspec import mel_power

EVAL_SAMPLE_RATE = 16_000
HOP_SECONDS = 0.01  # analysis frames of 10 ms
_N_FFT = 512
_N_MELS = 64
SILENCE_DB = -50.0  # a 10 ms frame quieter than this (RMS, dBFS) is silent
CLIPPING_LEVEL = 0.999
ONSET_RISE_DB = 10.0  # rise of the loudest-rising mel bands, frame to frame, that marks an onset
ONSET_BANDS = 8  # a narrow sound (a bell's partials) fills only a few of the 64 bands
# Per mel band, quieter than this counts as silence in every spectral measure: exact digital
# silence (-120 dB) would otherwise lie far from a faint, inaudible hiss, and dominate fd_logmel.
BAND_FLOOR_DB = -70.0
ONSET_MIN_GAP = 0.1  # seconds between two onsets the detector reports
OFFSET_CAP_MS = 1000.0
# Frame k (centred at k * 10 ms, 40 ms wide) rises most while a new sound fills its window:
# measured on `vab synth` clips, that peak comes 7.5 ms (std 3 ms) before the true onset.
ONSET_LAG = 0.0075


def frame_db(wav: np.ndarray, sample_rate: int = EVAL_SAMPLE_RATE) -> np.ndarray:
    """RMS level in dBFS of consecutive 10 ms frames."""
    hop = round(HOP_SECONDS * sample_rate)
    n = len(wav) // hop
    frames = wav[: n * hop].reshape(n, hop).astype(np.float64)
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)


def mel_db(wav: np.ndarray, sample_rate: int = EVAL_SAMPLE_RATE) -> np.ndarray:
    """Log-mel power in dB `[frames, 64]`, one frame per 10 ms (frame k centred at k * 10 ms),
    floored at BAND_FLOOR_DB."""
    hop = round(HOP_SECONDS * sample_rate)
    x = torch.tensor(wav, dtype=torch.float32)[None]  # a copy: wav may be read-only
    # mel_power's hop is n_fft / 4: n_fft = 4 hops makes it 10 ms.
    power = mel_power(x, sample_rate, n_fft=4 * hop, n_mels=_N_MELS)[0].T.double()
    return np.maximum((10 * torch.log10(power + 1e-12)).numpy(), BAND_FLOOR_DB)


def detect_onsets(spec: np.ndarray) -> np.ndarray:
    """Times (seconds) where a sound starts in `mel_db`'s output: peaks of the rise of the
    spectrum (mean over the ONSET_BANDS bands rising most), at least ONSET_RISE_DB high,
    ONSET_MIN_GAP apart."""
    if len(spec) < 2:
        return np.zeros(0)
    rise = np.zeros(len(spec))
    band_rise = np.sort(spec[1:] - spec[:-1], axis=1)[:, -ONSET_BANDS:]
    rise[1:] = np.maximum(band_rise, 0).mean(axis=1)
    # The last frames' windows run past the end (padded by reflection): no onset is read there.
    rise[-2:] = 0
    onsets: list[int] = []
    gap = round(ONSET_MIN_GAP / HOP_SECONDS)
    for k in np.argsort(-rise, kind="stable"):
        if rise[k] < ONSET_RISE_DB:
            break
        if all(abs(k - j) >= gap for j in onsets):
            onsets.append(int(k))
    return np.sort(np.asarray(onsets, dtype=np.float64)) * HOP_SECONDS + ONSET_LAG


@dataclass
class OnsetCounts:
    """Onset matching tallies, summed over clips."""

    matched: int = 0
    detected: int = 0
    reference: int = 0
    offset_ms_total: float = 0.0  # sum over reference events of the capped nearest distance

    def add(self, detected: np.ndarray, reference: np.ndarray, tolerance: float) -> None:
        self.matched += match_onsets(detected, reference, tolerance)
        self.detected += len(detected)
        self.reference += len(reference)
        self.offset_ms_total += float(np.sum(nearest_distance_ms(detected, reference)))

    @property
    def f1(self) -> float:
        total = self.detected + self.reference
        return 2 * self.matched / total if total else 1.0

    @property
    def precision(self) -> float:
        return self.matched / self.detected if self.detected else 0.0

    @property
    def recall(self) -> float:
        return self.matched / self.reference if self.reference else 1.0

    @property
    def offset_ms(self) -> float:
        return self.offset_ms_total / self.reference if self.reference else 0.0


def match_onsets(detected: np.ndarray, reference: np.ndarray, tolerance: float) -> int:
    """One-to-one matches within `tolerance` seconds, closest pairs first."""
    pairs = sorted(
        (abs(d - r), i, j)
        for i, d in enumerate(detected)
        for j, r in enumerate(reference)
        if abs(d - r) <= tolerance
    )
    used_d, used_r = set(), set()
    for _, i, j in pairs:
        if i not in used_d and j not in used_r:
            used_d.add(i)
            used_r.add(j)
    return len(used_d)


def nearest_distance_ms(detected: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per reference event, ms to the nearest detected onset, capped at OFFSET_CAP_MS."""
    if len(detected) == 0:
        return np.full(len(reference), OFFSET_CAP_MS)
    gaps = np.abs(np.asarray(reference)[:, None] - np.asarray(detected)[None, :]).min(axis=1)
    return np.minimum(gaps * 1000, OFFSET_CAP_MS)


def silence_ratio(wav: np.ndarray, sample_rate: int = EVAL_SAMPLE_RATE) -> float:
    levels = frame_db(wav, sample_rate)
    return float(np.mean(levels < SILENCE_DB)) if len(levels) else 1.0


def clipping_ratio(wav: np.ndarray) -> float:
    return float(np.mean(np.abs(wav) >= CLIPPING_LEVEL)) if len(wav) else 0.0


JUDGE_WINDOW = 0.1  # seconds of sound after an onset that the class judge listens to


def _after(onset: float, n_frames: int) -> slice:
    """The 10 ms frames of the JUDGE_WINDOW after `onset` (the last frame, past the end)."""
    k = min(max(0, round(onset / HOP_SECONDS)), max(0, n_frames - 1))
    return slice(k, k + round(JUDGE_WINDOW / HOP_SECONDS))


def event_features(spec: np.ndarray, onsets: np.ndarray) -> np.ndarray:
    """What the class judge hears of each sound: the mean log-mel spectrum (dB, floored) of
    the JUDGE_WINDOW after its onset, `[len(onsets), 64]`; `spec` is `mel_db`'s output."""
    rows = [spec[_after(onset, len(spec))].mean(axis=0) for onset in onsets]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), spec.shape[1])


def sounding(
    wav: np.ndarray, onsets: np.ndarray, sample_rate: int = EVAL_SAMPLE_RATE
) -> np.ndarray:
    """Whether anything is heard in the JUDGE_WINDOW after each onset: a 10 ms frame there
    louder than SILENCE_DB (the judge names a class for silence too; silence is no sound)."""
    levels = frame_db(wav, sample_rate)
    heard = [
        len(levels) > 0 and levels[_after(onset, len(levels))].max() > SILENCE_DB
        for onset in onsets
    ]
    return np.asarray(heard, dtype=bool)


class ClassJudge:
    """Nearest class centroid of standardised `event_features`: fitted on the sounds of real
    audio, it says which class each sound of a clip sounds like; the clip gets the majority."""

    def __init__(self, features: np.ndarray, labels: list[str]) -> None:
        if not len(labels):
            raise ValueError("the class judge needs labelled sounds")
        self.mean = features.mean(axis=0)
        self.scale = features.std(axis=0) + 1e-6
        z = (features - self.mean) / self.scale
        self.classes = sorted(set(labels))
        self.centroids = np.stack(
            [z[[lab == c for lab in labels]].mean(axis=0) for c in self.classes]
        )

    def predict(self, features: np.ndarray) -> list[str]:
        if not len(features):
            return []
        z = (np.atleast_2d(features) - self.mean) / self.scale
        d = ((z[:, None, :] - self.centroids[None]) ** 2).sum(axis=-1)
        return [self.classes[i] for i in d.argmin(axis=1)]

    def clip_label(self, spec: np.ndarray, onsets: np.ndarray) -> str | None:
        """The class most of the clip's sounds are heard as (None: no sound detected)."""
        votes = Counter(self.predict(event_features(spec, onsets)))
        return votes.most_common(1)[0][0] if votes else None


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to the rows of `a` and of `b`."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr sqrt(A B) = tr sqrt(sqrt(A) B sqrt(A)), whose argument is symmetric: eigh is stable.
    root_a = _psd_sqrt(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((m + m.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
