"""Encoders without torch: their ids from memory, and a quick check that weights can be had.

An encoder's `id` (name plus a hash of its weights) is part of every cache key it produces, and
computing it means building the model and hashing its tensors: seconds of work. The id is
remembered in the cache under a *stamp* of everything it was built from (the spec, the options
and the size, mtime and inode of each weights file), so while none of that changes the id is
read back instead. This module must stay free of torch and the model libraries.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from vabcli import __version__
from vabcli.core.builtin import BUILTIN, CODEC, VISION
from vabcli.core.cache import FORMAT_VERSION, Cache
from vabcli.core.errors import CodecWeightsMissingError
from vabcli.encoders.network import host_reachable, offline_flag

# Where encodec's own download puts the 24 kHz weights (torch.hub.get_dir()/checkpoints; tests
# check torch_hub_dir agrees with torch) and where it fetches them from. The hash in the name
# is the file's sha256 prefix.
ENCODEC_24KHZ_FILE = "encodec_24khz-d7cc33bc.th"
ENCODEC_URL_ROOT = "https://dl.fbaipublicfiles.com/encodec/v0/"
ENCODEC_WEIGHTS_HOST = "dl.fbaipublicfiles.com"


def torch_hub_dir() -> Path:
    """torch.hub.get_dir(), without importing torch: $TORCH_HOME/hub, else XDG cache/torch/hub."""
    torch_home = os.environ.get("TORCH_HOME")
    if not torch_home:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
        torch_home = os.path.join(xdg, "torch")
    return Path(os.path.expanduser(torch_home)) / "hub"


def encodec_missing_message(hub_file: Path) -> str:
    return (
        f"EnCodec weights not found and no network: put {ENCODEC_24KHZ_FILE} "
        f"(from {ENCODEC_URL_ROOT}{ENCODEC_24KHZ_FILE}) in {hub_file.parent}/ "
        "or pass --codec-weights FILE"
    )


def preflight_codec(name: str, weights: Path | None) -> None:
    """Fail in a moment, before torch is even imported, when the codec's weights cannot be had.

    Only `encodec_24khz` has weights to fetch; a named file must exist; the hub-cache file must
    exist unless a download can work.
    """
    if name != "encodec_24khz":
        return
    if weights is not None:
        if not Path(weights).is_file():
            raise CodecWeightsMissingError(f"codec weights file {weights} does not exist")
        return
    hub_file = torch_hub_dir() / "checkpoints" / ENCODEC_24KHZ_FILE
    if not hub_file.is_file() and (offline_flag() or not host_reachable(ENCODEC_WEIGHTS_HOST)):
        raise CodecWeightsMissingError(encodec_missing_message(hub_file))


def _file_stamps(paths: list[Path]) -> list[list] | None:
    """[path, size, mtime_ns, inode] per file; None if any is missing (the id is unknowable)."""
    stamps = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            return None
        stamps.append([str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino])
    return stamps


def codec_stamp(name: str, weights: Path | None, bandwidth: float | None) -> str | None:
    if name == "debug":
        files: list[Path] = []  # built from code: the package version stands for it
    elif name == "encodec_24khz":
        files = [weights or torch_hub_dir() / "checkpoints" / ENCODEC_24KHZ_FILE]
    else:
        folder = CODEC.folder if name == BUILTIN else Path(name).expanduser()
        files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
        if not files:
            return None
    return _stamp("codec", name, bandwidth, files)


def visual_stamp(spec: str) -> str | None:
    if spec == "debug":
        files: list[Path] = []
    elif spec.startswith("local-dir:") or spec == BUILTIN:
        local = Path(spec.removeprefix("local-dir:")).expanduser()
        folder = VISION.folder if spec == BUILTIN else local
        files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
        if not files:
            return None
    else:
        _, _, pretrained = spec.partition(":")
        # A weights file is stamped by its state; a published tag names fixed weights.
        weights = Path(pretrained).expanduser()
        files = [weights] if weights.is_file() else []
    return _stamp("visual", spec, None, files)


def _stamp(kind: str, spec: str, option: float | None, files: list[Path]) -> str | None:
    stamps = _file_stamps(files)
    if stamps is None:
        return None
    # The cache format is in the stamp: a memo written before records were sealed is not read.
    blob = json.dumps([kind, spec, option, stamps, __version__, FORMAT_VERSION])
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class EncoderIds:
    """The remembered ids, under `<cache>/encoders/`, sealed like every cache record: a damaged
    or edited one is reported and recomputed, one that is right is never written again (so a
    cache holding everything can be read-only), and a cache that cannot be written forgets."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.folder = cache.root / "encoders"

    def get(self, stamp: str | None) -> str | None:
        if stamp is None:
            return None
        record = self.cache.recall(self.folder / f"{stamp}.json")
        if record and record.get("stamp") == stamp and isinstance(record.get("id"), str):
            return record["id"]
        return None

    def remember(self, stamp: str | None, encoder_id: str) -> None:
        if stamp is not None and self.get(stamp) != encoder_id:
            self.cache.remember(self.folder / f"{stamp}.json", {"stamp": stamp, "id": encoder_id})
