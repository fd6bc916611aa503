"""Pictures of where sounds land (`vab eval --plot DIR`): per clip, the log-mel spectrogram of the
real audio above that of the generated audio, on one time axis, with the true events marked (one
colour per source, named in the legend) in both, so a late, missing or extra sound shows at a
glance. Needs matplotlib (`pip install 'vabcli[plot]'`); drawn off-screen (Agg), so it works on a
machine without a display.
"""

from __future__ import annotations

from pathlib import Path

from vabcli.core.errors import VabError
from vabcli.evaluation.generated_audio import ClipAudio, labelled_sounds
from vabcli.evaluation.metrics import BAND_FLOOR_DB, EVAL_SAMPLE_RATE, HOP_SECONDS, mel_db

FIGURE_INCHES = (10.0, 4.5)
DPI = 100


def plot_clips(clips: list[ClipAudio], folder: Path) -> list[Path]:
    """One PNG per clip with generated audio, FOLDER/<video stem>.png (stems made unique
    within the folder); returns their paths."""
    plt = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    taken: set[str] = set()
    for clip in clips:
        if clip.generated is None:
            continue
        path = folder / f"{_unique_stem(clip.entry.video.stem, taken)}.png"
        figure = spectrogram_figure(clip)
        figure.savefig(path, dpi=DPI)
        plt.close(figure)
        written.append(path)
    return written


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise VabError("--plot needs matplotlib: pip install 'vabcli[plot]'") from None
    matplotlib.use("Agg")  # no display needed; must come before pyplot is imported
    import matplotlib.pyplot as plt

    return plt


def _unique_stem(stem: str, taken: set[str]) -> str:
    """`stem`, or `stem-2`, `stem-3`, ... when clips of two folders share a name."""
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}"
    taken.add(name)
    return name


def spectrogram_figure(clip: ClipAudio):
    """The matplotlib Figure of one clip (with generated audio): two axes, real then generated,
    each an image of `mel_db` (bands x 10 ms frames) and a dashed line at every true event."""
    assert clip.generated is not None
    plt = _pyplot()
    onsets, labels = labelled_sounds(clip)
    colours = {label: f"C{i}" for i, label in enumerate(dict.fromkeys(labels))}
    figure, axes = plt.subplots(2, 1, figsize=FIGURE_INCHES, sharex=True, constrained_layout=True)
    rows = (("real", clip.real), ("generated", clip.generated))
    for axis, (name, wav) in zip(axes, rows, strict=True):
        spec = mel_db(wav)
        seconds = len(spec) * HOP_SECONDS
        axis.imshow(
            spec.T,
            origin="lower",
            aspect="auto",
            extent=(0.0, seconds, 0, spec.shape[1]),
            vmin=BAND_FLOOR_DB,
            vmax=max(BAND_FLOOR_DB + 1.0, float(spec.max())),
            cmap="magma",
        )
        for onset, label in zip(onsets, labels, strict=True):
            axis.axvline(onset, color=colours[label], linewidth=1.2, linestyle="--", label=label)
        axis.set_ylabel(f"{name}\nmel band")
    handles, names = axes[0].get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=True))  # one legend entry per source label
    if unique:
        axes[0].legend(unique.values(), unique.keys(), loc="upper right", fontsize="small")
    duration = len(clip.real) / EVAL_SAMPLE_RATE
    axes[1].set_xlim(0.0, duration)  # the video's length, however long the generated audio
    label = clip.entry.label if isinstance(clip.entry.label, str) else ""
    axes[0].set_title(f"{clip.entry.video.name}  ({duration:.2f} s)  {label}".rstrip())
    axes[1].set_xlabel("seconds (dashed: true events)")
    return figure
