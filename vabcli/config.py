"""One home for every rate and size the pipeline agrees on, and the options built from them.

Invariant: an options or config object that exists holds meaningful values. Each dataclass checks
its own fields on construction (finite numbers in range, whole numbers where counts are meant) and
raises ValueError naming the field, which the CLI turns into a usage error (exit 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")

# The EnCodec 24 kHz model is the default audio tokenizer, so audio is decoded at its rate.
CODEC_SAMPLE_RATE = 24_000
# Visual frames per second. The paper samples 1 fps and blames it for weak audio-visual sync.
# Measured (benchmarks/visual_rate.py): 1 fps misses 64% of 0.15-0.6 s events; 8 fps is the
# lowest rate that sees them all, with a 68 ms mean onset error, at 1/3 the cost of 25 fps.
VISUAL_FPS = 8.0
# Frames are resized (shorter side) and centre-cropped to this square: CLIP's input size.
FRAME_SIZE = 224
# The frozen encoders: EnCodec 24 kHz at 3 kbps (4 codebooks x 1024 at 75 frames/s, as close as
# the `encodec` package gets to the paper's 16 kHz 4 x 2048 codec) and an open_clip image tower.
DEFAULT_CODEC = "encodec_24khz"
DEFAULT_BANDWIDTH = 3.0
DEFAULT_IMAGE_ENCODER = "ViT-B-32:openai"
# Seconds of each clip a model trains on (`--clip-seconds`), and so the window it generates and
# embeds by: every checkpoint records its own; one that does not was trained on this.
CLIP_SECONDS = 4.0
# Where `vab generate` (and `vabcli.generate`) write dubbed clips unless told otherwise.
DUBBED_FOLDER = "dubbed"

VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4",
        ".m4v",
        ".mov",
        ".mkv",
        ".webm",
        ".avi",
        ".mpg",
        ".mpeg",
        ".ts",
        ".mts",
        ".m2ts",
        ".wmv",
        ".flv",
        ".3gp",
        ".ogv",
    }
)
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".oga", ".aiff", ".aif"}
)


def check_number(
    name: str,
    value: object,
    low: float,
    high: float,
    *,
    integer: bool = False,
    low_open: bool = False,
) -> None:
    """ValueError unless `value` is a finite number in [low, high] ((low, high] if `low_open`),
    and an int (not a bool) if `integer`. NaN and infinities never pass."""
    kinds = int if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool)
    if ok and not integer:
        ok = math.isfinite(value)  # type: ignore[arg-type]
    if ok:
        ok = (low < value if low_open else low <= value) and value <= high  # type: ignore[operator]
    if not ok:
        what = "a whole number" if integer else "a number"
        bounds = f"{'(' if low_open else '['}{_shown(low)}, {_shown(high)}]"
        raise ValueError(f"{name} must be {what} in {bounds}, got {value!r}")


def _shown(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


@dataclass(frozen=True)
class ExtractOptions:
    """What extract decodes: RGB frames at `fps`, `width`x`height`; mono audio at `sample_rate`."""

    fps: float = VISUAL_FPS
    width: int = FRAME_SIZE
    height: int = FRAME_SIZE
    sample_rate: int = CODEC_SAMPLE_RATE

    def __post_init__(self) -> None:
        check_number("fps", self.fps, 0, 120, low_open=True)
        # Normalise types: fps=25 and fps=25.0 must give the same cache key.
        object.__setattr__(self, "fps", float(self.fps))
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "sample_rate", int(self.sample_rate))
        if not 0 < self.fps <= 120:
            raise ValueError(f"fps must be in (0, 120], got {self.fps}")
        if not (8 <= self.width <= 4096 and 8 <= self.height <= 4096):
            raise ValueError(
                f"size must be between 8 and 4096 pixels, got {self.width}x{self.height}"
            )
        if not 1000 <= self.sample_rate <= 384_000:
            raise ValueError(f"sample rate must be in [1000, 384000] Hz, got {self.sample_rate}")

    def n_frames(self, duration: float) -> int:
        """Frames covering `duration` seconds: the count extract always delivers."""
        return max(1, round(duration * self.fps))

    def n_samples(self, duration: float) -> int:
        return round(duration * self.sample_rate)


def parse_frame_size(text: str) -> tuple[int, int]:
    """A frame size, width by height: `224` -> (224, 224); `320x180` -> (320, 180)."""
    parts = text.lower().split("x")
    try:
        if len(parts) == 1:
            side = int(parts[0])
            return side, side
        if len(parts) == 2:
            return int(parts[0]), int(parts[1])
    except ValueError:
        pass
    raise ValueError(f"size must be N or WxH (e.g. 224 or 320x180), got {text!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Dimensions of the multiway transformer; saved in every checkpoint so it rebuilds itself.

    Time is part of the architecture: visual position k sits at k / visual_fps seconds and audio
    frame j at j / audio_frame_rate, and both get the sinusoidal code of their time in seconds,
    which aligns the two streams at any rate and any length.
    """

    visual_dim: int = 512  # size of one image-encoder feature
    n_codebooks: int = 4  # K
    codebook_size: int = 1024  # V; token id V is [MASK]
    d_model: int = 128
    n_heads: int = 4
    n_multiway: int = 2  # N1: shared attention, per-modality feed-forward experts and norms
    n_shared: int = 2  # N2: ordinary pre-norm blocks
    ffn_mult: int = 4
    dropout: float = 0.0
    visual_fps: float = VISUAL_FPS
    audio_frame_rate: float = 75.0
    # The time code's amplitude. At 1 its norm is sqrt(d_model / 2) (9.8 at d 192) against
    # token embeddings of norm 0.02 sqrt(d_model) (0.28) at initialisation, so a visual and an
    # audio token of one instant start as nearly the same vector; 1 / sqrt(d_model / 2) gives
    # the code unit norm.
    time_scale: float = 1.0

    def __post_init__(self) -> None:
        # Bounds well past the `base` preset: a config.json is data a stranger may hand us, and
        # its sizes are allocated before any weight is read.
        for name, low, high in _MODEL_INTS:
            check_number(name, getattr(self, name), low, high, integer=True)
        check_number("dropout", self.dropout, 0.0, 1.0)
        if self.dropout >= 1.0:
            raise ValueError(f"dropout must be below 1, got {self.dropout}")
        check_number("visual_fps", self.visual_fps, 0, 1000, low_open=True)
        check_number("audio_frame_rate", self.audio_frame_rate, 0, 1000, low_open=True)
        check_number("time_scale", self.time_scale, 0, 100)
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} must divide by n_heads {self.n_heads}")
        if self.d_model % 2:
            raise ValueError("d_model must be even (sinusoidal time code)")

    @property
    def mask_id(self) -> int:
        return self.codebook_size


_MODEL_INTS = (
    ("visual_dim", 1, 65_536),
    ("n_codebooks", 1, 64),
    ("codebook_size", 2, 1 << 20),
    ("d_model", 2, 16_384),
    ("n_heads", 1, 256),
    ("n_multiway", 1, 256),
    ("n_shared", 0, 256),
    ("ffn_mult", 1, 64),
)

# Presets: `tiny` trains on two CPU cores in minutes; `base` is the paper's size (about 400 M
# parameters: d 1024, 16 heads, N1 = N2 = 12, FFN 4d).
MODEL_PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"d_model": 128, "n_heads": 4, "n_multiway": 2, "n_shared": 2},
    "small": {"d_model": 512, "n_heads": 8, "n_multiway": 6, "n_shared": 6},
    "base": {"d_model": 1024, "n_heads": 16, "n_multiway": 12, "n_shared": 12},
}


def unit_time_scale(d_model: int) -> float:
    """The time code's amplitude that gives it unit norm, as a content vector has."""
    return 1 / math.sqrt(d_model / 2)


def model_config(preset: str, **overrides: float | int) -> ModelConfig:
    """A new model's dimensions: the preset's, any single one overridden, and the time code at
    unit norm unless `time_scale` is given. (ModelConfig's own default, amplitude 1, is what
    checkpoints saved before the field existed were trained with.) At unit norm a model learnt
    much faster: 800 steps of the bundled recipe reached validation loss 1.79 against 2.01,
    onset F1 0.72-0.77 against 0.12 (benchmarks/README.md, training options)."""
    if preset not in MODEL_PRESETS:
        raise ValueError(f"unknown preset {preset!r}: one of {', '.join(MODEL_PRESETS)}")
    dims: dict[str, Any] = {**MODEL_PRESETS[preset], **overrides}
    dims.setdefault("time_scale", unit_time_scale(int(dims["d_model"])))
    return ModelConfig(**dims)


@dataclass(frozen=True)
class MaskingConfig:
    """VAB's pre-training corruption: per-sample ratio from a truncated normal, then each of the
    K x T tokens masked independently with that probability (paper: mean 0.55, std 0.25)."""

    mean: float = 0.55
    std: float = 0.25
    low: float = 0.5  # bounds: a choice; follow-up code used [0.5, 1.0]
    high: float = 1.0
    null_condition_prob: float = 0.1  # classifier-free guidance: drop the visual condition
    label_smoothing: float = 0.0
    # Share of samples whose ratio is cos(pi/2 u), u uniform (MaskGIT, SoundStorm, MAGNeT): it
    # reaches the low ratios of a decoding's last steps, which VAB's draw never asks about.
    cosine_share: float = 0.0
    # Share of samples masked for coarse-to-fine decoding (SoundStorm): one codebook level by a
    # cosine ratio, every finer level whole, the coarser ones not; only that level is scored.
    level_share: float = 0.0

    def __post_init__(self) -> None:
        for name in ("mean", "low", "high", "null_condition_prob", "cosine_share", "level_share"):
            check_number(name, getattr(self, name), 0.0, 1.0)
        check_number("std", self.std, 0.0, 10.0, low_open=True)
        check_number("label_smoothing", self.label_smoothing, 0.0, 1.0)
        if self.low >= self.high:
            raise ValueError(f"mask bounds need low < high, got {self.low}, {self.high}")


@dataclass(frozen=True)
class TrainOptions:
    """How a training run goes (`vab train`, `vab finetune`): schedule, optimiser, windows."""

    steps: int = 1000
    batch_size: int = 16  # per rank
    lr: float = 3e-4
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    clip_seconds: float = CLIP_SECONDS  # the window the model learns to generate and embed by
    val_every: int = 100
    seed: int = 0
    workers: int = 2  # loader processes reading cached arrays in the background
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    # Every N steps: a metrics line, and the checks that need the host to wait for the device
    # (loss finite, a stop asked for on any rank), in one collective; between them the steps
    # run without waiting.
    log_every: int = 10
    save_every: int = 0  # also save RUN_DIR/last every N steps between validations (0: never)
    grad_accum: int = 1  # micro-batches (of batch_size clips per rank) summed into each step
    compile: bool = False  # torch.compile the model (pays on CUDA; minutes of compiling on CPU)

    def __post_init__(self) -> None:
        """Refuse values no run can mean (NaN, infinities, a step count of centuries)."""
        for name, low, high in _WHOLE_BOUNDS:
            check_number(name, getattr(self, name), low, high, integer=True)
        check_number("lr", self.lr, 0.0, 10.0, low_open=True)
        check_number("min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        check_number("weight_decay", self.weight_decay, 0.0, 10.0)
        check_number("grad_clip", self.grad_clip, 0.0, 1e6, low_open=True)
        check_number("clip_seconds", self.clip_seconds, 0.1, 3600.0)


# (field, low, high) of TrainOptions' whole numbers
_WHOLE_BOUNDS = (
    ("steps", 1, 10**9),
    ("batch_size", 1, 1 << 16),
    ("warmup_steps", 0, 10**9),
    ("val_every", 1, 10**9),
    ("seed", -(1 << 63), (1 << 63) - 1),
    ("workers", 0, 256),
    ("log_every", 1, 10**9),
    ("save_every", 0, 10**9),
    ("grad_accum", 1, 1 << 16),
)


def dataclass_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """A config dataclass from JSON data; ValueError names unknown keys or rejected values."""
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"unknown keys {', '.join(unknown)}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ValueError(str(exc)) from exc


# Past these the numbers mean nothing: MaskGIT unmasks at least one token per step, so more
# steps than a window's tokens (a few thousand) only repeat the last one; guidance weights
# beyond tens saturate the softmax.
MAX_STEPS = 10_000
MAX_GUIDANCE = 100.0


@dataclass(frozen=True)
class SamplingOptions:
    # From the sweeps in benchmarks/README.md (held-out clips): guidance 2 beats 5 on class,
    # onsets and fd_logmel at every step count (5 overshoots), 0 (unconditional) loses the
    # events. 8 steps with a 0.5 s context (DubOptions) against 16 steps with 1 s, 2 x 100
    # clips of two unseen seeds ("retrained on 5x the clips"): level on onsets and fd_logmel,
    # 0.015 behind on event and clip class (about one standard error), twice the speed (10x
    # real time on two cores); on the model before, ahead on every measure; on the rebuild
    # bundled now, level on event class (0.879 against 0.882) and clip class (0.955 both).
    steps: int = 8
    guidance: float = 2.0  # w in uncond + w (cond - uncond); 1 = conditional only
    temperature: float = 1.0
    top_k: int | None = None
    noise: float = 1.0  # Gumbel noise scale at the first step; it anneals linearly to 0
    top_p: float | None = None  # sample within the nucleus of this mass (None: all)
    # Annealed with the share p of tokens still masked as a step starts: end + (start - end) p,
    # the value above at the first step (p = 1), near these at the last (p = 0.1 of 16 steps)
    # (MAGNeT); None: constant. 1 -> 0.3 beat a constant 1 on 100 held-out
    # clips (benchmarks/README.md, "generation options"): clip class 0.83 -> 0.87, event-level
    # class 0.66 -> 0.68, fd_logmel 138 -> 132, onset F1 equal; MAGNeT's 3 -> 0 lost 0.09 F1.
    temperature_end: float | None = 0.3
    guidance_end: float | None = None
    # Coarse to fine (SoundStorm, MAGNeT): steps per codebook level, one level after another;
    # None: all levels together in `steps`.
    level_steps: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        check_number("steps", self.steps, 1, MAX_STEPS, integer=True)
        check_number("guidance", self.guidance, -MAX_GUIDANCE, MAX_GUIDANCE)
        check_number("temperature", self.temperature, 0, 100, low_open=True)
        if self.top_k is not None:
            check_number("top_k", self.top_k, 1, 1 << 20, integer=True)
        check_number("noise", self.noise, 0, 100)
        if self.top_p is not None:
            check_number("top_p", self.top_p, 0, 1, low_open=True)
        if self.temperature_end is not None:
            check_number("temperature_end", self.temperature_end, 0, 100, low_open=True)
        if self.guidance_end is not None:
            check_number("guidance_end", self.guidance_end, -MAX_GUIDANCE, MAX_GUIDANCE)
        if self.level_steps is not None:
            if not self.level_steps:
                raise ValueError("level_steps must list one step count per codebook level")
            for steps in self.level_steps:
                check_number("level_steps", steps, 1, MAX_STEPS, integer=True)


SamplerName = Literal["maskgit", "ar"]
MAX_SECONDS = 7 * 24 * 3600.0  # a week: any clip length or window beyond it is a typo
AUDIO_FORMATS = ("wav", "flac")


@dataclass(frozen=True)
class DubOptions:
    """Everything `vab generate` decides per run (see `vab generate --help`)."""

    model: Path
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    sampler: SamplerName = "maskgit"
    seed: int = 0
    batch_size: int = 4  # clips per forward pass
    workers: int = 2  # clips prepared (and finished) at the same time
    audio_format: str = "wav"
    mux: bool = True
    reencode: bool = False
    overwrite: bool = False
    keep_audio: float = 0.0  # seconds of the clip's own audio kept as a prompt
    fill_gaps: bool = False  # regenerate only the silent stretches of the clip's own audio
    gap_threshold_db: float = -50.0
    min_gap_seconds: float = 0.25
    window_seconds: float | None = None  # None: the window the model was trained on
    context_seconds: float = 0.5  # of decided tokens carried into each next window
    # Keep only tokens with this much of their window after them; the next window decides the rest.
    # 0.25 s against none, the bundled model on 2 x 100 held-out clips (benchmarks/README.md, "the
    # bundled model rebuilt"): onset F1 +0.009, event-level class +0.014, clip class level, and no
    # slower a whole `vab generate` of 10 s clips (windows of 3.25 s of new sound instead of 3.5
    # still cover 10 s in three). 0.5 s timed sounds better still but cost 12-17% there.
    lookahead_seconds: float = 0.25
    device: str = "auto"
    # Encoders: None takes what the checkpoint records.
    codec: str | None = None
    codec_weights: Path | None = None
    bandwidth: float | None = None
    image_encoder: str | None = None

    def __post_init__(self) -> None:
        if self.audio_format not in AUDIO_FORMATS:
            raise ValueError(f"audio format must be one of {', '.join(AUDIO_FORMATS)}")
        check_number("batch_size", self.batch_size, 1, 4096, integer=True)
        check_number("workers", self.workers, 1, 64, integer=True)
        check_number("keep_audio", self.keep_audio, 0, MAX_SECONDS)
        check_number("gap_threshold_db", self.gap_threshold_db, -200, 0)
        check_number("min_gap_seconds", self.min_gap_seconds, 0, MAX_SECONDS, low_open=True)
        if self.window_seconds is not None:
            check_number("window_seconds", self.window_seconds, 0.1, MAX_SECONDS)
        check_number("context_seconds", self.context_seconds, 0, MAX_SECONDS)
        check_number("lookahead_seconds", self.lookahead_seconds, 0, MAX_SECONDS)

    @property
    def needs_own_audio(self) -> bool:
        return self.keep_audio > 0 or self.fill_gaps
