"""Audio tokenizers: the `AudioCodec` protocol, EnCodec behind it, and `load_codec`."""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import safetensors.torch
import torch
from encodec import EncodecModel
from encodec.modules import SEANetDecoder, SEANetEncoder
from encodec.modules.conv import CONV_NORMALIZATIONS
from encodec.quantization import ResidualVectorQuantizer

from vabcli.config import CODEC_SAMPLE_RATE, DEFAULT_BANDWIDTH, dataclass_from_dict
from vabcli.core.atomic import atomic_output
from vabcli.core.builtin import BUILTIN, CODEC
from vabcli.core.errors import CodecError, CodecWeightsMissingError
from vabcli.encoders.ids import (
    ENCODEC_24KHZ_FILE,
    ENCODEC_URL_ROOT,
    ENCODEC_WEIGHTS_HOST,
    encodec_missing_message,
)
from vabcli.encoders.network import first_line, host_reachable, offline_flag

CODEC_CONFIG_FILE = "config.json"
CODEC_WEIGHTS_FILE = "weights.safetensors"
_FORMAT_VERSION = 1


@runtime_checkable
class AudioCodec(Protocol):
    """Turns mono waveforms into discrete token grids and back.

    `id` names the codec and its exact weights and bandwidth (cache keys depend on it).
    `encode`: float `[B, 1, S]` at `sample_rate` -> int64 `[B, K, T]`, K = `n_codebooks`,
    T = ceil(S / `hop_length`). `synthesize`: `[B, K, T]` -> float `[B, 1, T * hop_length]`.
    """

    id: str
    sample_rate: int
    hop_length: int
    frame_rate: float
    n_codebooks: int
    codebook_size: int
    causal: bool  # codes depend only on past samples (so right-padding cannot change them)

    def encode(self, wav: torch.Tensor) -> torch.Tensor: ...

    def synthesize(self, codes: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class CodecConfig:
    """Architecture of an EnCodec-style codec; saved as `config.json` beside its weights.

    `bandwidths` (kbps) lists the allowed settings; empty means one per codebook count.
    """

    name: str
    sample_rate: int
    channels: int = 1
    n_filters: int = 32
    dimension: int = 128
    ratios: tuple[int, ...] = (8, 5, 4, 2)
    lstm: int = 2
    n_q: int = 8
    bins: int = 1024
    causal: bool = True
    norm: str = "weight_norm"
    bandwidths: tuple[float, ...] = ()
    default_bandwidth: float | None = None  # None: every codebook

    def __post_init__(self) -> None:
        object.__setattr__(self, "ratios", tuple(int(r) for r in self.ratios))
        object.__setattr__(self, "bandwidths", tuple(float(b) for b in self.bandwidths))
        if self.channels != 1:
            # The protocol is mono; the field keeps the file format open to stereo.
            raise CodecError(f"codec {self.name!r}: only mono codecs are supported")
        if self.bins < 2 or self.bins & (self.bins - 1):
            raise CodecError(f"codec {self.name!r}: bins must be a power of 2, got {self.bins}")
        if self.n_q < 1 or not self.ratios or min(self.ratios) < 1:
            raise CodecError(f"codec {self.name!r}: needs n_q >= 1 and positive ratios")
        if self.norm not in CONV_NORMALIZATIONS:
            raise CodecError(f"codec {self.name!r}: unknown norm {self.norm!r}")
        bad = [b for b in self.bandwidths if self._level(b) is None]
        if bad:
            raise CodecError(
                f"codec {self.name!r}: {bad[0]:g} kbps is no whole number of codebooks"
            )

    @property
    def hop_length(self) -> int:
        return math.prod(self.ratios)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def kbps_per_codebook(self) -> float:
        return math.log2(self.bins) * self.frame_rate / 1000

    def target_bandwidths(self) -> list[float]:
        # Rounded to what a user would type: 2.067, not 2.0671875.
        if self.bandwidths:
            return list(self.bandwidths)
        return [round(k * self.kbps_per_codebook, 3) for k in range(1, self.n_q + 1)]

    def chosen_bandwidth(self, bandwidth: float | None) -> float:
        """`bandwidth` as listed, or the codec's default setting when None."""
        if bandwidth is None:
            bandwidth = self.default_bandwidth or self.target_bandwidths()[-1]
        return self.listed_bandwidth(bandwidth)

    def codebooks_for(self, bandwidth: float) -> int:
        """Codebooks used at `bandwidth` kbps, one of `target_bandwidths()`."""
        return round(self.listed_bandwidth(bandwidth) / self.kbps_per_codebook)

    def listed_bandwidth(self, bandwidth: float) -> float:
        """The `target_bandwidths()` entry for `bandwidth` (3 and 3.0001 name one setting)."""
        k = self._level(bandwidth)
        for listed in self.target_bandwidths():
            if k is not None and self._level(listed) == k:
                return listed
        choices = ", ".join(f"{b:g}" for b in self.target_bandwidths())
        raise CodecError(
            f"codec {self.name!r} has no {bandwidth:g} kbps setting (one of {choices})"
        )

    def _level(self, bandwidth: float) -> int | None:
        # round(), not encodec's floor(): at 22050 Hz a codebook is 0.6890625 kbps, and the
        # listed 2.067 kbps / 0.6890625 is 2.9998, which floor() turns into 2 codebooks.
        k = round(bandwidth / self.kbps_per_codebook)
        ok = 1 <= k <= self.n_q and abs(k * self.kbps_per_codebook - bandwidth) < 1e-3
        return k if ok else None


# Same architecture as encodec.EncodecModel.encodec_model_24khz (tests check the state dict).
ENCODEC_24KHZ = CodecConfig(
    name="encodec_24khz",
    sample_rate=24_000,
    n_q=32,
    bandwidths=(1.5, 3.0, 6.0, 12.0, 24.0),
    default_bandwidth=DEFAULT_BANDWIDTH,
)
# 235k parameters, 75 frames/s at 24 kHz: fast enough for tests, meaningless as a codec.
DEBUG_CODEC = CodecConfig(
    name="debug", sample_rate=CODEC_SAMPLE_RATE, n_filters=4, dimension=16, n_q=4
)
_DEBUG_SEED = 0
BUILTIN_CODECS = {"encodec_24khz": ENCODEC_24KHZ, "debug": DEBUG_CODEC}


def build_model(config: CodecConfig) -> EncodecModel:
    """A freshly initialised (untrained) EncodecModel with `config`'s architecture."""
    kwargs = {k: getattr(config, k) for k in ("channels", "dimension", "n_filters", "lstm")}
    kwargs.update(ratios=list(config.ratios), norm=config.norm, causal=config.causal)
    with warnings.catch_warnings():
        # encodec uses the old weight_norm (keys weight_g/weight_v); torch warns on every conv.
        warnings.filterwarnings("ignore", message=".*weight_norm.*", category=FutureWarning)
        encoder = SEANetEncoder(**kwargs)
        decoder = SEANetDecoder(**kwargs)
    quantizer = ResidualVectorQuantizer(
        dimension=config.dimension, n_q=config.n_q, bins=config.bins
    )
    return EncodecModel(
        encoder,
        decoder,
        quantizer,
        target_bandwidths=config.target_bandwidths(),
        sample_rate=config.sample_rate,
        channels=config.channels,
        name=config.name,
    )


def weights_digest(model: torch.nn.Module, config: CodecConfig) -> str:
    """sha256 over the config and every state-dict tensor (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode())
    for key, value in sorted(model.state_dict().items()):
        t = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"{key}|{t.dtype}|{tuple(value.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _check_dims(tensor: torch.Tensor, name: str, shape: str, axis: int, size: int) -> None:
    if tensor.dim() != 3 or tensor.shape[axis] != size:
        raise ValueError(
            f"{name} must be {shape} with size {size} on axis {axis}, got {tuple(tensor.shape)}"
        )


class EncodecAudioCodec:
    """An `AudioCodec` over an EncodecModel at one bandwidth; the model is frozen in eval().

    Uses the encoder and quantizer directly: one frame, no segmenting or normalising.
    `id` is computed once here, so the model must not change afterwards.
    """

    def __init__(
        self,
        model: EncodecModel,
        config: CodecConfig,
        bandwidth: float | None = None,
        device: str = "cpu",
    ) -> None:
        if model.normalize or model.segment is not None:
            raise CodecError(f"codec {config.name!r}: normalised or segmented models unsupported")
        bandwidth = config.chosen_bandwidth(bandwidth)
        self.n_codebooks = config.codebooks_for(bandwidth)
        # Keeps encodec's own encode() in step; ours passes n_q itself, as encodec's floor() of
        # a float ratio can drop a level.
        model.set_target_bandwidth(bandwidth)
        self.model = model.to(torch.device(device)).eval().requires_grad_(False)
        self.config = config
        self.sample_rate = config.sample_rate
        self.hop_length = config.hop_length
        self.frame_rate = config.frame_rate
        self.codebook_size = config.bins
        self.bandwidth = bandwidth
        self.causal = config.causal
        self.id = f"{config.name}@{bandwidth:g}kbps-{weights_digest(model, config)[:8]}"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """float `[B, 1, S]` -> int64 `[B, K, ceil(S / hop_length)]` on the codec's device."""
        _check_dims(wav, "wav", "[B, 1, S]", axis=1, size=1)
        if wav.shape[-1] == 0:
            raise ValueError("wav is empty")
        with torch.inference_mode():
            emb = self.model.encoder(wav.to(self.device, torch.float32))  # [B, D, T]
            codes = self.model.quantizer.vq.encode(emb, n_q=self.n_codebooks)  # [K, B, T]
        expected = math.ceil(wav.shape[-1] / self.hop_length)
        assert codes.shape[-1] == expected, (codes.shape, expected)
        # clone() outside inference mode: inference tensors cannot be saved for backward,
        # which breaks a caller that feeds codes to an nn.Embedding in training.
        return codes.transpose(0, 1).clone()

    def synthesize(self, codes: torch.Tensor) -> torch.Tensor:
        """int `[B, K, T]` -> float `[B, 1, T * hop_length]` on the codec's device."""
        _check_dims(codes, "codes", "[B, K, T]", axis=1, size=self.n_codebooks)
        if codes.is_floating_point() or codes.is_complex():
            raise ValueError(f"codes must be integers, got {codes.dtype}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size})")
        with torch.inference_mode():
            emb = self.model.quantizer.decode(codes.to(self.device, torch.long).transpose(0, 1))
            wav = self.model.decoder(emb)
        return wav.clone()


_denormals_flushed = False


def load_codec(
    name: str = "encodec_24khz",
    weights: Path | None = None,
    bandwidth: float | None = None,
    device: str = "cpu",
) -> AudioCodec:
    """The codec called `name` (`encodec_24khz`, `builtin`, `debug`, or a codec folder) at
    `bandwidth` kbps (None: the codec's default, 3 for encodec_24khz, else every codebook).

    `weights` (the `--codec-weights FILE` option) overrides where `encodec_24khz` weights come
    from: a torch state dict (`.th`/`.pt`) or a `.safetensors` file.
    """
    global _denormals_flushed
    if not _denormals_flushed:
        # Denormal floats in conv/LSTM states made one CPU codec step 40x slower (13 s vs 0.3 s).
        torch.set_flush_denormal(True)
        _denormals_flushed = True
    if weights is not None and name != "encodec_24khz":
        raise CodecError(f"--codec-weights applies to encodec_24khz only, not to codec {name!r}")
    if name == BUILTIN:
        folder: Path | None = CODEC.require()
    else:
        folder = None if name in BUILTIN_CODECS else _codec_dir(name)
    config = (
        BUILTIN_CODECS[name] if folder is None else read_codec_config(folder / CODEC_CONFIG_FILE)
    )
    config.chosen_bandwidth(bandwidth)  # a bad bandwidth fails before any weights are read
    if folder is not None:
        state = _load_weights_file(folder / CODEC_WEIGHTS_FILE)
    elif name == "debug":
        return EncodecAudioCodec(_seeded_model(config), config, bandwidth, device)
    else:
        state = _load_weights_file(Path(weights)) if weights else _pretrained_24khz_state()
    return EncodecAudioCodec(_model_with_state(config, state, name), config, bandwidth, device)


def _seeded_model(config: CodecConfig) -> EncodecModel:
    # fork_rng: the fixed seed must not reset the caller's global random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_DEBUG_SEED)
        return build_model(config)


def _model_with_state(
    config: CodecConfig, state: dict[str, torch.Tensor], source: str
) -> EncodecModel:
    model = build_model(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or extra or wrong:
        example = (missing or extra or wrong)[0]
        raise CodecError(
            f"weights for {source} do not fit the {config.name} architecture: {len(missing)} "
            f"missing, {len(extra)} unexpected, {len(wrong)} wrong-shaped tensors (e.g. {example})"
        )
    model.load_state_dict(state)
    return model


def _load_weights_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CodecWeightsMissingError(f"codec weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            state = safetensors.torch.load_file(str(path), device="cpu")
        else:
            state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # any unreadable file is one user error
        raise CodecError(f"cannot read codec weights {path}: {first_line(exc)}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CodecError(f"codec weights {path} are not a state dict of tensors")
    return state


def hub_weights_path() -> Path:
    """Where encodec's download keeps the 24 kHz weights (follows $TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ENCODEC_24KHZ_FILE


def _pretrained_24khz_state() -> dict[str, torch.Tensor]:
    cached = hub_weights_path()
    if cached.is_file():
        return _load_weights_file(cached)
    if offline_flag() or not host_reachable(ENCODEC_WEIGHTS_HOST):
        raise CodecWeightsMissingError(encodec_missing_message(cached))
    try:
        return torch.hub.load_state_dict_from_url(
            ENCODEC_URL_ROOT + ENCODEC_24KHZ_FILE,
            map_location="cpu",
            progress=False,  # the library never prints
            check_hash=True,
            weights_only=True,
        )
    except Exception as exc:  # network, disk, hash failures alike
        raise CodecWeightsMissingError(
            f"downloading {ENCODEC_24KHZ_FILE} failed ({first_line(exc)}): "
            f"put it in {cached.parent}/ or pass --codec-weights FILE"
        ) from exc


def _codec_dir(name: str) -> Path:
    folder = Path(name).expanduser()
    if folder.is_dir():
        for file in (CODEC_CONFIG_FILE, CODEC_WEIGHTS_FILE):
            if not (folder / file).is_file():
                raise CodecError(f"codec folder {folder} has no {file}")
        return folder
    if folder.exists() or os.sep in name or "/" in name or name.startswith((".", "~")):
        raise CodecError(
            f"no codec folder at {name} (a codec folder holds {CODEC_CONFIG_FILE} and "
            f"{CODEC_WEIGHTS_FILE}; for an EnCodec weights file use --codec-weights FILE)"
        )
    raise CodecError(
        f"unknown codec {name!r}: use {', '.join([BUILTIN, *BUILTIN_CODECS])}, or a folder with "
        f"{CODEC_CONFIG_FILE} and {CODEC_WEIGHTS_FILE}"
    )


def read_codec_config(path: Path) -> CodecConfig:
    """Parse a codec `config.json`; unknown keys are an error (a typo must not be ignored)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CodecError(f"cannot read codec config {path}: {exc}") from exc
    if not isinstance(data, dict) or data.pop("format_version", None) != _FORMAT_VERSION:
        raise CodecError(f"{path} is not a vab codec config (format_version {_FORMAT_VERSION})")
    try:
        return dataclass_from_dict(CodecConfig, data)
    except ValueError as exc:
        raise CodecError(f"codec config {path}: {exc}") from exc


def save_codec_dir(model: EncodecModel, config: CodecConfig, folder: Path) -> None:
    """Write `folder/config.json` and `folder/weights.safetensors`, each atomically.

    Overwrites an existing codec there (a training run re-saving its codec is the normal case).
    """
    if not isinstance(model, EncodecModel):
        raise TypeError(f"expected an unwrapped EncodecModel, got {type(model).__name__}")
    if model.quantizer.n_q != config.n_q or model.encoder.dimension != config.dimension:
        raise ValueError("model does not match config (n_q or dimension differ)")
    # safetensors refuses tensors that share memory or are not contiguous: give each its own.
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    with atomic_output(folder / CODEC_WEIGHTS_FILE, overwrite=True) as tmp:
        safetensors.torch.save_file(state, str(tmp), metadata={"codec": config.name})
    text = json.dumps({"format_version": _FORMAT_VERSION, **asdict(config)}, indent=2)
    with atomic_output(folder / CODEC_CONFIG_FILE, overwrite=True) as tmp:
        tmp.write_text(text + "\n")
