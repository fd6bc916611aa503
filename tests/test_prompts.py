"""Which tokens are generated: all, after a kept prompt, or only in silent gaps."""

from __future__ import annotations

import numpy as np

from vabcli.generation.prompts import fill_gaps, keep_prompt, silent_frames, token_grid

MASK = 1024


def test_keep_prompt_and_fill_gaps_choose_the_masked_tokens():
    original = np.arange(4 * 10).reshape(4, 10)
    grid = token_grid(4, 10, MASK)
    assert (grid == MASK).all()
    kept = keep_prompt(grid, original, 3)
    assert (kept[:, :3] == original[:, :3]).all() and (kept[:, 3:] == MASK).all()
    gaps = np.zeros(10, dtype=bool)
    gaps[4:7] = True
    filled = fill_gaps(grid, original, gaps)
    assert (filled[:, gaps] == MASK).all() and (filled[:, ~gaps] == original[:, ~gaps]).all()


def test_silent_frames_finds_long_quiet_stretches_only():
    hop, sr = 320, 24_000
    t = np.arange(sr * 2) / sr
    wav = 0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    wav[int(0.5 * sr) : int(1.0 * sr)] = 0  # a 0.5 s gap
    wav[int(1.5 * sr) : int(1.52 * sr)] = 0  # a 20 ms dip: not a gap
    n_frames = len(wav) // hop
    gaps = silent_frames(wav, hop, n_frames, threshold_db=-50, min_frames=15)
    frames = np.flatnonzero(gaps)
    assert 36 <= frames.size <= 38 and frames[0] >= 37 and frames[-1] <= 75
    assert not gaps[112:115].any()
