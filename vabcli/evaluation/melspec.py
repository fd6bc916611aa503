"""Log-mel spectrograms in torch (no torchaudio): for codec training losses and for `vab eval`."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

LOG_FLOOR = 1e-10  # -100 dB: silence maps to a fixed floor, not to -inf


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10 ** (mel / 2595.0) - 1.0)


@lru_cache(maxsize=32)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """Triangular filters `[n_mels, n_fft // 2 + 1]`, HTK mel scale, 0 Hz to Nyquist, each
    normalised to unit area (so a filter narrower than one FFT bin still sees its bin)."""
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(0, _hz_to_mel(np.array(sample_rate / 2)), n_mels + 2))
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - low) / np.maximum(centre - low, 1e-9)
    falling = (high - bins) / np.maximum(high - centre, 1e-9)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    # The nearest bin to each centre gets at least a little weight: no filter is all zeros.
    nearest = np.abs(bins[None, :] - centre).argmin(axis=1)
    weights[np.arange(n_mels), nearest] = np.maximum(weights[np.arange(n_mels), nearest], 1e-3)
    weights /= weights.sum(axis=1, keepdims=True)
    return torch.from_numpy(weights.astype(np.float32))


def mel_power(wav: torch.Tensor, sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """float `[B, S]` -> mel power `[B, n_mels, frames]` (hop n_fft / 4, Hann window), scaled
    by the window's gain so that a full-scale sine reads about 0 dB at any n_fft."""
    window = torch.hann_window(n_fft, device=wav.device)
    spec = torch.stft(wav, n_fft, n_fft // 4, window=window, return_complex=True)
    power = (spec.real.square() + spec.imag.square()) / (n_fft / 2) ** 2
    return mel_filterbank(sample_rate, n_fft, n_mels).to(wav.device) @ power


def log_mel(
    wav: torch.Tensor, sample_rate: int, n_fft: int = 512, n_mels: int = 64
) -> torch.Tensor:
    """float `[B, S]` -> log10 mel power `[B, n_mels, frames]`, floored at LOG_FLOOR."""
    return torch.log10(mel_power(wav, sample_rate, n_fft, n_mels).clamp_min(LOG_FLOOR))
