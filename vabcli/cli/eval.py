"""`vab eval`: measures of generated audio against a reference manifest, and of a model's
audio-visual retrieval on it."""

import json
from pathlib import Path
from typing import Annotated

import typer

from vabcli.cli.common import (
    SharedOptions,
    app,
    in_range,
    one_line_failures,
    open_cache,
    shared_options,
)
from vabcli.cli.console import TokenizeBars, print_warning, progress_bars, stderr
from vabcli.evaluation.options import EvalOptions
from vabcli.tasks.options import ClipOptions

_EXPLAINED = {
    "onset_f1": "detected onsets matching a true event within the tolerance (F1)",
    "onset_offset_ms": "mean distance, true event to nearest detected onset (capped at 1 s)",
    "class_acc": "clips a judge fitted on real audio hears as their label",
    "event_class_acc": "true events whose generated sound the judge hears as their source",
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
@shared_options
def eval_command(
    reference: Annotated[
        Path,
        typer.Option(
            "--reference",
            metavar="MANIFEST",
            help="The manifest that was dubbed: its videos' own audio, labels and events are "
            "the truth.",
        ),
    ],
    generated: Annotated[
        Path | None,
        typer.Option(
            "--generated",
            metavar="DIR",
            help="Output folder of `vab generate --data MANIFEST`: DIR/<clip>.wav|.flac|.mp4.",
        ),
    ] = None,
    tolerance: Annotated[
        float,
        typer.Option(
            "--tolerance",
            metavar="MS",
            callback=in_range(1, 10_000),
            help="How close a detected onset must be to count.",
        ),
    ] = EvalOptions.tolerance * 1000,
    judge_data: Annotated[
        Path | None,
        typer.Option(
            "--judge-data",
            metavar="MANIFEST",
            help="Fit the class judge on these clips' real audio [default: the reference's].",
        ),
    ] = None,
    task: Annotated[
        str,
        typer.Option(
            "--task",
            metavar="generation|retrieval|classify",
            help="Score generated audio, or a model's audio-visual retrieval or classification "
            "(--model).",
        ),
    ] = "generation",
    model: Annotated[
        Path | None,
        typer.Option(
            "--model", metavar="CKPT", help="Checkpoint for --task retrieval or classify."
        ),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            metavar="DIR",
            help="Also draw DIR/<clip>.png per clip: real and generated spectrograms, one above "
            "the other, true events marked (needs matplotlib: pip install 'vabcli[plot]').",
        ),
    ] = None,
    *,
    shared: SharedOptions,
) -> None:
    """Score generated audio against the reference clips' ground truth.

    Measures, named for what they compute (not FAD, KL or DeSync, which need pretrained audio
    networks): onset_f1 / onset_precision / onset_recall and onset_offset_ms against the
    manifest's events; class_acc (clips) and event_class_acc (each true event, as its source),
    by a nearest-centroid judge fitted on real audio; fd_logmel; duration_error_ms;
    silence_ratio; clipping. Exit code 1 if some clip has no generated audio.

    --task retrieval --model CKPT: each reference clip's pictures search all clips' sounds (v2a)
    and its sound all pictures (a2v); R@1/5/10 both ways, with chance (k / N). Any checkpoint of
    the project: a contrastive fine-tune, or a pre-trained one (its pooled multiway outputs).

    --task classify --model CKPT: a classifier (`vab finetune classify`, a linear probe of any
    checkpoint or a fine-tune) against the reference's labels: accuracy (top label right), and
    mAP for label lists. A label the model does not know is an error.
    """
    from vabcli.evaluation.generated_audio import READING, evaluate_generated

    if task in ("retrieval", "classify"):
        if model is None:
            raise typer.BadParameter(f"--task {task} needs it", param_hint="--model")
        _show_backbone(task, model, reference, shared)
        return
    if task != "generation":
        raise typer.BadParameter("generation, retrieval or classify", param_hint="--task")
    if generated is None:
        raise typer.BadParameter("--task generation needs it", param_hint="--generated")
    if not generated.is_dir():
        raise typer.BadParameter(f"{generated} is not a folder", param_hint="--generated")
    bars = progress_bars(shared.quiet)
    with one_line_failures(), bars:
        stage = bars.add_task(READING, total=None)
        result = evaluate_generated(
            generated,
            reference,
            EvalOptions(tolerance=tolerance / 1000),
            judge_data,
            shared.workers,
            lambda step: bars.update(stage, description=step, advance=int(step == READING)),
            plot,
        )
    if shared.as_json:
        paths = {"generated": str(generated), "reference": str(reference)}
        print(json.dumps({**paths, **result.scores}))
    else:
        _show(result.scores, tolerance)
    if plot is not None and not shared.quiet:
        stderr.print(f"{len(result.plots)} spectrogram pictures in {plot}")
    for video in result.missing:
        print_warning(f"no generated audio for {video}")
    raise typer.Exit(1 if result.scores["missing"] else 0)


def _show_backbone(task: str, model: Path, reference: Path, shared: SharedOptions) -> None:
    """Score a retrieval model or a classifier on the reference; print the summary."""
    from vabcli.evaluation.backbone import evaluate_backbone

    opts = ClipOptions(device=shared.device, workers=shared.workers)
    with one_line_failures(), TokenizeBars(shared.quiet) as bars:
        summary = evaluate_backbone(task, model, reference, open_cache(shared.cache), opts, bars)
    # JSON gives the measures to 4 decimals, and the text the chance it gives; other text
    # figures come from the measures themselves.
    rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()}
    if shared.as_json:
        print(json.dumps(rounded))
    elif task == "retrieval":
        print(f"{'clips':10s} {summary['clips']} ({summary['skipped']} without audio or failed)")
        for k in (1, 5, 10):
            v2a, a2v = summary[f"r{k}_v2a"], summary[f"r{k}_a2v"]
            chance = summary[f"chance_r{k}"]
            print(f"R@{k:<8d} v2a {v2a:.3f}  a2v {a2v:.3f}  (chance {chance:.3f})")
    else:
        skipped = f"{summary['skipped']} without a label, failed, or without audio"
        print(f"{'clips':10s} {summary['clips']} ({skipped})")
        chance = f"chance {rounded['chance']:.3f} over {summary['labels']} labels"
        print(f"{'accuracy':10s} {summary['accuracy']:.3f}  (top label right; {chance})")
        if "map" in summary:
            print(f"{'mAP':10s} {summary['map']:.3f}")
