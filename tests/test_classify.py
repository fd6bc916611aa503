"""Classification measures and label handling on constructed examples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vabcli.core.errors import VabError
from vabcli.model.losses import classification_loss
from vabcli.tasks.classify import (
    classification_scores,
    label_set,
    label_targets,
    mean_average_precision,
)
from vabcli.training.dataset import LatentClip


def test_mean_average_precision_on_a_constructed_ranking():
    # Label 0: positives ranked 1st and 3rd -> (1/1 + 2/3) / 2. Label 1: ranked 2nd -> 1/2.
    # Label 2 has no positive clip and does not count.
    scores = np.array([[0.9, 0.1, 0.5], [0.8, 0.7, 0.5], [0.7, 0.9, 0.5]])
    target = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]], dtype=float)
    assert mean_average_precision(scores, target) == pytest.approx(((1 + 2 / 3) / 2 + 1 / 2) / 2)
    perfect = mean_average_precision(target + 0.01 * np.arange(3), target)
    assert perfect == pytest.approx(1.0)
    values = classification_scores(scores, target, multi=True)
    assert values["accuracy"] == pytest.approx(1 / 3)  # only clip 0's top label is right


def test_labels_become_multi_hot_rows_and_unknown_ones_are_refused():
    names = ("bell", "drum", "horn")
    rows = label_targets(["drum", ("bell", "horn")], names)
    assert rows.tolist() == [[0, 1, 0], [1, 0, 1]]
    with pytest.raises(VabError, match="line 4: label 'harp' is not one of the model's 3"):
        label_targets(["harp"], names, "line 4: ")
    clip = lambda label: LatentClip(None, None, label)  # noqa: E731
    assert label_set([clip("b"), clip("a")], [clip("a")]) == (("a", "b"), False)
    assert label_set([clip(("b", "c")), clip("a")], []) == (("a", "b", "c"), True)
    with pytest.raises(VabError, match="'z' is on no train clip"):
        label_set([clip("a"), clip("b")], [clip("z")])
    with pytest.raises(VabError, match="1 of 2"):
        label_set([clip("a"), clip(None)], [])


def test_single_labels_use_cross_entropy_and_lists_binary_cross_entropy():
    logits = torch.tensor([[2.0, 0.0]])
    target = torch.tensor([[1.0, 0.0]])
    softplus = np.log(1 + np.exp(-2))
    assert classification_loss(logits, target, False).item() == pytest.approx(softplus)
    bce = (softplus + np.log(2)) / 2
    assert classification_loss(logits, target, True).item() == pytest.approx(bce)
