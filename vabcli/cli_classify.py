"""`vab classify`: labels of clips, with probabilities, from a classifier fine-tune."""

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from .cli_common import CacheOpt, DeviceOpt, JsonOpt, QuietOpt, WorkersOpt, app
from .cli_embed import InputsArg, _latents
from .cli_train import DataOpt
from .clips import clip_items
from .console import print_error
from .errors import VabError

ClassifierOpt = Annotated[
    Path,
    typer.Option("--model", metavar="CKPT", help="A classifier (vab finetune classify)."),
]


@app.command()
def classify(
    model: ClassifierOpt,
    inputs: InputsArg = None,
    data: DataOpt = None,
    top_k: Annotated[
        int, typer.Option("--top-k", metavar="K", min=1, help="Labels shown per clip.")
    ] = 3,
    cache: CacheOpt = None,
    device: DeviceOpt = "auto",
    workers: WorkersOpt = 2,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Labels of each clip with their probabilities (softmax; per-label sigmoids for a
    multi-label model), most likely first. Clips are pooled window by window at the length the
    model was trained on. JSON lines: input, status, error, label (the top one), scores
    {label: probability} of the top K. Exit code 1 if a clip failed."""
    from .classify import load_classifier
    from .latents import resolve_device

    if not inputs and data is None:
        raise typer.BadParameter("give INPUT... or --data MANIFEST")
    failed = 0
    try:
        classifier = load_classifier(model, resolve_device(device))
        labels = classifier.spec.labels
        latents = _latents(clip_items(inputs, data), classifier, cache, device, workers, quiet)
        for item, error, features, codes in latents:
            row: dict[str, Any] = {"input": item.name(), "status": "ok", "error": None}
            try:
                if error:
                    raise VabError(error)
                probs = classifier.probabilities(features, codes)
                top = np.argsort(-probs, kind="stable")[:top_k]
                row["label"] = labels[top[0]]
                row["scores"] = {labels[i]: round(float(probs[i]), 6) for i in top}
            except VabError as exc:
                failed += 1
                row.update(status="error", error=str(exc), label=None, scores={})
            _print_labels(row, as_json)
    except (VabError, OSError) as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None
    if failed:
        raise typer.Exit(1)


def _print_labels(row: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(row))
    elif row["status"] == "error":
        print(f"error    {row['input']}  {row['error']}")
    else:
        found = ", ".join(f"{label} ({p:.3f})" for label, p in row["scores"].items())
        print(f"ok       {row['input']}  -> {found}")
