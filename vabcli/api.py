"""The Python API: `load()` a checkpoint with its encoders and dub, embed or classify clips in
memory; `generate()`, `train()` and `finetune()` are the library calls behind `vab generate`,
`vab train` and `vab finetune`.

    import vabcli
    model = vabcli.load("builtin")
    dub = model.dub("clip.mp4", seed=1)  # dub.audio [n] float32 at dub.sample_rate

The same choices as the commands, with the same defaults (vabcli/config.py) and the same cache,
so `model.dub(video, seed=S)` gives the samples `vab generate --seed S` writes into its WAV for
that clip (before the WAV's 16-bit rounding), given the same torch thread settings (the command
sizes torch's threads itself; a library leaves a program's process settings alone). Importing
this module loads no torch: the heavy modules load with the first model. Errors are VabError
with one clear message; option values out of range are ValueError, as the options classes say.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from vabcli import API_NAMES
from vabcli.config import DUBBED_FOLDER, DubOptions, SamplingOptions, TrainOptions
from vabcli.core import cancel
from vabcli.core.builtin import BUILTIN
from vabcli.core.errors import InputError, VabError
from vabcli.core.jobs import JobEvents, Outcome
from vabcli.tasks.options import ClipOptions
from vabcli.training.pretrain import DEFAULT_PRESET

if TYPE_CHECKING:
    import numpy as np

    from vabcli.core.cache import Cache
    from vabcli.data.clips import ClipItem
    from vabcli.generation.dubber import Dubber
    from vabcli.tasks.classify import Classifier
    from vabcli.tasks.embedding import Embedder
    from vabcli.training.prepare import RunSetup

__all__ = list(API_NAMES)  # what `import vabcli` exposes, listed once there

PathLike = str | os.PathLike[str]
T = TypeVar("T")
_DUB = DubOptions(model=Path(BUILTIN))  # the defaults of every dubbing option
_MODALITIES = ("v", "a")  # embed the pictures or the sound


@dataclass(frozen=True, eq=False)  # eq would compare arrays element-wise
class Dub:
    """A clip's generated audio: mono float32 samples in [-1, 1],
    `round(duration * sample_rate)` of them."""

    audio: np.ndarray  # [n_samples]
    sample_rate: int
    duration: float  # seconds: the video's
    seed: int  # the seed asked for (each clip mixes it with its content, as vab generate does)


@dataclass(frozen=True)
class Classification:
    """A clip's likeliest labels with their probabilities, likeliest first."""

    label: str
    scores: dict[str, float]


def load(
    model: PathLike = BUILTIN,
    *,
    device: str = _DUB.device,
    cache: PathLike | None = None,
    codec: str | None = None,
    codec_weights: PathLike | None = None,
    image_encoder: str | None = None,
) -> LoadedModel:
    """A checkpoint and its encoders, ready to use.

    `model`: "builtin" (the bundled model), a checkpoint folder or one of its files, or a run
    folder (its best/, else last/), as `vab generate --model` takes. `device`: auto, cpu, cuda,
    cuda:N or mps. `cache`: the cache folder (None: the default, as the commands use). `codec`,
    `codec_weights`, `image_encoder`: other encoders than the checkpoint records, for dubbing
    (as `vab generate`'s options of those names; embed and classify use the recorded ones, as
    their commands do). A pre-trained model dubs and embeds, a contrastive fine-tune embeds, a
    classifier classifies.
    """
    from vabcli.core.cache import Cache

    weights = None if codec_weights is None else Path(codec_weights)
    options = replace(
        _DUB,
        model=Path(model),
        device=device,
        codec=codec,
        codec_weights=weights,
        image_encoder=image_encoder,
    )
    return LoadedModel(options, Cache(cache))


class LoadedModel:
    """A checkpoint with its encoders (see `load`). `close()` (or a `with` block) frees them."""

    def __init__(self, options: DubOptions, cache: Cache) -> None:
        from vabcli.core.device import resolve_device
        from vabcli.model.checkpoint import read_meta, resolve_checkpoint
        from vabcli.tasks.classify import CLASSIFY_TASK, load_classifier

        self.checkpoint = resolve_checkpoint(options.model)
        meta = read_meta(self.checkpoint)  # a foreign file fails before any encoder loads
        self.task: str | None = meta.task  # None: pre-trained (it generates audio)
        self._options, self._cache = options, cache
        self._device = resolve_device(options.device)
        self._dubber: Dubber | None = None
        self._embedder: Embedder | None = None
        self._classifier: Classifier | None = None
        if self.task is None:
            from vabcli.generation.dubber import Dubber

            self._dubber = Dubber(options, cache)
        elif self.task == CLASSIFY_TASK:
            self._classifier = load_classifier(self.checkpoint, self._device)
        else:
            self._embedder = self._load_embedder()

    def dub(self, video: PathLike, *, seed: int = _DUB.seed, **options: Any) -> Dub:
        """Audio generated for `video`'s pictures, in memory (nothing is written but the cache).

        `options`, as in `vab generate` (see its --help), defaults as there: steps, guidance,
        temperature, top_k, sampler, keep_audio (seconds of the video's own sound kept as a
        prompt), fill_gaps (regenerate only its silent stretches), gap_threshold_db,
        min_gap_seconds, window_seconds (None: the window the model was trained on),
        context_seconds, lookahead_seconds.
        """
        unknown = sorted(set(options) - set(_DUB_KEYWORDS))
        if unknown:
            raise TypeError(f"dub() got an unexpected keyword argument {unknown[0]!r}")
        chosen = {"seed": seed, **options}
        dubber = self._need_dubber().with_options(_dub_options(self._options, chosen))
        cancel.reset()
        job, audio = dubber.dub_in_memory(_clip(video))
        return Dub(audio, dubber.codec.sample_rate, job.duration, seed)

    def embed(self, videos: PathLike | Sequence[PathLike], modality: str = "v") -> np.ndarray:
        """Unit embeddings `[N, D]` float32 of the videos' pictures (`modality` "v") or sound
        ("a"), as `vab embed` writes them; a clip that cannot be embedded raises VabError."""
        import numpy as np

        from vabcli.tasks.answers import clip_vector

        if modality not in _MODALITIES:
            raise ValueError(f"modality must be v (pictures) or a (sound), got {modality!r}")
        if self._classifier is not None:
            raise VabError(f"{self.checkpoint} is a classifier: it classifies, not embeds")
        if self._embedder is None:  # a pre-trained model embeds through its backbone
            self._embedder = self._load_embedder()
        embedder = self._embedder
        return np.stack(self._answers(videos, lambda f, c: clip_vector(embedder, modality, f, c)))

    def classify(
        self, videos: PathLike | Sequence[PathLike], top_k: int = 3
    ) -> list[Classification]:
        """The `top_k` likeliest labels of each video, as `vab classify` gives them (a classifier
        checkpoint only); a clip that cannot be classified raises VabError."""
        import numpy as np

        if self._classifier is None:
            raise VabError(
                f"{self.checkpoint} is not a classifier: train one with "
                f"`vab finetune classify --init {self.checkpoint}`"
            )
        classifier, labels = self._classifier, self._classifier.spec.labels

        def top_labels(features: np.ndarray, codes: np.ndarray | None) -> Classification:
            probs = classifier.probabilities(features, codes)
            top = np.argsort(-probs, kind="stable")[:top_k]
            return Classification(labels[top[0]], {labels[i]: float(probs[i]) for i in top})

        return self._answers(videos, top_labels)

    def close(self) -> None:
        """Free the encoders (and their threads); the model object is not usable afterwards."""
        if self._dubber is not None:
            self._dubber.close()

    def __enter__(self) -> LoadedModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _need_dubber(self) -> Dubber:
        if self._dubber is None:
            raise VabError(
                f"{self.checkpoint} is a {self.task} fine-tune, not a model that generates "
                "audio: load its --init checkpoint to dub"
            )
        return self._dubber

    def _load_embedder(self) -> Embedder:
        from vabcli.tasks.embedding import load_embedder

        return load_embedder(self.checkpoint, self._device)

    def _answers(
        self, videos: PathLike | Sequence[PathLike], answer: Callable[[np.ndarray, Any], T]
    ) -> list[T]:
        """`answer(features [T_v, D], codes [K, T_a] or None)` of each video, in order, tokenized
        with the encoders the checkpoint records; the first clip that fails raises VabError."""
        from vabcli.tasks.latents import answer_clips, clip_latents

        items = [_clip(video) for video in _as_list(videos)]
        model = self._classifier or self._embedder
        cancel.reset()
        latents = clip_latents(items, model, self._cache, ClipOptions(device=self._options.device))
        values = []
        for clip in answer_clips(latents, answer):
            if clip.error is not None:
                raise VabError(f"{clip.item.name()}: {clip.error}")
            values.append(clip.value)
        return values


def generate(
    inputs: PathLike | Sequence[PathLike] = (),
    out: PathLike = DUBBED_FOLDER,
    *,
    model: PathLike = BUILTIN,
    data: PathLike | None = None,
    cache: PathLike | None = None,
    events: JobEvents | None = None,
    **options: Any,
) -> list[Outcome]:
    """What `vab generate INPUT... --out OUT` does: dub every video (files, folders, globs; or
    the clips of a manifest `data`) into OUT/<name>.mp4, .wav and .json, skipping finished
    ones. `options`: any field of `DubOptions` (seed, batch_size, audio_format, mux, overwrite,
    keep_audio, fill_gaps, window_seconds, device, codec, ...) or of `SamplingOptions` (steps,
    guidance, temperature, top_k), defaults as the command's. Returns one `Outcome` per clip,
    in input order (status ok, skipped or error; `figures` as `--json` prints them);
    `events` hears of each clip's start, progress and end.
    """
    from vabcli.core.cache import Cache
    from vabcli.data.clips import clip_items
    from vabcli.generation.outputs import plan_targets
    from vabcli.generation.pipeline import run_dub

    opts = _dub_options(replace(_DUB, model=Path(model)), options)
    manifest = None if data is None else Path(data)
    items = clip_items([str(i) for i in _as_list(inputs)], manifest)
    targets = plan_targets(items, Path(out), opts.audio_format, opts.mux)
    store = Cache(cache)

    def make_dubber() -> Dubber:
        from vabcli.generation.dubber import Dubber

        return Dubber(opts, store)

    return run_dub(targets, opts, make_dubber, events)


def tokenize(
    inputs: PathLike | Sequence[PathLike] = (),
    *,
    data: PathLike | None = None,
    cache: PathLike | None = None,
    workers: int = ClipOptions.workers,
    events: JobEvents | None = None,
    **options: Any,
) -> list[Outcome]:
    """What `vab tokenize INPUT...` does: visual features and audio tokens of every video (files,
    folders, globs; or the clips of a manifest `data`) into the cache, cached ones at no cost.
    `options`: any field of `TokenizeOptions` (codec, codec_weights, bandwidth, image_encoder,
    device, keep_frames, ...), defaults as the command's. One `Outcome` per clip, in input order
    (`figures` as `--json` prints them); `events` hears of each clip."""
    from vabcli.core.cache import Cache
    from vabcli.data.clips import clip_items
    from vabcli.encoders.tokenize import ClipTokenizer, TokenizeOptions
    from vabcli.encoders.tokenize_clips import tokenize_clips

    items = clip_items([str(i) for i in _as_list(inputs)], _path(data))
    with ClipTokenizer(TokenizeOptions(**options), Cache(cache)) as tokenizer:
        return tokenize_clips(items, tokenizer, workers, events).outcomes


def manifest(
    source: PathLike,
    out: PathLike,
    *,
    split: str = "8:1:1",
    columns: Sequence[str] | None = None,
    video_pattern: str | None = None,
    keep_missing: bool = False,
    overwrite: bool = False,
) -> Path:
    """What `vab manifest SOURCE -o OUT` does: a manifest of the videos under the folder
    `source` (labelled by their folder's name) or of the rows of the CSV `source`, splits by a
    stable hash where none is given. Returns OUT; missing videos are left out (VabError when
    none is left)."""
    from vabcli.data.manifest_sources import (
        SplitShares,
        records_from_csv,
        records_from_folder,
        write_manifest,
    )

    shares, where = SplitShares.parse(split), Path(source)
    if where.is_dir():
        records = records_from_folder(where, shares)
    else:
        names = None if columns is None else list(columns)
        records = records_from_csv(where, shares, names, video_pattern)
    write_manifest(records, Path(out), overwrite=overwrite, keep_missing=keep_missing)
    return Path(out)


def evaluate(
    reference: PathLike,
    *,
    generated: PathLike | None = None,
    model: PathLike | None = None,
    task: str = "audio",
    cache: PathLike | None = None,
    device: str = "auto",
    workers: int = ClipOptions.workers,
) -> dict[str, Any]:
    """What `vab eval` does, as the dict its `--json` prints (unrounded). task "audio": the
    audio in the folder `generated` against the clips of the manifest `reference` and their
    ground truth (onsets, class, spectra, length, silence, clipping; `missing` counts reference
    clips without generated audio); "retrieval" or "classify": the checkpoint `model` on the
    reference's clips (R@k both ways, or accuracy and mAP)."""
    from vabcli.core.cache import Cache

    reference = Path(reference)
    if task == "audio":
        from vabcli.evaluation.generated_audio import evaluate_generated

        if generated is None:
            raise ValueError("task 'audio' scores the audio in `generated`: give its folder")
        return evaluate_generated(Path(generated), reference, workers=workers).scores
    if model is None:
        raise ValueError(f"task {task!r} scores a checkpoint: give `model`")
    from vabcli.evaluation.backbone import evaluate_backbone

    opts = ClipOptions(device=device, workers=workers)
    return evaluate_backbone(task, Path(model), reference, Cache(cache), opts)


# What `LoadedModel.dub` may choose: the options of one clip's sampling, not of files or batches.
_DUB_KEYWORDS = (
    *(f.name for f in fields(SamplingOptions)),
    "sampler",
    "keep_audio",
    "fill_gaps",
    "gap_threshold_db",
    "min_gap_seconds",
    "window_seconds",
    "context_seconds",
    "lookahead_seconds",
)


def _dub_options(base: DubOptions, chosen: dict[str, Any]) -> DubOptions:
    """`base` with the options named in `chosen`, sampling ones (steps, ...) included."""
    names = {f.name for f in fields(SamplingOptions)}
    sampling = replace(base.sampling, **{k: v for k, v in chosen.items() if k in names})
    return replace(base, sampling=sampling, **{k: v for k, v in chosen.items() if k not in names})


def _as_list(videos: PathLike | Sequence[PathLike]) -> list[PathLike]:
    return [videos] if isinstance(videos, (str, os.PathLike)) else list(videos)


def _clip(video: PathLike) -> ClipItem:
    """A whole video as a clip; InputError if it is not a readable file."""
    from vabcli.data.clips import ClipItem
    from vabcli.media.inputs import file_problem

    path = Path(video).expanduser()
    problem = file_problem(path)
    if problem:
        raise InputError(f"{path}: {problem}")
    return ClipItem(path)


def train(
    out: PathLike,
    *,
    data: PathLike | None = None,
    preset: str = DEFAULT_PRESET,
    dims: dict[str, int | float] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """What `vab train --data DATA --out OUT` does: pre-train a `preset` model (`dims`: single
    dimensions overridden, e.g. {"d_model": 256}) on the train and val clips of `data`: a
    manifest (tokenized into the cache first; cached clips are free) or a pack folder (`vab
    train --write-pack`). `options`: any field of `TrainOptions` (steps, batch_size, lr,
    clip_seconds, val_every, seed, ...), the encoders of `TokenizeOptions` (codec,
    codec_weights, bandwidth, image_encoder), or the run's own: `cache` (folder), `device`
    ("auto"), `resume`, `overwrite` (an earlier run in OUT is continued or replaced, else
    ValueError), `on_step` (hears every step, with the metrics on log steps); defaults as the
    command's. Returns the summary `vab train --json` prints (out, last, best, step, loss, ...)."""
    from vabcli.encoders.tokenize import TokenizeOptions
    from vabcli.training.pretrain import train as pretrain

    setup = _run_setup(options)
    encoders = {k: options.pop(k) for k in _ENCODER_FIELDS if k in options}
    tokenize = TokenizeOptions(device=setup.device, **encoders)
    opts = replace(_TRAIN, **options)
    where = {**_training_sources(data), "tokenize": tokenize, "setup": setup}
    return pretrain(Path(out), preset=preset, dims=dims, options=opts, **where)


def finetune(
    task: str, init: PathLike, out: PathLike, *, data: PathLike | None = None, **options: Any
) -> dict[str, Any]:
    """What `vab finetune contrastive|classify --init INIT --out OUT` does: fine-tune the
    pre-trained checkpoint (or run folder) INIT on the clips of `data` (a manifest, tokenized
    with INIT's encoders, or a pack folder), for `task` "contrastive" (an embedding model for
    `load(OUT).embed`) or "classify" (a classifier for `load(OUT).classify`; labels from the
    manifest). `options`: any field of `TrainOptions` (steps, batch_size, lr, ...), the
    task's own (layers; contrastive: proj_dim; classify: modality "av" | "v" | "a", freeze) and
    the run's (cache, device, resume, overwrite, on_step), defaults as the command's. The
    summary returned as `train`'s."""
    from vabcli.tasks import finetune_run

    runs = {
        "contrastive": (finetune_run.finetune_contrastive, finetune_run.CONTRASTIVE_OPTIONS),
        "classify": (finetune_run.finetune_classify, finetune_run.CLASSIFY_OPTIONS),
    }
    if task not in runs:
        raise ValueError(f"task must be contrastive or classify, got {task!r}")
    run, defaults = runs[task]
    where = {**_training_sources(data), "setup": _run_setup(options)}
    trained = {k: options.pop(k) for k in _TRAIN_FIELDS if k in options}
    return run(Path(init), Path(out), options=replace(defaults, **trained), **where, **options)


_TRAIN = TrainOptions()
_TRAIN_FIELDS = tuple(f.name for f in fields(TrainOptions))
_ENCODER_FIELDS = ("codec", "codec_weights", "bandwidth", "image_encoder")


def _run_setup(options: dict[str, Any]) -> RunSetup:
    """The run's own keywords (cache, device, resume, overwrite, on_step), taken out of
    `options`."""
    from vabcli.core.cache import Cache
    from vabcli.training.prepare import DEFAULT_SETUP, RunEvents, RunSetup

    return RunSetup(
        options.pop("device", DEFAULT_SETUP.device),
        Cache(_path(options.pop("cache", None))),
        options.pop("resume", DEFAULT_SETUP.resume),
        options.pop("overwrite", DEFAULT_SETUP.overwrite),
        RunEvents(step=options.pop("on_step", None)),
    )


def _training_sources(data: PathLike | None) -> dict[str, Path | None]:
    """`data` as the training calls take it: a folder is a pack, anything else a manifest."""
    path = _path(data)
    is_pack = path is not None and path.is_dir()
    return {"data": None if is_pack else path, "pack": path if is_pack else None}


def _path(path: PathLike | None) -> Path | None:
    return None if path is None else Path(path)
