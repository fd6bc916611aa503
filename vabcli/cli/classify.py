"""`vab classify`: labels of clips, with probabilities, from a classifier fine-tune."""

from pathlib import Path
from typing import Annotated, Any

import typer

from vabcli.cli.common import (
    DataOpt,
    InputsArg,
    SharedOptions,
    app,
    clips_given,
    print_clip_answers,
    shared_options,
)
from vabcli.cli.console import AnswerRows
from vabcli.tasks.options import ClassifyOptions


@app.command()
@shared_options
def classify(
    model: Annotated[
        Path,
        typer.Option("--model", metavar="CKPT", help="A classifier (vab finetune classify)."),
    ],
    inputs: InputsArg = None,
    data: DataOpt = None,
    top_k: Annotated[
        int, typer.Option("--top-k", metavar="K", min=1, help="Labels shown per clip.")
    ] = ClassifyOptions.top_k,
    *,
    shared: SharedOptions,
) -> None:
    """Labels of each clip with their probabilities (softmax; per-label sigmoids for a
    multi-label model), most likely first. Clips are pooled window by window at the length the
    model was trained on. JSON lines: input, status, error, label (the top one), scores
    {label: probability} of the top K. Exit code 1 if a clip failed."""
    from vabcli.tasks.answers import classify_clips

    clips_given(inputs, data)
    opts = ClassifyOptions(device=shared.device, workers=shared.workers, top_k=top_k)
    print_clip_answers(
        inputs,
        data,
        lambda items, cache, bars: classify_clips(model, items, cache, opts, bars),
        AnswerRows(_top_labels, {"label": None, "scores": {}}, _shown_labels),
        shared,
    )


def _top_labels(top: list[tuple[str, float]]) -> dict[str, Any]:
    return {"label": top[0][0], "scores": {label: round(p, 6) for label, p in top}}


def _shown_labels(row: dict[str, Any]) -> str:
    return ", ".join(f"{label} ({p:.3f})" for label, p in row["scores"].items())
