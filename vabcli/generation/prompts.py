"""Which audio tokens to generate: all of them, all after a kept prompt, or only silent gaps.

The masked model fills any pattern of masked tokens given the rest (the in-context ability of
VAB's objective), so audio prompting is only a matter of which tokens start known.
"""

from __future__ import annotations

import numpy as np


def token_grid(n_codebooks: int, n_frames: int, mask_id: int) -> np.ndarray:
    """An all-masked grid `[K, T]` int64: generate everything."""
    return np.full((n_codebooks, n_frames), mask_id, dtype=np.int64)


def keep_prompt(grid: np.ndarray, original: np.ndarray, n_keep: int) -> np.ndarray:
    """The first `n_keep` token frames come from `original` `[K, T']`; the rest stay masked."""
    n = min(n_keep, grid.shape[1], original.shape[1])
    out = grid.copy()
    out[:, :n] = original[:, :n]
    return out


def silent_frames(
    wav: np.ndarray, hop: int, n_frames: int, threshold_db: float, min_frames: int
) -> np.ndarray:
    """`[n_frames]` bool: token frames inside a stretch of at least `min_frames` frames whose
    RMS level is below `threshold_db` dBFS (short dips inside a sound are not gaps)."""
    padded = np.zeros(n_frames * hop, dtype=np.float32)
    n = min(len(wav), len(padded))
    padded[:n] = wav[:n]
    rms = np.sqrt(np.mean(padded.reshape(n_frames, hop) ** 2, axis=1))
    quiet = 20 * np.log10(np.maximum(rms, 1e-10)) < threshold_db
    return _runs_at_least(quiet, min_frames)


def _runs_at_least(flags: np.ndarray, length: int) -> np.ndarray:
    out = np.zeros_like(flags)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(np.int8), [0]])))
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        if end - start >= length:
            out[start:end] = True
    return out


def fill_gaps(grid: np.ndarray, original: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """Original tokens everywhere except the `gaps` `[T]` frames, which stay masked."""
    out = grid.copy()
    n = min(grid.shape[1], original.shape[1])
    keep = ~gaps[:n]
    out[:, :n][:, keep] = original[:, :n][:, keep]
    return out
