"""A synthetic audio-visual world with ground truth, for `vab synth`, `vab eval` and the bundled
model.

A clip shows one to three objects over a textured background. Each object belongs to one of
`CLASSES`, which ties a look (shape, colour, texture) to a sound. Droppers hang, fall and strike
the floor line; flashers light up. Each sound starts at exactly that visible moment (an "event"),
with silence between. Everything about a clip follows from (seed, index), so a data set is
reproducible clip by clip and can be made in any order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SYNTH_SAMPLE_RATE = 16_000
FRAME_RATES = ("24000/1001", "30", "25", "30000/1001", "24", "50", "60", "15", "12")
SIZES = ((320, 240), (320, 180), (256, 144), (240, 240), (192, 144), (384, 216), (180, 320))
MIN_EVENT_GAP = 0.25  # between any two sounds of a clip, seconds: onsets stay separable
FALL_SECONDS = 0.35  # a dropper's fall from its hanging height to the floor
FLASH_SECONDS = 0.15  # a flasher's light decays with this time constant

Sound = Callable[[np.random.Generator, np.ndarray], np.ndarray]  # (rng, t seconds) -> samples


def _tone(freqs: tuple[float, ...], weights: tuple[float, ...]) -> Callable:
    def partials(t: np.ndarray, detune: float) -> np.ndarray:
        return sum(
            w * np.sin(2 * np.pi * f * detune * t) for f, w in zip(freqs, weights, strict=True)
        )

    return partials


def _noise(rng: np.random.Generator, n: int, smooth: int) -> np.ndarray:
    """White noise, low-passed by a moving average of `smooth` samples (1 = white)."""
    x = rng.standard_normal(n + smooth)
    return np.convolve(x, np.ones(smooth) / np.sqrt(smooth), "valid")[:n]


def _ball(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    pitch = (60 + 140 * np.exp(-t / 0.04)) * rng.uniform(0.95, 1.05)
    return np.sin(2 * np.pi * np.cumsum(pitch) / SYNTH_SAMPLE_RATE) * np.exp(-t / 0.08)


def _drum(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    body = 0.6 * np.sin(2 * np.pi * 95 * rng.uniform(0.97, 1.03) * t)
    return (0.5 * _noise(rng, len(t), 12) + body) * np.exp(-t / 0.06)


def _bell(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    return _tone((1320, 3643), (1.0, 0.5))(t, rng.uniform(0.98, 1.02)) * np.exp(-t / 0.3)


def _glass(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    partials = _tone((3200, 4700, 6100), (1.0, 0.7, 0.3))(t, rng.uniform(0.98, 1.02))
    return partials * np.exp(-t / 0.07)


def _lamp(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    # A mains buzz: a 120 Hz sawtooth from its first 24 harmonics.
    harmonics = tuple(120.0 * k for k in range(1, 25))
    saw = _tone(harmonics, tuple(1 / k for k in range(1, 25)))(t, rng.uniform(0.99, 1.01))
    return 0.6 * saw * np.exp(-t / 0.15)


def _beeper(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    square = np.tanh(4 * np.sin(2 * np.pi * 900 * rng.uniform(0.98, 1.02) * t))
    return 0.7 * square


def _clap(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    return np.diff(_noise(rng, len(t) + 1, 1)) * 0.5 * np.exp(-t / 0.02)


@dataclass(frozen=True)
class SoundClass:
    name: str
    shape: str  # circle, square, triangle, diamond, disc, striped, cross
    colour: tuple[int, int, int]
    motion: str  # "drop" (strikes the floor) or "flash" (lights up)
    seconds: float  # length of one sound
    sound: Sound


CLASSES: tuple[SoundClass, ...] = (
    SoundClass("ball", "circle", (220, 40, 40), "drop", 0.4, _ball),
    SoundClass("drum", "square", (40, 80, 230), "drop", 0.35, _drum),
    SoundClass("bell", "triangle", (235, 210, 40), "drop", 1.2, _bell),
    SoundClass("glass", "diamond", (60, 220, 230), "drop", 0.4, _glass),
    SoundClass("lamp", "disc", (255, 150, 30), "flash", 0.6, _lamp),
    SoundClass("beeper", "striped", (40, 210, 70), "flash", 0.22, _beeper),
    SoundClass("clap", "cross", (220, 60, 220), "drop", 0.15, _clap),
)
CLASS_NAMES = tuple(c.name for c in CLASSES)
_BY_NAME = {c.name: c for c in CLASSES}


@dataclass(frozen=True)
class Source:
    """One object of a clip: its class, where it is (slot of `n_slots`) and when it sounds."""

    label: str
    events: tuple[float, ...]
    slot: int = 0
    n_slots: int = 1


@dataclass(frozen=True)
class Scene:
    """Everything that decides a clip."""

    duration: float  # seconds, a whole number of frames
    fps: str  # ffmpeg rate string
    width: int
    height: int
    sources: tuple[Source, ...]
    background: tuple[int, int, int]
    texture_seed: int

    @property
    def events(self) -> list[float]:
        return sorted(e for s in self.sources for e in s.events)

    @property
    def label(self) -> str:
        """The class that sounds most often (`sample_scene` makes it unique)."""
        return max(self.sources, key=lambda s: len(s.events)).label


def fps_value(fps: str) -> float:
    num, _, den = fps.partition("/")
    return float(num) / float(den or 1)


def sample_scene(
    seed: int, index: int, min_duration: float, max_duration: float, stream: int = 0
) -> Scene:
    """The scene of clip `index` of the data set `seed`. `stream` > 0 names scene streams of
    their own (the encoders' training data), never equal to any `vab synth` data set."""
    rng = np.random.default_rng([seed, index, stream] if stream else [seed, index])
    fps = str(rng.choice(FRAME_RATES))
    width, height = SIZES[rng.integers(len(SIZES))]
    n_frames = max(1, round(rng.uniform(min_duration, max_duration) * fps_value(fps)))
    duration = n_frames / fps_value(fps)
    n_sources = int(rng.choice([1, 2, 3], p=[0.7, 0.2, 0.1]))
    labels = rng.choice(len(CLASSES), size=n_sources, replace=False)
    taken: list[float] = []
    timelines = []
    for _ in labels:
        timelines.append(_sample_events(rng, duration, taken))
        taken += timelines[-1]
    # One class must sound most often, or a clip's label would be a coin toss: the others
    # drop their last sounds until the first of the busiest is ahead.
    lead = max(range(n_sources), key=lambda i: len(timelines[i]))
    for i, events in enumerate(timelines):
        while i != lead and len(events) >= len(timelines[lead]):
            events.pop()
    sources = [
        Source(CLASS_NAMES[label], tuple(events), slot, n_sources)
        for slot, (label, events) in enumerate(zip(labels, timelines, strict=True))
    ]
    background = tuple(int(v) for v in rng.integers(15, 100, size=3))
    return Scene(
        duration, fps, int(width), int(height), tuple(sources), background, int(rng.integers(2**31))
    )


def _sample_events(rng: np.random.Generator, duration: float, taken: list[float]) -> list[float]:
    """Event times at 0.6-3 s spacing, MIN_EVENT_GAP clear of the clip's other events."""
    events: list[float] = []
    t = rng.uniform(0.2, 1.5)
    while t < duration - 0.1:
        if all(abs(t - u) >= MIN_EVENT_GAP for u in taken):
            events.append(round(t, 4))
        t += rng.uniform(0.6, 3.0)
    if not events:  # every clip sounds at least once
        t = rng.uniform(0.1, max(0.1, duration - 0.1))
        if all(abs(t - u) >= MIN_EVENT_GAP for u in taken):
            events.append(round(t, 4))
    return events


# --- sound --------------------------------------------------------------------------------------


def render_audio(scene: Scene, sample_rate: int = SYNTH_SAMPLE_RATE) -> np.ndarray:
    """The clip's soundtrack: float32 mono, exactly as long as the video, silence between events."""
    if sample_rate != SYNTH_SAMPLE_RATE:
        raise ValueError(f"the world sounds at {SYNTH_SAMPLE_RATE} Hz")
    rng = np.random.default_rng(scene.texture_seed)
    out = np.zeros(round(scene.duration * sample_rate), dtype=np.float64)
    for source in scene.sources:
        cls = _BY_NAME[source.label]
        for event in source.events:
            start = round(event * sample_rate)
            n = min(round(cls.seconds * sample_rate), len(out) - start)
            if n <= 0:
                continue
            t = np.arange(n) / sample_rate
            # A 2 ms attack keeps the onset sharp without a click; a 10 ms release keeps the end
            # of a cut-off sound from clicking (a click would read as a second onset).
            ramp = np.minimum(np.minimum(1.0, t / 0.002), (cls.seconds - t) / 0.01)
            out[start : start + n] += rng.uniform(0.35, 0.7) * cls.sound(rng, t) * ramp
    return np.clip(out, -0.95, 0.95).astype(np.float32)


# --- pictures -----------------------------------------------------------------------------------


def _sprite(shape: str, size: int) -> np.ndarray:
    """A boolean [size, size] mask of `shape` (striped marks the dark stripes as False)."""
    y, x = (np.mgrid[0:size, 0:size] + 0.5) / size * 2 - 1  # [-1, 1]
    if shape == "circle":
        return x**2 + y**2 <= 1
    if shape == "disc":  # a lamp: a disc with a dark centre ring
        r2 = x**2 + y**2
        return (r2 <= 1) & ~((r2 > 0.3) & (r2 < 0.45))
    if shape == "square":
        return np.ones((size, size), dtype=bool)
    if shape == "striped":
        return (np.floor((x + 1) * 3) % 2 == 0) | (np.abs(y) > 0.8)
    if shape == "triangle":
        return (y >= -1) & (np.abs(x) <= (y + 1) / 2)
    if shape == "diamond":
        return np.abs(x) + np.abs(y) <= 1
    if shape == "cross":
        return (np.abs(x) < 0.3) | (np.abs(y) < 0.3)
    raise ValueError(f"unknown shape {shape!r}")


def drop_height(t: float, events: tuple[float, ...]) -> float:
    """A dropper's height over the floor in [0, 1]: 0 exactly at its events, 1 while hanging.

    It falls for FALL_SECONDS (accelerating) onto each event and rebounds as long after it.
    """
    height = 1.0
    for event in events:
        x = abs(t - event) / FALL_SECONDS
        if x < 1:
            height = min(height, 1 - (1 - x) ** 2)
    return height


def flash_level(t: float, events: tuple[float, ...]) -> float:
    """A flasher's light in [0, 1]: jumps to 1 at an event and decays."""
    past = [t - e for e in events if e <= t]
    return float(np.exp(-min(past) / FLASH_SECONDS)) if past else 0.0


class Painter:
    """Draws a scene's frames. Objects stay inside the centred square that extract keeps."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        w, h = scene.width, scene.height
        side = min(w, h)
        self.left, self.top, self.side = (w - side) // 2, (h - side) // 2, side
        rng = np.random.default_rng(scene.texture_seed)
        texture = rng.normal(0, 10, size=(h // 4 + 1, w // 4 + 1, 3)).repeat(4, 0).repeat(4, 1)
        base = np.asarray(scene.background, dtype=np.float64) + texture[:h, :w]
        self.floor = self.top + round(0.85 * side)
        base[self.floor : self.floor + max(2, side // 60)] = 170
        self.background = np.clip(base, 0, 255).astype(np.uint8)
        self.sprites = []
        for source in scene.sources:
            size = max(6, round(side * (0.25 if source.n_slots == 1 else 0.18)))
            cls = _BY_NAME[source.label]
            self.sprites.append((source, cls, size, _sprite(cls.shape, size)))

    def square(self, frame: np.ndarray) -> np.ndarray:
        """The centred square of a frame: what extract keeps."""
        return frame[self.top : self.top + self.side, self.left : self.left + self.side]

    def frame(self, t: float) -> np.ndarray:
        """RGB uint8 [height, width, 3] at `t` seconds."""
        img = self.background.copy()
        for source, cls, size, mask in self.sprites:
            centre = self.left + round(self.side * (source.slot + 0.5) / source.n_slots)
            x0 = centre - size // 2
            colour = np.asarray(cls.colour, dtype=np.float64)
            if cls.motion == "drop":
                lift = drop_height(t, source.events) * 0.5 * self.side
                y0 = self.floor - size - round(lift)
            else:
                y0 = self.top + round(0.4 * self.side)
                colour = colour * (0.25 + 0.75 * flash_level(t, source.events))
            region = img[y0 : y0 + size, x0 : x0 + size]
            region[mask[: region.shape[0], : region.shape[1]]] = colour.astype(np.uint8)
        return img


def frame_times(scene: Scene) -> np.ndarray:
    """The start time of each video frame."""
    fps = fps_value(scene.fps)
    return np.arange(round(scene.duration * fps)) / fps


# --- ground truth per moment, for training an image tower ---------------------------------------


def moment_targets(
    sources: list[tuple[str, list[float]]], times: np.ndarray, horizon: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Per time: which classes are in view `[T, C]` (0/1), and per class how far in time the
    picture says its sound is, scaled to [0, 1] over `horizon` seconds `[T, C]` (1 = far).

    What one frame can tell: a dropper's height gives the distance to its nearest strike (not
    whether it is falling or rising), a flasher's light the time since its last flash.
    """
    present = np.zeros((len(times), len(CLASSES)), dtype=np.float32)
    timing = np.ones((len(times), len(CLASSES)), dtype=np.float32)
    for label, events in sources:
        c = CLASS_NAMES.index(label)
        present[:, c] = 1
        if not events:
            continue
        ev = np.asarray(sorted(events))
        prv = np.searchsorted(ev, times, side="right") - 1  # last event at or before t
        behind = np.where(prv >= 0, times - ev[np.maximum(prv, 0)], np.inf)
        if _BY_NAME[label].motion == "drop":
            nxt = np.minimum(prv + 1, len(ev) - 1)
            ahead = np.where(prv + 1 < len(ev), ev[nxt] - times, np.inf)
            behind = np.minimum(behind, ahead)
        timing[:, c] = np.minimum(behind / horizon, 1)
    return present, timing
