"""Window plans: every audio frame kept by exactly one window, none longer than the trained one,
pictures and sound of a window starting together, overlapping by the context."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vabcli.generation.windows import Span, WindowPlan

PLAN = WindowPlan(seconds=4.0, context=1.0, visual_fps=8.0, audio_frame_rate=75.0)


def test_a_short_clip_is_one_window():
    assert PLAN.spans(4, 38) == [Span(0, 4, 0, 38, 38)]


def check_plan(plan: WindowPlan, n_visual: int, n_audio: int) -> list[Span]:
    """The plan's spans, after checking what every plan must hold."""
    spans = plan.spans(n_visual, n_audio)
    kept = 0
    for i, span in enumerate(spans):
        # no frame between two windows: a window starts no later than the last one stopped keeping
        assert span.audio_start <= kept < span.keep_end <= span.audio_end <= n_audio
        kept = span.keep_end
        # never longer than the trained window, never empty
        assert 0 < span.audio_end - span.audio_start <= plan.n_audio
        assert 0 <= span.visual_start < span.visual_end <= n_visual
        assert span.visual_end - span.visual_start <= plan.n_visual
        if 0 < i:
            assert span.audio_start > spans[i - 1].audio_start
    assert kept == n_audio  # every frame kept by exactly one window: [0, keep_end_0), ...
    if len(spans) > 1:
        # full length, no stub (the last window short by less than a visual frame: it starts on one)
        frame = math.ceil(plan.audio_frame_rate / plan.visual_fps)
        assert all(s.audio_end - s.audio_start == plan.n_audio for s in spans[:-1])
        assert spans[-1].audio_end - spans[-1].audio_start > plan.n_audio - frame
    return spans


def test_a_long_clip_with_context_overlaps_and_aligns():
    n_visual, n_audio = round(17.3 * 8), math.ceil(17.3 * 75)
    spans = check_plan(PLAN, n_visual, n_audio)
    for before, after in zip(spans, spans[1:], strict=False):
        assert before.keep_end - after.audio_start >= 75  # the context is decided already
    for span in spans:
        # the sound starts where the window's first picture is shown (nearest token frame)
        assert span.audio_start == round(span.visual_start / 8 * 75)
    assert spans[-1].audio_end == n_audio


def test_without_context_no_frame_falls_between_windows():
    """The old plan rounded each window's audio start from its visual start: with no context,
    frames between one window's end and the next one's start were never decided (10 s at 8 fps,
    3.2 s windows)."""
    plan = WindowPlan(seconds=3.2, context=0.0, visual_fps=8.0, audio_frame_rate=75.0)
    spans = check_plan(plan, 80, 750)
    assert len(spans) == 4


def test_a_lookahead_leaves_a_windows_last_tokens_to_the_next():
    plan = WindowPlan(4.0, 1.0, 8.0, 75.0, lookahead=0.5)
    spans = check_plan(plan, 80, 750)
    for before, after in zip(spans, spans[1:], strict=False):
        assert before.audio_end - before.keep_end == round(0.5 * 75)
        assert before.keep_end - after.audio_start >= 75


def test_ten_minutes_take_as_many_windows_as_the_hop_needs():
    spans = check_plan(PLAN, 600 * 8, 600 * 75)
    assert len(spans) == math.ceil((600 - 4) / 3) + 1


def test_bad_plans_are_refused():
    with pytest.raises(ValueError, match="context"):
        WindowPlan(seconds=2.0, context=2.0, visual_fps=8.0, audio_frame_rate=75.0)
    with pytest.raises(ValueError, match="less than one visual frame"):
        WindowPlan(seconds=0.2, context=0.1, visual_fps=8.0, audio_frame_rate=75.0)


FRAME_RATES = st.one_of(
    st.sampled_from([8.0, 23.976, 24.0, 25.0, 29.97, 30.0, 59.94, 60.0]),
    st.floats(min_value=12.0, max_value=60.0),  # any rate a model's features may be taken at
    st.floats(min_value=1.0, max_value=12.0),
)
AUDIO_RATES = st.sampled_from([75.0, 50.0, 40.0, 86.1328125, 12.5])


@st.composite
def plans_and_clips(draw):
    fps, rate = draw(FRAME_RATES), draw(AUDIO_RATES)
    # a window at least two frames of each grid long; a context from none to half the window
    shortest = 2 / min(fps, rate) + 1 / rate
    seconds = draw(st.floats(min_value=shortest, max_value=12.0))
    context = draw(st.floats(min_value=0.0, max_value=0.5)) * seconds
    lookahead = draw(st.sampled_from([0.0, 0.0, 0.1, 0.25])) * seconds
    try:
        plan = WindowPlan(seconds, context, fps, rate, lookahead)
    except ValueError:  # too short for its context at this frame rate: refused, in one line
        plan = WindowPlan(seconds, 0.0, fps, rate)
    duration = draw(st.floats(min_value=0.1, max_value=600.0))
    # the grids a clip of `duration` has: ffmpeg's frame count and the codec's, each maybe a
    # frame off the exact product (rounding, a last partial frame, a short stream)
    n_visual = max(1, round(duration * fps) + draw(st.integers(-1, 1)))
    n_audio = max(1, math.ceil(duration * rate) + draw(st.integers(-1, 1)))
    return plan, n_visual, n_audio


@settings(max_examples=400, deadline=None)
@given(plans_and_clips())
def test_every_plan_keeps_each_audio_frame_once_within_trained_windows(case):
    plan, n_visual, n_audio = case
    spans = check_plan(plan, n_visual, n_audio)
    if len(spans) > 1:
        for before, after in zip(spans, spans[1:], strict=False):
            # the context is already decided when a window starts (less only by a frame's rounding)
            assert before.keep_end - after.audio_start >= round(
                plan.context * plan.audio_frame_rate
            )


@pytest.mark.parametrize("lookahead", [0.0, 0.5])
def test_a_ten_second_clip_without_context_is_sampled_to_the_last_token(lookahead):
    """`vab generate --context 0 --window 3.2` on 10 s at 8 fps left tokens masked (and died on
    the check that none is): sampled window by window, a real (tiny) model leaves none now."""
    import torch

    from vabcli.config import SamplingOptions, model_config
    from vabcli.generation.windowed import WindowSampler
    from vabcli.model.transformer import VabModel

    cfg = model_config("tiny", visual_dim=8, n_codebooks=2, codebook_size=16)
    torch.manual_seed(0)
    sampler = WindowSampler(VabModel(cfg).eval(), SamplingOptions(steps=2))
    plan = WindowPlan(3.2, 0.0, cfg.visual_fps, cfg.audio_frame_rate, lookahead)
    codes = torch.full((2, 750), cfg.mask_id)
    clip = sampler.new_clip(torch.randn(80, 8), codes, plan, seed=1)
    while not clip.finished:
        sampler.advance([clip])
    assert not (clip.codes == cfg.mask_id).any() and clip.done == len(clip.spans) == 4
