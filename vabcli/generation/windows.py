"""Cutting a clip of any length into the model's windows, overlapping so each window continues
the last one.

A model is trained on windows of a few seconds (`vab train --clip-seconds`); attention cost grows
with the square of the length, and a model has never seen longer sequences. So a long video is
generated window by window, each window exactly as in training: it starts on a visual frame, its
audio at the nearest token frame (so the pictures and the sound of a window start at the same
instant), and it is never longer than the trained window at either rate.

Each window keeps the tokens it decides up to `keep_end`; the next one starts `context` seconds
before that, so those tokens, already decided, carry timbre and rhythm over the seam. With a
`lookahead`, a window keeps only the tokens that had that much of the window after them (a token
at a window's very end is decided blind to what follows): the rest are decided again by the next
window, which sees past them. The last window ends exactly at the clip's end, starting earlier
(overlapping more) if need be, so every window of a long clip is full length and the model never
sees a stub. Every audio frame is kept by exactly one window, and a window starts no later than
where the one before stopped keeping, so no frame falls between two windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """One window: visual frames `[visual_start, visual_end)` and audio frames
    `[audio_start, audio_end)` of the clip's grids; its sampled tokens in
    `[audio_start, keep_end)` are kept (those before were decided by earlier windows and stay)."""

    visual_start: int
    visual_end: int
    audio_start: int
    audio_end: int
    keep_end: int


@dataclass(frozen=True)
class WindowPlan:
    seconds: float  # window length
    context: float  # overlap with what the previous window kept
    visual_fps: float
    audio_frame_rate: float
    lookahead: float = 0.0  # future a kept token had within its window, seconds

    def __post_init__(self) -> None:
        if self.seconds <= 0 or not 0 <= self.context < self.seconds:
            raise ValueError(
                f"need window > 0 and 0 <= context < window, got window {self.seconds:g} s "
                f"and context {self.context:g} s"
            )
        if self.lookahead < 0:
            raise ValueError(f"lookahead must be >= 0, got {self.lookahead:g} s")
        # Windows start on visual frames: each must get at least one frame further than the last.
        step = self.n_audio - self._frames(self.context) - self._frames(self.lookahead)
        if step < math.ceil(self.audio_frame_rate / self.visual_fps):
            raise ValueError(
                f"a window of {self.seconds:g} s with {self.context:g} s context and "
                f"{self.lookahead:g} s lookahead leaves less than one visual frame "
                f"(1/{self.visual_fps:g} s) of new audio per window"
            )

    @property
    def n_visual(self) -> int:
        """Visual frames of a full window (as `training.dataset.WindowLength` crops them)."""
        return max(1, round(self.seconds * self.visual_fps))

    @property
    def n_audio(self) -> int:
        """Token frames of a full window."""
        return max(1, self._frames(self.seconds))

    def spans(self, n_visual: int, n_audio: int) -> list[Span]:
        """Windows covering a clip with `n_visual` feature frames and `n_audio` token frames."""
        if n_audio <= self.n_audio:
            return [Span(0, min(n_visual, self.n_visual), 0, n_audio, n_audio)]
        context, lookahead = self._frames(self.context), self._frames(self.lookahead)
        spans = [self._span(0, n_visual, n_audio, lookahead)]
        while spans[-1].keep_end < n_audio:
            start = self._last_frame_starting_by(spans[-1].keep_end - context)
            if self._audio_frame(start) + self.n_audio >= n_audio:  # the last window
                start = self._first_frame_starting_from(n_audio - self.n_audio)
            assert start > spans[-1].visual_start, "WindowPlan's check keeps windows moving"
            spans.append(self._span(start, n_visual, n_audio, lookahead))
        return spans

    def _span(self, start: int, n_visual: int, n_audio: int, lookahead: int) -> Span:
        audio_start = self._audio_frame(start)
        audio_end = min(n_audio, audio_start + self.n_audio)
        keep_end = n_audio if audio_end == n_audio else audio_end - lookahead
        visual_start = min(start, n_visual - 1)  # a visual grid a frame short of the audio's
        return Span(
            visual_start, min(n_visual, start + self.n_visual), audio_start, audio_end, keep_end
        )

    def _frames(self, seconds: float) -> int:
        return round(seconds * self.audio_frame_rate)

    def _audio_frame(self, visual_frame: int) -> int:
        """The token frame a window starting on `visual_frame` starts on (as training crops)."""
        return round(visual_frame / self.visual_fps * self.audio_frame_rate)

    def _last_frame_starting_by(self, audio_frame: int) -> int:
        """The last visual frame whose window's audio starts at or before `audio_frame`."""
        frame = max(0, math.floor(audio_frame / self.audio_frame_rate * self.visual_fps) + 1)
        while frame > 0 and self._audio_frame(frame) > audio_frame:
            frame -= 1
        return frame

    def _first_frame_starting_from(self, audio_frame: int) -> int:
        """The first visual frame whose window's audio starts at or after `audio_frame`."""
        frame = max(0, math.ceil(audio_frame / self.audio_frame_rate * self.visual_fps) - 1)
        while self._audio_frame(frame) < audio_frame:
            frame += 1
        return frame
