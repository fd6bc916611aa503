"""`vab eval`: measures of generated audio against a reference manifest, and of a model's
audio-visual retrieval on it."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from vabcli.cli.common import (
    EXIT_INTERRUPTED,
    CacheOpt,
    DeviceOpt,
    JsonOpt,
    QuietOpt,
    WorkersOpt,
    app,
    in_range,
)
from vabcli.cli.console import print_error, print_warning, progress_bars
from vabcli.core.errors import VabError

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
    ] = 100.0,
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
    cache: CacheOpt = None,
    device: DeviceOpt = "auto",
    workers: WorkersOpt = 2,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Score generated audio against the reference clips' ground truth.

    Measures, named for what they compute (not FAD, KL or DeSync, which need pretrained audio
    networks): onset_f1 / onset_precision / onset_recall and onset_offset_ms against the
    manifest's events; class_acc, by a nearest-centroid judge fitted on real audio; fd_logmel;
    duration_error_ms; silence_ratio; clipping. Exit code 1 if some clip has no generated audio.

    --task retrieval --model CKPT: each reference clip's pictures search all clips' sounds (v2a)
    and its sound all pictures (a2v); R@1/5/10 both ways, with chance (k / N). Any checkpoint of
    the project: a contrastive fine-tune, or a pre-trained one (its pooled multiway outputs).

    --task classify --model CKPT: a classifier (`vab finetune classify`, a linear probe of any
    checkpoint or a fine-tune) against the reference's labels: accuracy (top label right), and
    mAP for label lists. A label the model does not know is an error.
    """
    from vabcli.evaluation.generated_audio import EvalOptions, fit_judge, load_pairs, score

    if task in ("retrieval", "classify"):
        if model is None:
            raise typer.BadParameter(f"--task {task} needs it", param_hint="--model")
        run = _eval_retrieval if task == "retrieval" else _eval_classify
        run(model, reference, cache, device, workers, as_json, quiet)
        return
    if task != "generation":
        raise typer.BadParameter("generation, retrieval or classify", param_hint="--task")
    if generated is None:
        raise typer.BadParameter("--task generation needs it", param_hint="--generated")
    if not generated.is_dir():
        raise typer.BadParameter(f"{generated} is not a folder", param_hint="--generated")
    opts = EvalOptions(tolerance=tolerance / 1000)
    bars = progress_bars(quiet)
    with _one_line_failures(), bars:
        task = bars.add_task("reading audio", total=None)
        clips = load_pairs(generated, reference, workers, lambda: bars.advance(task))
        judge_clips = clips
        if judge_data is not None:
            judge_clips = load_pairs(None, judge_data, workers, lambda: bars.advance(task))
        bars.update(task, description="scoring")
        scores = score(clips, fit_judge(judge_clips), opts)
    if as_json:
        print(json.dumps({"generated": str(generated), "reference": str(reference), **scores}))
    else:
        _show(scores, tolerance)
    for clip in clips:
        if clip.generated is None:
            print_warning(f"no generated audio for {clip.entry.video}")
    raise typer.Exit(1 if scores["missing"] else 0)


@contextmanager
def _one_line_failures() -> Iterator[None]:
    """Ctrl-C exits 130 with "interrupted"; a failure (bad model, unreadable file) exits 1 with
    its one-line message."""
    try:
        yield
    except KeyboardInterrupt:
        print_error("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except (VabError, OSError) as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None


def _eval_retrieval(
    model: Path,
    reference: Path,
    cache: Path | None,
    device: str,
    workers: int,
    as_json: bool,
    quiet: bool,
) -> None:
    import torch

    from vabcli.cli.embed import _latents
    from vabcli.core.device import resolve_device
    from vabcli.data.clips import clip_items
    from vabcli.tasks.embedding import load_embedder
    from vabcli.tasks.retrieval import retrieval_scores

    with _one_line_failures():
        embedder = load_embedder(model, resolve_device(device))
        visual, audio, skipped = [], [], 0
        items = clip_items(None, reference)
        for _item, error, features, codes in _latents(items, embedder, cache, device, workers,
                                                       quiet):  # fmt: skip
            if error or codes is None:  # no pair to find
                skipped += 1
                continue
            visual.append(embedder.visual(features))
            audio.append(embedder.audio(codes))
        if len(visual) < 2:
            raise VabError(f"{reference}: fewer than two clips with pictures and sound")
        scores = retrieval_scores(torch.from_numpy(np.stack(visual)),
                                  torch.from_numpy(np.stack(audio)))  # fmt: skip
    summary = {"task": "retrieval", "model": str(model), "reference": str(reference),
               "clips": len(visual), "skipped": skipped,
               **{k: round(v, 4) for k, v in scores.items()}}  # fmt: skip
    if as_json:
        print(json.dumps(summary))
        return
    print(f"{'clips':10s} {len(visual)} ({skipped} without audio or failed)")
    for k in (1, 5, 10):
        print(f"R@{k:<8d} v2a {scores[f'r{k}_v2a']:.3f}  a2v {scores[f'r{k}_a2v']:.3f}  "
              f"(chance {scores[f'chance_r{k}']:.3f})")  # fmt: skip


def _eval_classify(
    model: Path,
    reference: Path,
    cache: Path | None,
    device: str,
    workers: int,
    as_json: bool,
    quiet: bool,
) -> None:
    from vabcli.cli.embed import _latents
    from vabcli.core.device import resolve_device
    from vabcli.data.clips import clip_items
    from vabcli.tasks.classify import classification_scores, label_targets, load_classifier

    with _one_line_failures():
        classifier = load_classifier(model, resolve_device(device))
        spec = classifier.spec
        listed = clip_items(None, reference)
        items = [i for i in listed if i.label is not None]
        skipped = len(listed) - len(items)
        # Every label is checked before any clip is decoded: a wrong manifest fails at once.
        targets = [label_targets([i.label], spec.labels, f"line {i.line} of {reference}: ")
                   for i in items]  # fmt: skip
        probs, truth = [], []
        for (_item, error, features, codes), target in zip(
            _latents(items, classifier, cache, device, workers, quiet), targets, strict=True
        ):
            if error or (codes is None and classifier.needs_audio):
                skipped += 1
                continue
            probs.append(classifier.probabilities(features, codes))
            truth.append(target[0].numpy())
        if not probs:
            raise VabError(f"{reference}: no labelled clip could be classified")
        scores = classification_scores(np.stack(probs), np.stack(truth), spec.multi_label)
    summary = {"task": "classify", "model": str(model), "reference": str(reference),
               "modality": spec.modality, "clips": len(probs), "skipped": skipped,
               "labels": len(spec.labels), "chance": round(1 / len(spec.labels), 4),
               **{k: round(v, 4) for k, v in scores.items()}}  # fmt: skip
    if as_json:
        print(json.dumps(summary))
        return
    print(f"{'clips':10s} {len(probs)} ({skipped} without a label, failed, or without audio)")
    print(f"{'accuracy':10s} {scores['accuracy']:.3f}  (top label right; chance "
          f"{summary['chance']:.3f} over {len(spec.labels)} labels)")  # fmt: skip
    if "map" in scores:
        print(f"{'mAP':10s} {scores['map']:.3f}")
