"""`vab classify`: labels of clips, with probabilities, from a classifier fine-tune."""

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from vabcli.cli.common import CacheOpt, DeviceOpt, JsonOpt, QuietOpt, WorkersOpt, app
from vabcli.cli.console import print_error
from vabcli.cli.embed import InputsArg, _latents, answer_each
from vabcli.cli.train import DataOpt
from vabcli.core.errors import VabError
from vabcli.data.clips import clip_items

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
    from vabcli.core.device import resolve_device
    from vabcli.tasks.classify import load_classifier

    if not inputs and data is None:
        raise typer.BadParameter("give INPUT... or --data MANIFEST")
    try:
        classifier = load_classifier(model, resolve_device(device))
        labels = classifier.spec.labels

        def top_labels(features: Any, codes: Any) -> dict[str, Any]:
            probs = classifier.probabilities(features, codes)
            top = np.argsort(-probs, kind="stable")[:top_k]
            return {"label": labels[top[0]],
                    "scores": {labels[i]: round(float(probs[i]), 6) for i in top}}  # fmt: skip

        latents = _latents(clip_items(inputs, data), classifier, cache, device, workers, quiet)
        failed = answer_each(latents, top_labels, {"label": None, "scores": {}}, _shown_labels,
                             as_json)  # fmt: skip
    except (VabError, OSError) as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None
    if failed:
        raise typer.Exit(1)


def _shown_labels(row: dict[str, Any]) -> str:
    return ", ".join(f"{label} ({p:.3f})" for label, p in row["scores"].items())
