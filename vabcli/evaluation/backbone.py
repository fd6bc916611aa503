"""Scores of what the backbone was fine-tuned into, on a reference manifest (`vab eval --task
retrieval|classify`): audio-visual retrieval both ways, and classification against the
manifest's labels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vabcli.core.cache import Cache
from vabcli.core.device import resolve_device
from vabcli.core.errors import VabError
from vabcli.core.jobs import JobEvents
from vabcli.data.clips import ClipItem, clip_items
from vabcli.tasks.classify import (
    Classifier,
    classification_scores,
    label_targets,
    load_classifier,
)
from vabcli.tasks.embedding import Embedder, load_embedder
from vabcli.tasks.latents import ClipLatents, clip_latents
from vabcli.tasks.options import ClipOptions
from vabcli.tasks.retrieval import retrieval_scores

BACKBONE_TASKS = ("retrieval", "classify")
LatentsOf = Callable[[list[ClipItem]], Iterator[ClipLatents]]  # clips -> their latents


def evaluate_backbone(
    task: str,
    model: Path,
    reference: Path,
    cache: Cache,
    opts: ClipOptions | None = None,
    events: JobEvents | None = None,
) -> dict[str, Any]:
    """The summary of `model` on the clips of `reference` (task, model, reference, then the
    counts and measures, unrounded), their tokenizing reported to `events`.

    retrieval: each clip's pictures search all clips' sounds (v2a) and its sound all pictures
    (a2v); R@1/5/10 both ways (`r1_v2a`, ...), with chance (k / N). Any checkpoint of the
    project: a contrastive fine-tune, or a pre-trained one (its pooled multiway outputs).
    classify: a classifier (`vab finetune classify`) against the reference's labels: accuracy
    (top label right) with chance (1 / labels), and mAP for label lists; a label the model does
    not know is a VabError, raised before any clip is decoded.
    Clips that fail, or lack what the task needs (sound, a label), are counted as skipped.
    """
    if task not in BACKBONE_TASKS:
        raise ValueError(f"task must be one of {BACKBONE_TASKS}, got {task!r}")
    opts = opts or ClipOptions()
    load = load_embedder if task == "retrieval" else load_classifier
    checkpoint = load(model, resolve_device(opts.device))

    def latents(items: list[ClipItem]) -> Iterator[ClipLatents]:
        return clip_latents(items, checkpoint, cache, opts, events)

    measure = _retrieval if task == "retrieval" else _classification
    scores = measure(checkpoint, clip_items(None, reference), latents, reference)
    return {"task": task, "model": str(model), "reference": str(reference), **scores}


def _retrieval(
    embedder: Embedder, items: list[ClipItem], latents: LatentsOf, reference: Path
) -> dict[str, Any]:
    visual, audio, skipped = [], [], 0
    for clip in latents(items):
        if clip.error or clip.codes is None:  # no pair to find
            skipped += 1
            continue
        visual.append(embedder.visual(clip.features))
        audio.append(embedder.audio(clip.codes))
    if len(visual) < 2:
        raise VabError(f"{reference}: fewer than two clips with pictures and sound")
    scores = retrieval_scores(torch.from_numpy(np.stack(visual)), torch.from_numpy(np.stack(audio)))
    return {"clips": len(visual), "skipped": skipped, **scores}


def _classification(
    classifier: Classifier, listed: list[ClipItem], latents: LatentsOf, reference: Path
) -> dict[str, Any]:
    spec = classifier.spec
    items = [i for i in listed if i.label is not None]
    skipped = len(listed) - len(items)
    targets = [
        label_targets([i.label], spec.labels, f"line {i.line} of {reference}: ") for i in items
    ]
    probs, truth = [], []
    for clip, target in zip(latents(items), targets, strict=True):
        if clip.error or (clip.codes is None and classifier.needs_audio):
            skipped += 1
            continue
        probs.append(classifier.probabilities(clip.features, clip.codes))
        truth.append(target[0].numpy())
    if not probs:
        raise VabError(f"{reference}: no labelled clip could be classified")
    scores = classification_scores(np.stack(probs), np.stack(truth), spec.multi_label)
    return {
        "modality": spec.modality,
        "clips": len(probs),
        "skipped": skipped,
        "labels": len(spec.labels),
        "chance": 1 / len(spec.labels),
        **scores,
    }
