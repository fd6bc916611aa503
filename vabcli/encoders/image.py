"""Visual features from open_clip image towers: `VisualEncoder`, `load_visual_encoder`.

Encoder specs (what `--image-encoder` takes):
    MODEL:TAG        an open_clip model with a pretrained tag, e.g. `ViT-B-32:openai`; the weights
                     come from open_clip's download into the Hugging Face hub cache. Offline, a tag
                     whose weights are not cached fails at once with `VisualWeightsMissingError`.
    MODEL:FILE       an open_clip model with weights from a local .safetensors/.bin/.pt/.pth file
                     (FILE holds a path separator, starts with `.` or `~`, or has such a suffix).
    local-dir:PATH   a folder with `open_clip_config.json` and `open_clip_model.safetensors` (or
                     `open_clip_pytorch_model.bin`), as `save_local_dir` writes it.
    builtin          the bundled tower, trained on the synthetic world (`vabcli.core.builtin`).
    debug            a tiny random-init CLIP with a fixed seed, for tests; features mean nothing.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import safetensors.torch
import torch
import torch.nn.functional as F

from vabcli.config import DEFAULT_IMAGE_ENCODER
from vabcli.core.atomic import atomic_output
from vabcli.core.builtin import BUILTIN, VISION
from vabcli.core.errors import VabError
from vabcli.encoders.network import first_line, host_reachable, offline_flag

DEBUG_SPEC = "debug"
LOCAL_DIR_PREFIX = "local-dir:"
DEFAULT_BATCH_SIZE = 64

# The debug model is built through open_clip.create_model like every other one: the config of a
# registered model name is replaced field by field (create_model's model_kwargs), so no config
# file has to be registered. ~0.3 M vision parameters; encodes 224 px frames in milliseconds.
_DEBUG_BASE_MODEL = "ViT-B-32"
DEBUG_MODEL_CFG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32, "head_width": 32},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
}
DEBUG_SEED = 0

LOCAL_DIR_CONFIG = "open_clip_config.json"
LOCAL_DIR_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
# open_clip's default file name in a hub repo whose pretrained entry names only the repo.
_HUB_DEFAULT_WEIGHTS = "open_clip_pytorch_model.bin"

_HUB_HOST = "huggingface.co"
# 12 hex digits (48 bits) keep cache keys short with no realistic chance of a collision.
_ID_HASH_CHARS = 12
_OFFLINE_ALTERNATIVES = (
    "offline, use MODEL:/path/to/weights.safetensors|.bin|.pt or local-dir:PATH "
    "(a folder with open_clip_config.json and weights)"
)


class VisualEncoderError(VabError):
    """An image encoder that cannot be built: bad spec, unknown model, unusable weights."""


class VisualWeightsMissingError(VisualEncoderError):
    """Pretrained image-encoder weights are not cached locally and cannot be downloaded."""


@runtime_checkable
class VisualEncoder(Protocol):
    """Frames to one feature vector each.

    `id` names the architecture, preprocessing and exact weights (cache keys depend on it; the
    same weights give the same id in every process). `encode`: uint8 RGB `[T, H, W, 3]` (square
    frames) -> float32 `[T, dim]`, each row L2-normalised.
    """

    id: str
    dim: int
    image_size: tuple[int, int]  # (height, width) the tower takes; other frames are resized

    def encode(self, frames: np.ndarray) -> np.ndarray: ...


class EncoderSpec(NamedTuple):
    """A parsed spec: `kind` is `debug`, `builtin`, `local-dir`, `file` or `tag`."""

    kind: str
    model: str  # open_clip model name ("" for debug and local-dir)
    target: str  # the tag, file path or folder path ("" for debug)


class OpenClipVisualEncoder:
    """The image tower of an open_clip model, frozen, with CLIP's preprocessing on tensors.

    Only `model.visual` is kept, so the text tower is freed once the caller drops `model`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        label: str,
        device: str | torch.device = "cpu",
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        visual = getattr(model, "visual", model)
        self.preprocess_cfg: dict[str, Any] = dict(getattr(visual, "preprocess_cfg", {}) or {})
        if "mean" not in self.preprocess_cfg or "std" not in self.preprocess_cfg:
            raise ValueError("model.visual has no preprocess_cfg (build it with open_clip)")
        visual.requires_grad_(False)
        visual.eval()
        self.id = f"{label}-{weights_fingerprint(visual, self.preprocess_cfg)[:_ID_HASH_CHARS]}"
        self.device = torch.device(device)
        self.visual = visual.to(self.device)
        self.batch_size = batch_size
        size = self.preprocess_cfg.get("size", getattr(visual, "image_size", 224))
        self.image_size: tuple[int, int] = (size, size) if isinstance(size, int) else tuple(size)
        self._mean = torch.tensor(self.preprocess_cfg["mean"], device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(self.preprocess_cfg["std"], device=self.device).view(1, 3, 1, 1)
        self.dim = int(getattr(visual, "output_dim", 0) or self._probe_dim())

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """uint8 `[T, H, W, 3]` RGB -> float32 `[T, dim]`, unit rows; `batch_size` at a time."""
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
            got = getattr(frames, "dtype", type(frames).__name__)
            raise ValueError(f"frames must be a uint8 numpy array, got {got}")
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be [T, H, W, 3], got shape {tuple(frames.shape)}")
        out = np.empty((frames.shape[0], self.dim), dtype=np.float32)
        for start in range(0, frames.shape[0], self.batch_size):
            # np.array copies: frames may be a read-only memmap, which torch will not wrap.
            batch = torch.from_numpy(np.array(frames[start : start + self.batch_size]))
            out[start : start + len(batch)] = self._encode_batch(batch).cpu().numpy()
        return out

    @torch.inference_mode()
    def _encode_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 `[B, H, W, 3]` -> float32 `[B, dim]` unit rows."""
        x = batch.to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        if tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bicubic", antialias=True)
            # Bicubic overshoots at edges; PIL's uint8 resize in CLIP's own pipeline clips too.
            x = x.clamp_(0.0, 1.0)
        x = (x - self._mean) / self._std
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            features = self.visual(x)
        if isinstance(features, tuple):  # CoCa-style towers also return token embeddings
            features = features[0]
        return F.normalize(features.float(), dim=-1)

    def _probe_dim(self) -> int:
        # timm towers carry no output_dim attribute: one blank image tells.
        blank = torch.zeros((1, *self.image_size, 3), dtype=torch.uint8)
        return int(self._encode_batch(blank).shape[-1])


def weights_fingerprint(visual: torch.nn.Module, preprocess_cfg: dict[str, Any]) -> str:
    """sha256 over the tower's structure, preprocessing and every state-dict tensor.

    The structure (module repr) counts because weights alone do not fix the features: the same
    tensors under GELU and QuickGELU give different outputs.
    """
    h = hashlib.sha256(repr(visual).encode())
    h.update(json.dumps(preprocess_cfg, sort_keys=True, default=str).encode())
    for key, value in visual.state_dict().items():
        t = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"|{key}|{t.dtype}|{tuple(value.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().data)
    return h.hexdigest()


def load_visual_encoder(
    spec: str = DEFAULT_IMAGE_ENCODER, device: str = "cpu", batch_size: int = DEFAULT_BATCH_SIZE
) -> VisualEncoder:
    """Build the encoder a spec names (see the module docstring for the grammar)."""
    parsed = parse_spec(spec)
    if parsed.kind == "debug":
        model, label = create_debug_model(), DEBUG_SPEC
    elif parsed.kind == "local-dir":
        model, label = _model_from_dir(Path(parsed.target).expanduser()), "local-dir"
    elif parsed.kind == BUILTIN:
        model, label = _model_from_dir(VISION.require()), BUILTIN
    elif parsed.kind == "file":
        what = f"{parsed.target} as {parsed.model} weights"
        model, label = _create(what, parsed.model, pretrained=parsed.target), f"{parsed.model}:file"
    else:
        model = _model_from_tag(parsed.model, parsed.target)
        label = f"{parsed.model}:{_clean_tag(parsed.target)}"
    return OpenClipVisualEncoder(model, label, device=device, batch_size=batch_size)


def parse_spec(spec: str) -> EncoderSpec:
    """Split and check a spec without loading anything; raises VisualEncoderError."""
    import open_clip

    spec = spec.strip()
    if spec == DEBUG_SPEC:
        return EncoderSpec("debug", "", "")
    if spec == BUILTIN:
        return EncoderSpec(BUILTIN, "", "")
    if spec.startswith(LOCAL_DIR_PREFIX):
        folder = spec[len(LOCAL_DIR_PREFIX) :]
        if not folder:
            raise VisualEncoderError(f"image encoder {spec!r}: no folder after {LOCAL_DIR_PREFIX}")
        return EncoderSpec("local-dir", "", folder)
    model, sep, target = spec.partition(":")
    if not sep or not model or not target:
        raise VisualEncoderError(
            f"image encoder {spec!r} is not MODEL:TAG, MODEL:FILE, {LOCAL_DIR_PREFIX}PATH or "
            f"{DEBUG_SPEC} (default {DEFAULT_IMAGE_ENCODER})"
        )
    if model not in open_clip.list_models():
        close = difflib.get_close_matches(model, open_clip.list_models(), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "e.g. ViT-B-32, ViT-L-14"
        raise VisualEncoderError(
            f"unknown open_clip model {model!r}: {hint} (open_clip.list_models() has them all)"
        )
    if open_clip.is_pretrained_cfg(model, target):
        return EncoderSpec("tag", model, target)
    if _looks_like_path(target):
        path = Path(target).expanduser()
        if path.is_dir():
            raise VisualEncoderError(f"{path} is a folder: use {LOCAL_DIR_PREFIX}{path}")
        if not path.is_file():
            raise VisualEncoderError(f"image encoder weights file not found: {path}")
        return EncoderSpec("file", model, str(path))
    tags = open_clip.list_pretrained_tags_by_model(model)
    known = f"known tags: {', '.join(tags)}" if tags else "open_clip has no pretrained tags for it"
    raise VisualEncoderError(
        f"{model} has no pretrained tag {target!r} ({known}); or give a weights file path"
    )


def create_debug_model(seed: int = DEBUG_SEED) -> torch.nn.Module:
    """A tiny random-init open_clip CLIP (`DEBUG_MODEL_CFG`): same weights for the same seed.

    Its features carry no meaning; it exists so pipelines and tests run in seconds offline.
    """
    # fork_rng keeps the caller's global RNG stream untouched by our seeding.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _create("the debug model", _DEBUG_BASE_MODEL, pretrained=None, **DEBUG_MODEL_CFG)


def save_local_dir(
    model: torch.nn.Module,
    model_cfg: dict[str, Any],
    folder: Path,
    preprocess_cfg: dict[str, Any] | None = None,
) -> None:
    """Write `folder/open_clip_config.json` and `folder/open_clip_model.safetensors`.

    The layout is open_clip's own `local-dir:` schema, so `load_visual_encoder("local-dir:...")`
    and `open_clip.create_model("local-dir:...")` both read it. `model` is the whole CLIP (the
    loader checks every key), `model_cfg` its architecture; `preprocess_cfg` defaults to the
    one open_clip attached to `model.visual`. Each file is written atomically; overwrites.
    """
    if preprocess_cfg is None:
        preprocess_cfg = dict(getattr(model.visual, "preprocess_cfg", {}))
    # safetensors refuses tensors that share memory or are not contiguous: give each its own.
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    with atomic_output(Path(folder) / LOCAL_DIR_WEIGHTS[0], overwrite=True) as tmp:
        safetensors.torch.save_file(state, str(tmp))
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}
    with atomic_output(Path(folder) / LOCAL_DIR_CONFIG, overwrite=True) as tmp:
        tmp.write_text(json.dumps(config, indent=2) + "\n")


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (huggingface_hub reads it once,
    at import, so a later change of HF_HUB_CACHE or HF_HOME would otherwise be missed)."""
    from huggingface_hub import constants

    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


def _model_from_tag(model_name: str, tag: str) -> torch.nn.Module:
    import open_clip

    pretrained_cfg = open_clip.get_pretrained_cfg(model_name, tag)
    cache_dir = hub_cache_dir()
    repo_id, names = _hub_files(pretrained_cfg)
    cached = _cached_weights(repo_id, names, cache_dir)
    if cached is None:
        reason = _offline_reason()
        if reason:
            raise VisualWeightsMissingError(
                f"weights for {model_name}:{tag} (hub repo {repo_id}, file {' or '.join(names)}) "
                f"are not in the cache {cache_dir} and {reason}; download them there on a "
                f"networked machine or, {_OFFLINE_ALTERNATIVES}"
            )
    return _create(
        f"{model_name}:{tag}",
        model_name,
        pretrained=tag,
        # The tag says how its weights were trained; open_clip only warns on a mismatch
        # (e.g. ViT-B-32 is GELU but its openai weights need QuickGELU).
        force_quick_gelu=bool(pretrained_cfg.get("quick_gelu", False)),
        cache_dir=str(cache_dir),
        # Cached weights load with the hub offline: no update check, no retries without network.
        hub_offline=cached is not None,
        # Not cached means the download failed; cached means the file itself is bad.
        error=VisualEncoderError if cached else VisualWeightsMissingError,
        hint=f"; {_OFFLINE_ALTERNATIVES}",
    )


def _create(
    what: str,
    *args: Any,
    hub_offline: bool = False,
    error: type[VisualEncoderError] = VisualEncoderError,
    hint: str = "",
    **kwargs: Any,
) -> torch.nn.Module:
    """`open_clip.create_model(*args, **kwargs)`, quiet; any failure a one-line `error`."""
    import open_clip

    with _quiet_open_clip(hub_offline):
        try:
            return open_clip.create_model(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - bad files, configs and downloads alike
            raise error(f"cannot load {what}: {first_line(exc)}{hint}") from exc


def _model_from_dir(folder: Path) -> torch.nn.Module:
    if not folder.is_dir():
        raise VisualEncoderError(f"image encoder folder not found: {folder}")
    if not (folder / LOCAL_DIR_CONFIG).is_file():
        raise VisualEncoderError(f"image encoder folder {folder} has no {LOCAL_DIR_CONFIG}")
    # open_clip random-initialises a folder without weights and only logs it: refuse instead.
    if not any((folder / name).is_file() for name in LOCAL_DIR_WEIGHTS):
        raise VisualEncoderError(
            f"image encoder folder {folder} has no weights ({' or '.join(LOCAL_DIR_WEIGHTS)})"
        )
    return _create(f"image encoder folder {folder}", f"{LOCAL_DIR_PREFIX}{folder}")


def _hub_files(pretrained_cfg: dict[str, Any]) -> tuple[str, list[str]]:
    """(repo id, file names open_clip tries in order) for a tag's `hf_hub` entry: every tag in
    open_clip 3.x has one, and open_clip prefers it to `url`, so weights live in the hub cache."""
    repo_id, filename = os.path.split(pretrained_cfg.get("hf_hub", ""))
    filename = filename or _HUB_DEFAULT_WEIGHTS
    # open_clip prefers a .safetensors twin of a .bin/.pth name when the repo has one.
    twin = "open_clip_model.safetensors" if filename == _HUB_DEFAULT_WEIGHTS else None
    if twin is None and filename.endswith((".bin", ".pth")):
        twin = filename[:-4] + ".safetensors"
    return repo_id, [twin, filename] if twin else [filename]


def _cached_weights(repo_id: str, names: list[str], cache_dir: Path) -> str | None:
    """The local path of the first of `names` already in the hub cache; no network."""
    from huggingface_hub import try_to_load_from_cache

    for name in names if repo_id else []:
        found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
        if isinstance(found, str):
            return found
    return None


def _offline_reason() -> str | None:
    """Why a download cannot work now, or None. Probes the hub only when no flag says offline."""
    from huggingface_hub import constants

    flag = offline_flag()
    if flag:
        return f"{flag} is set"
    if constants.HF_HUB_OFFLINE:
        return "the Hugging Face hub is in offline mode"
    if not host_reachable(_HUB_HOST):
        # Later hub calls in this process then fail at once instead of retrying for ~45 s.
        # huggingface_hub read the variable at import, so its constant is set as well.
        os.environ["HF_HUB_OFFLINE"] = "1"
        constants.HF_HUB_OFFLINE = True
        return f"{_HUB_HOST} is unreachable"
    return None


@contextmanager
def _quiet_open_clip(hub_offline: bool = False) -> Iterator[None]:
    """Around open_clip calls: no logging setup, and optionally the hub offline.

    open_clip logs through `logging.info(...)`, which calls basicConfig() when the root logger
    has no handler; a library must not configure the application's logging (nor print), so a
    NullHandler sits there meanwhile. huggingface_hub checks its offline constant per request.
    """
    from huggingface_hub import constants

    root, offline_before = logging.getLogger(), constants.HF_HUB_OFFLINE
    guard = None if root.handlers else logging.NullHandler()
    if guard is not None:
        root.addHandler(guard)
    constants.HF_HUB_OFFLINE = offline_before or hub_offline
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = offline_before
        if guard is not None:
            root.removeHandler(guard)


def _looks_like_path(target: str) -> bool:
    has_sep = "/" in target or os.sep in target
    return has_sep or target.startswith((".", "~")) or target.lower().endswith(WEIGHT_SUFFIXES)


def _clean_tag(tag: str) -> str:
    # open_clip's own normalisation, so `OpenAI` and `openai` name the same weights (and id).
    return tag.lower().replace("-", "_")
