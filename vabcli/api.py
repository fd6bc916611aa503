"""The Python API: `load()` a checkpoint with its encoders and dub, embed or classify clips in
memory; `generate()` is the library call behind `vab generate`.

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

from vabcli.config import DubOptions, SamplerName, SamplingOptions
from vabcli.core import cancel
from vabcli.core.builtin import BUILTIN
from vabcli.core.errors import InputError, VabError
from vabcli.core.jobs import JobEvents, Outcome

if TYPE_CHECKING:
    import numpy as np

    from vabcli.core.cache import Cache
    from vabcli.data.clips import ClipItem
    from vabcli.generation.dubber import Dubber
    from vabcli.tasks.classify import Classifier
    from vabcli.tasks.embedding import Embedder

__all__ = [
    "Classification",
    "Dub",
    "JobEvents",
    "LoadedModel",
    "Outcome",
    "VabError",
    "generate",
    "load",
]

PathLike = str | os.PathLike[str]
T = TypeVar("T")
_SAMPLING = SamplingOptions()
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

    def dub(
        self,
        video: PathLike,
        *,
        seed: int = _DUB.seed,
        steps: int = _SAMPLING.steps,
        guidance: float = _SAMPLING.guidance,
        temperature: float = _SAMPLING.temperature,
        top_k: int | None = _SAMPLING.top_k,
        sampler: SamplerName = _DUB.sampler,
        keep_audio: float = _DUB.keep_audio,
        fill_gaps: bool = _DUB.fill_gaps,
        gap_threshold_db: float = _DUB.gap_threshold_db,
        min_gap_seconds: float = _DUB.min_gap_seconds,
        window_seconds: float | None = _DUB.window_seconds,
        context_seconds: float = _DUB.context_seconds,
    ) -> Dub:
        """Audio generated for `video`'s pictures, in memory (nothing is written but the cache).

        The options are `vab generate`'s (see `vab generate --help`): `keep_audio` seconds of
        the video's own sound kept as a prompt, `fill_gaps` regenerating only its silent
        stretches, `window_seconds` None for the window the model was trained on.
        """
        chosen = dict(
            seed=seed,
            steps=steps,
            guidance=guidance,
            temperature=temperature,
            top_k=top_k,
            sampler=sampler,
            keep_audio=keep_audio,
            fill_gaps=fill_gaps,
            gap_threshold_db=gap_threshold_db,
            min_gap_seconds=min_gap_seconds,
            window_seconds=window_seconds,
            context_seconds=context_seconds,
        )
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
        from vabcli.tasks.options import ClipOptions

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
    out: PathLike = "dubbed",
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
