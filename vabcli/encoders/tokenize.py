"""`vab tokenize`: visual features and audio tokens of clips, into the cache.

Per clip, two cache entries: `visual` (features `[n_visual, dim]` float32 from the image encoder,
one per frame at the visual rate) and `audio_tokens` (codes `[n_codebooks, n_audio_frames]` from
the audio tokenizer). Each key covers the input's content, the segment, the encoder's id (name
and weights hash) and every parameter that changes the result, so changing the image encoder
recomputes only the features. A clip whose entries are all cached is not decoded at all.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from vabcli.config import DEFAULT_CODEC, DEFAULT_IMAGE_ENCODER, ExtractOptions
from vabcli.core.batcher import BatchingService
from vabcli.core.builtin import BUILTIN
from vabcli.core.cache import Cache, make_key
from vabcli.core.device import resolve_device
from vabcli.encoders.ids import EncoderIds, codec_stamp, preflight_codec, visual_stamp
from vabcli.media.decode import ProgressFn
from vabcli.media.extract import STAGE, WHOLE, ExtractResult, Segment, extract_clip, extract_key
from vabcli.media.probe import probe

VISUAL_STAGE = "visual"
AUDIO_STAGE = "audio_tokens"
FEATURES_FILE = "features.npy"
CODES_FILE = "codes.npy"
# Long audio is tokenized in windows (memory), each with this much left context whose codes are
# dropped, so window seams see the same receptive field as the inside of a window.
AUDIO_CHUNK_SECONDS = 30.0
AUDIO_CHUNK_CONTEXT_SECONDS = 1.0


@dataclass(frozen=True)
class TokenizeOptions:
    """`extract` sets the frame rate; its size is used only when `frame_size_from_encoder` is
    off (by default frames are decoded at the image encoder's own input size, e.g. 336 for
    ViT-L-14-336, rather than resized twice) and its sample rate is always the codec's."""

    extract: ExtractOptions = field(default_factory=ExtractOptions)
    frame_size_from_encoder: bool = True
    codec: str = DEFAULT_CODEC
    codec_weights: Path | None = None
    bandwidth: float | None = None  # None: the codec's default
    image_encoder: str = DEFAULT_IMAGE_ENCODER
    device: str = "auto"
    visual_batch: int = 64  # frames per image-encoder call, gathered across clips
    audio_batch_seconds: float = 120.0  # seconds of audio per codec call, across clips
    keep_frames: bool = False  # keep decoded frames in the cache after encoding them


_ENCODER_PARTS = ("visual", "codec")


class ClipTokenizer:
    """Encoders (loaded on first need) plus their batching services; a context manager.

    Encoder ids remembered from earlier runs give the cache keys without loading anything, so a
    run where every clip is cached never imports torch.
    """

    def __init__(self, opts: TokenizeOptions, cache: Cache) -> None:
        self.opts, self.cache = opts, cache
        self._ids = EncoderIds(cache)
        self._stamps = (
            visual_stamp(opts.image_encoder),
            codec_stamp(opts.codec, opts.codec_weights, opts.bandwidth),
        )
        self.visual_id = self._ids.get(self._stamps[0])
        self.codec_id = self._ids.get(self._stamps[1])
        self._lock = threading.Lock()
        self._built: dict[str, BatchingService] = {}  # "visual", "codec" -> its service
        self._load_errors: dict[str, Exception] = {}
        preflight_codec(opts.codec, opts.codec_weights)  # offline, missing weights: fail now
        if self.visual_id is None or self.codec_id is None:
            self._load()  # first use of these encoders: a loading problem stops the run here

    @property
    def _loaded(self) -> bool:
        return len(self._built) == len(_ENCODER_PARTS)

    def _load(self, parts: tuple[str, ...] = _ENCODER_PARTS) -> None:
        """Build the encoders named in `parts` with their services (each once, whichever worker
        gets here first)."""
        with self._lock:
            for part in parts:
                if part in self._built:
                    continue
                if part in self._load_errors:  # every clip would fail the same way: say it once
                    raise self._load_errors[part]
                build = self._build_visual if part == "visual" else self._build_codec
                try:
                    self._built[part] = build()
                except Exception as exc:
                    self._load_errors[part] = exc
                    raise

    # Imported in the builders: torch and open_clip take seconds to import, and a cached run
    # needs neither (generation needs the codec alone: its decoder).
    def _build_visual(self) -> BatchingService:
        from vabcli.encoders.image import load_visual_encoder

        self.visual = load_visual_encoder(
            self.opts.image_encoder, device=resolve_device(self.opts.device)
        )
        self.visual_id = self.visual.id
        self._ids.remember(self._stamps[0], self.visual_id)
        return BatchingService(self._encode_frames, self.opts.visual_batch, name="vab-visual")

    def _build_codec(self) -> BatchingService:
        from vabcli.encoders.audio_codec import load_codec

        opts = self.opts
        self.codec = load_codec(
            opts.codec,
            weights=opts.codec_weights,
            bandwidth=opts.bandwidth,
            device=resolve_device(opts.device),
        )
        self.codec_id = self.codec.id
        self._ids.remember(self._stamps[1], self.codec_id)
        samples = int(opts.audio_batch_seconds * self.codec.sample_rate)
        # A non-causal codec's codes depend on what follows: such windows are encoded alone.
        samples = samples if getattr(self.codec, "causal", True) else 1
        return BatchingService(self._encode_audio, samples, name="vab-audio")

    @property
    def extract_opts(self) -> ExtractOptions:
        """How clips are decoded for these encoders (frame size, sample rate): loads them."""
        self._load()
        height, width = self.visual.image_size
        if not self.opts.frame_size_from_encoder:
            height, width = self.opts.extract.height, self.opts.extract.width
        return replace(
            self.opts.extract, width=width, height=height, sample_rate=self.codec.sample_rate
        )

    def __enter__(self) -> ClipTokenizer:
        return self

    def __exit__(self, *exc: object) -> None:
        for part, service in self._built.items():
            service.cancel_pending()
            service.close()
            # Free the models (GPU memory above all): training comes next in the same process.
            delattr(self, part)
        self._built.clear()

    def keys(self, video: Path, segment: Segment = WHOLE) -> tuple[str, str]:
        """(visual key, audio key) of a clip; loads the encoders if their ids are not known."""
        if self.visual_id is None or self.codec_id is None:
            self._load()
        digest = self.cache.content_digest(video)
        seg = asdict(segment)
        size = (
            "encoder"  # the encoder id fixes its input size
            if self.opts.frame_size_from_encoder
            else [self.opts.extract.width, self.opts.extract.height]
        )
        frames = {"fps": self.opts.extract.fps, "size": size}
        visual = {"frames": frames, "segment": seg, "encoder": self.visual_id}
        audio = {"segment": seg, "codec": self.codec_id}  # the codec id fixes the sample rate
        return make_key(VISUAL_STAGE, digest, visual), make_key(AUDIO_STAGE, digest, audio)

    def load(self) -> None:
        """Load the encoders now (they load on first need otherwise). Loading errors raise."""
        self._load()

    def load_codec(self) -> None:
        """Load the codec alone now, e.g. to decode with it; the image encoder still loads on
        first need. Loading errors raise."""
        self._load(("codec",))

    def tokenize(
        self,
        video: Path,
        segment: Segment = WHOLE,
        on_progress: ProgressFn | None = None,
        with_audio: bool = True,
    ) -> dict[str, Any]:
        """Features and (`with_audio`) tokens of one clip, cached or computed; returns the
        clip's figures, with the seconds spent per stage under `timings`."""
        visual_key, audio_key = self.keys(video, segment)
        visual_meta = self.cache.lookup(VISUAL_STAGE, visual_key)
        audio_meta = self.cache.lookup(AUDIO_STAGE, audio_key) if with_audio else None
        audio_needed = with_audio and (visual_meta is None or visual_meta["has_audio"])
        hit = visual_meta is not None and (audio_meta is not None or not audio_needed)
        timings = {"decode": 0.0, "features": 0.0, "audio_tokens": 0.0}
        if not hit:
            if not self._loaded:
                probe(video)  # a bad input is reported without first loading the encoders
            self._load()
            began = time.perf_counter()
            with self._decoded(video, segment, on_progress) as clip:
                timings["decode"] = time.perf_counter() - began
                if visual_meta is None:
                    began = time.perf_counter()
                    visual_meta = self._store_features(clip, visual_key)
                    timings["features"] = time.perf_counter() - began
                if audio_meta is None and clip.has_audio and with_audio:
                    began = time.perf_counter()
                    audio_meta = self._store_codes(clip, audio_key)
                    timings["audio_tokens"] = time.perf_counter() - began
        figures = self._figures(visual_meta, audio_meta, visual_key, audio_key, hit)
        return {**figures, "timings": {k: round(v, 4) for k, v in timings.items()}}

    @contextmanager
    def _decoded(
        self, video: Path, segment: Segment, on_progress: ProgressFn | None
    ) -> Iterator[ExtractResult]:
        """The clip's frames and audio: from the cache if there, else decoded, into the cache
        with `keep_frames`, otherwise into a private scratch folder dropped afterwards (never
        into the shared cache only to delete it: another process may be reading it)."""
        opts = self.extract_opts
        if self.opts.keep_frames or self.cache.lookup(
            STAGE, extract_key(video, opts, self.cache, segment)
        ):
            yield extract_clip(video, opts, self.cache, on_progress, segment)
            return
        with self.cache.scratch() as scratch:
            yield extract_clip(video, opts, scratch, on_progress, segment)

    def _figures(self, visual: dict, audio: dict | None, vkey: str, akey: str, hit: bool) -> dict:
        return {
            "duration": round(visual["duration"], 6),
            "has_audio": visual["has_audio"],
            "n_visual": visual["n_visual"],
            "visual_dim": visual["dim"],
            "n_codebooks": audio["n_codebooks"] if audio else None,
            "n_audio_frames": audio["n_audio_frames"] if audio else None,
            "codebook_size": audio["codebook_size"] if audio else None,
            "audio_frame_rate": audio["frame_rate"] if audio else None,
            "cache_hit": hit,
            "visual_key": vkey,
            "audio_key": akey if audio else None,
        }

    def _store_features(self, clip: ExtractResult, key: str) -> dict[str, Any]:
        in_flight, done = deque(), []
        for chunk in clip.frame_chunks(self.opts.visual_batch):
            in_flight.append(self._built["visual"].submit(chunk, len(chunk)))
            if len(in_flight) > 2:  # one batch encoding, one waiting: bounded memory
                done.append(in_flight.popleft().result())
        done += [future.result() for future in in_flight]
        features = np.concatenate(done).astype(np.float32)
        meta = {
            "duration": clip.duration,
            "has_audio": clip.has_audio,
            "fps": clip.fps,
            "n_visual": int(features.shape[0]),
            "dim": int(features.shape[1]),
            "encoder": self.visual.id,
        }
        with self.cache.writing(VISUAL_STAGE, key, meta) as tmp:
            np.save(tmp / FEATURES_FILE, features)
        return meta

    def _store_codes(self, clip: ExtractResult, key: str) -> dict[str, Any]:
        wav = clip.audio()
        hop = self._hop()
        pieces = [
            (self._built["codec"].submit(window, len(window)), keep)
            for window, keep in audio_chunks(wav, self.codec.sample_rate, hop)
        ]
        codes = np.concatenate(
            [future.result()[:, -_frames(keep, hop) :] for future, keep in pieces], axis=1
        )
        meta = {
            "duration": clip.duration,
            "n_codebooks": int(codes.shape[0]),
            "n_audio_frames": int(codes.shape[1]),
            "frame_rate": self.codec.frame_rate,
            "codebook_size": self.codec.codebook_size,
            "codec": self.codec.id,
        }
        with self.cache.writing(AUDIO_STAGE, key, meta) as tmp:
            np.save(tmp / CODES_FILE, codes.astype(np.int16 if self._fits_int16() else np.int32))
        return meta

    def _fits_int16(self) -> bool:
        return self.codec.codebook_size <= np.iinfo(np.int16).max + 1

    def _encode_frames(self, batches: Sequence[np.ndarray]) -> list[np.ndarray]:
        features = self.visual.encode(np.concatenate(batches))
        return np.split(features, np.cumsum([len(b) for b in batches])[:-1])

    def _encode_audio(self, windows: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Right-pad to the longest window and encode as one batch. The codec is causal, so the
        padding after a window cannot change that window's own codes; they are cut off after."""
        import torch

        longest = max(len(w) for w in windows)
        batch = torch.zeros(len(windows), 1, longest)
        for i, window in enumerate(windows):
            batch[i, 0, : len(window)] = torch.from_numpy(np.asarray(window))
        codes = self.codec.encode(batch).cpu().numpy()
        return [codes[i, :, : _frames(len(w), self._hop())] for i, w in enumerate(windows)]

    def _hop(self) -> int:
        """Samples per token frame (320 for EnCodec 24 kHz)."""
        return self.codec.hop_length


def latent_files(cache: Cache, figures: dict[str, Any]) -> tuple[Path, Path | None]:
    """(features file, codes file or None) of a clip, from the figures `tokenize` returned."""
    features = cache.entry_dir(VISUAL_STAGE, figures["visual_key"]) / FEATURES_FILE
    codes = None
    if figures.get("audio_key"):
        codes = cache.entry_dir(AUDIO_STAGE, figures["audio_key"]) / CODES_FILE
    return features, codes


def audio_chunks(wav: np.ndarray, sample_rate: int, hop: int) -> list[tuple[np.ndarray, int]]:
    """Split `[S]` samples into windows with left context: (window samples, samples to keep).

    Window and context are whole numbers of token frames, so each window's kept samples map to
    its last codes exactly.
    """
    window = max(1, round(AUDIO_CHUNK_SECONDS * sample_rate / hop)) * hop
    context = round(AUDIO_CHUNK_CONTEXT_SECONDS * sample_rate / hop) * hop
    if len(wav) <= window:
        return [(wav, len(wav))]
    return [
        (wav[max(0, start - context) : start + window], min(window, len(wav) - start))
        for start in range(0, len(wav), window)
    ]


def _frames(samples: int, hop: int) -> int:
    return -(-samples // hop)  # ceil: a partial last frame still gets a token


def encoder_spec(opts: TokenizeOptions) -> dict[str, Any]:
    """The encoders as a checkpoint records them, so generation loads the same ones: JSON, with
    every path made absolute (a checkpoint must not depend on the folder it is used from)."""
    size = None if opts.frame_size_from_encoder else [opts.extract.width, opts.extract.height]
    return {
        "codec": _absolute_if_path(opts.codec),
        "codec_weights": str(Path(opts.codec_weights).resolve()) if opts.codec_weights else None,
        "bandwidth": opts.bandwidth,
        "image_encoder": _absolute_image_spec(opts.image_encoder),
        "fps": opts.extract.fps,
        "frame_size": size,
    }


def options_from_spec(spec: dict[str, Any], **overrides: Any) -> TokenizeOptions:
    """TokenizeOptions from a recorded `encoder_spec`; `overrides` (not None) win."""
    chosen = {k: v for k, v in overrides.items() if v is not None}
    size = spec.get("frame_size")
    extract = ExtractOptions(fps=spec.get("fps", ExtractOptions().fps))
    if size:
        extract = replace(extract, width=size[0], height=size[1])
    weights = chosen.get("codec_weights", spec.get("codec_weights"))
    return TokenizeOptions(
        extract=extract,
        frame_size_from_encoder=not size,
        codec=chosen.get("codec", spec.get("codec", DEFAULT_CODEC)),
        codec_weights=Path(weights) if weights else None,
        bandwidth=chosen.get("bandwidth", spec.get("bandwidth")),
        image_encoder=chosen.get("image_encoder", spec.get("image_encoder", DEFAULT_IMAGE_ENCODER)),
        device=chosen.get("device", "auto"),
    )


def _absolute_if_path(name: str) -> str:
    if name == BUILTIN:  # the bundled codec moves with the package: keep its name
        return name
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def _absolute_image_spec(spec: str) -> str:
    """`ViT-B-32:weights.pt` and `local-dir:models/clip` with absolute paths; tags unchanged."""
    head, sep, tail = spec.partition(":")
    if sep and tail and Path(tail).expanduser().exists():
        return f"{head}:{Path(tail).expanduser().resolve()}"
    return spec
