"""`vab eval`: measures of generated audio against a reference manifest."""

import json
from pathlib import Path
from typing import Annotated

import typer

from .cli_common import EXIT_INTERRUPTED, JsonOpt, QuietOpt, WorkersOpt, app
from .console import print_error, print_warning, progress_bars
from .errors import VabError

_EXPLAINED = {
    "onset_f1": "detected onsets matching a true event within the tolerance (F1)",
    "onset_offset_ms": "mean distance, true event to nearest detected onset (capped at 1 s)",
    "class_acc": "clips a judge fitted on real audio hears as their label",
    "fd_logmel": "Frechet distance of log-mel frame statistics, generated vs real",
    "duration_error_ms": "mean |generated - video| length",
    "silence_ratio": "fraction of 10 ms frames below -50 dBFS",
    "clipping": "fraction of samples at full scale",
}


def _show(scores: dict, tolerance_ms: float) -> None:
    print(f"{'clips':18s} {scores['clips']} ({scores['missing']} without generated audio)")
    for name, meaning in _EXPLAINED.items():
        value = scores[name]
        text = "n/a" if value is None else f"{value:.4g}"
        if name == "onset_f1" and value is not None:
            text += (
                f" (precision {scores['onset_precision']:.3g}, recall "
                f"{scores['onset_recall']:.3g}, within {tolerance_ms:g} ms)"
            )
        if name == "silence_ratio":
            text += f" (reference {scores['silence_ratio_reference']:.3g})"
        print(f"{name:18s} {text:12s}  {meaning}")


@app.command(name="eval")
def eval_command(
    generated: Annotated[
        Path,
        typer.Option(
            "--generated",
            metavar="DIR",
            help="Output folder of `vab generate --data MANIFEST`: DIR/<clip>.wav|.flac|.mp4.",
        ),
    ],
    reference: Annotated[
        Path,
        typer.Option(
            "--reference",
            metavar="MANIFEST",
            help="The manifest that was dubbed: its videos' own audio, labels and events are "
            "the truth.",
        ),
    ],
    tolerance: Annotated[
        float,
        typer.Option(
            "--tolerance", metavar="MS", min=1, help="How close a detected onset must be to count."
        ),
    ] = 100.0,
    judge_data: Annotated[
        Path | None,
        typer.Option(
            "--judge-data",
            metavar="MANIFEST",
            help="Fit the class judge on these clips' real audio [default: the reference's].",
        ),
    ] = None,
    workers: WorkersOpt = 2,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Score generated audio against the reference clips' ground truth.

    Measures, named for what they compute (not FAD, KL or DeSync, which need pretrained audio
    networks): onset_f1 / onset_precision / onset_recall and onset_offset_ms against the
    manifest's events; class_acc, by a nearest-centroid judge fitted on real audio; fd_logmel;
    duration_error_ms; silence_ratio; clipping. Exit code 1 if some clip has no generated audio.
    """
    from .evaluate import EvalOptions, fit_judge, load_pairs, score

    if not generated.is_dir():
        raise typer.BadParameter(f"{generated} is not a folder", param_hint="--generated")
    opts = EvalOptions(tolerance=tolerance / 1000)
    bars = progress_bars(quiet)
    try:
        with bars:
            task = bars.add_task("reading audio", total=None)
            clips = load_pairs(generated, reference, workers, lambda: bars.advance(task))
            judge_clips = clips
            if judge_data is not None:
                judge_clips = load_pairs(None, judge_data, workers, lambda: bars.advance(task))
            bars.update(task, description="scoring")
            scores = score(clips, fit_judge(judge_clips), opts)
    except KeyboardInterrupt:
        print_error("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except VabError as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps({"generated": str(generated), "reference": str(reference), **scores}))
    else:
        _show(scores, tolerance)
    for clip in clips:
        if clip.generated is None:
            print_warning(f"no generated audio for {clip.entry.video}")
    raise typer.Exit(1 if scores["missing"] else 0)
