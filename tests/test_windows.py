"""Window plans: cover the clip, overlap by the context, full-length windows, aligned rates."""

from __future__ import annotations

import math

import pytest

from vabcli.generation.windows import Span, WindowPlan

PLAN = WindowPlan(seconds=4.0, context=1.0, visual_fps=8.0, audio_frame_rate=75.0)


def test_a_short_clip_is_one_window():
    assert PLAN.spans(4, 38) == [Span(0, 4, 0, 38)]


@pytest.mark.parametrize("seconds", [4.2, 10.0, 17.3, 600.0])
def test_long_clips_are_covered_by_overlapping_full_windows(seconds):
    n_visual, n_audio = round(seconds * 8), math.ceil(seconds * 75)
    spans = PLAN.spans(n_visual, n_audio)
    assert spans[0].audio_start == 0 and spans[-1].audio_end == n_audio
    assert spans[-1].visual_end == n_visual
    for before, after in zip(spans, spans[1:], strict=False):
        overlap = before.audio_end - after.audio_start
        assert overlap >= 75  # at least the context is already decided when a window starts
        assert after.audio_start > before.audio_start
    for span in spans:
        assert span.visual_end - span.visual_start == 32  # every window is full length
        # 4 s of audio, give or take the visual frame the clip's length is rounded to
        assert abs(span.audio_end - span.audio_start - 300) <= 75 / 8
        # audio starts where the window's first frame is shown (nearest token frame)
        assert span.audio_start == round(span.visual_start / 8 * 75)
    if seconds == 600.0:
        assert len(spans) == math.ceil((600 - 4) / 3) + 1


def test_bad_plans_are_refused():
    with pytest.raises(ValueError, match="context"):
        WindowPlan(seconds=2.0, context=2.0, visual_fps=8.0, audio_frame_rate=75.0)
