"""Cutting a clip of any length into the model's windows, overlapping so each window continues
the last one.

A model is trained on windows of a few seconds (`vab train --clip-seconds`); attention cost grows
with the square of the length, and a model has never seen longer sequences. So a long video is
generated window by window: each window starts on a visual frame (as in training), its audio
starts at the nearest token frame, and it overlaps the previous window by `context` seconds whose
tokens are already decided and stay fixed, so timbre and rhythm carry over the seam. The last
window ends exactly at the clip's end (overlapping more if need be), so every window is full
length and the model never sees a stub.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """One window: visual frames `[visual_start, visual_end)`, audio frames
    `[audio_start, audio_end)` of the clip's grids."""

    visual_start: int
    visual_end: int
    audio_start: int
    audio_end: int


@dataclass(frozen=True)
class WindowPlan:
    seconds: float  # window length
    context: float  # overlap with the previous window
    visual_fps: float
    audio_frame_rate: float

    def __post_init__(self) -> None:
        if self.seconds <= 0 or not 0 <= self.context < self.seconds:
            raise ValueError(
                f"need window > 0 and 0 <= context < window, got window {self.seconds:g} s "
                f"and context {self.context:g} s"
            )

    def spans(self, n_visual: int, n_audio: int) -> list[Span]:
        """Windows covering a clip with `n_visual` feature frames and `n_audio` token frames."""
        win_v = max(1, round(self.seconds * self.visual_fps))
        win_a = max(1, round(self.seconds * self.audio_frame_rate))
        if n_visual <= win_v and n_audio <= win_a:
            return [Span(0, n_visual, 0, n_audio)]
        hop = max(1, round((self.seconds - self.context) * self.visual_fps))
        last = max(0, n_visual - win_v)
        starts = list(range(0, last, hop)) + [last]
        spans = []
        for i, start in enumerate(starts):
            audio_start = min(self._audio_frame(start), n_audio - 1)
            # The last window takes the audio to its very end: ceil(duration x rate) frames can
            # reach a frame or two past the visual grid's round(duration x fps).
            audio_end = n_audio if i == len(starts) - 1 else min(n_audio, audio_start + win_a)
            spans.append(Span(start, min(n_visual, start + win_v), audio_start, audio_end))
        return spans

    def _audio_frame(self, visual_frame: int) -> int:
        return round(visual_frame / self.visual_fps * self.audio_frame_rate)
