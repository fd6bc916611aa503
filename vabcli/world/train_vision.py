"""Training a small open_clip image tower on the synthetic world's ground truth (bundled model).

Frozen random towers are poor feature extractors for this world (a linear probe on them finds
the visible class in only ~35-45% of frames), so the tower learns, per frame, which classes
are in view and how far in time each is from its sound (`world.moment_targets`), through
linear heads on its L2-normalised output: exactly the features `vab tokenize` will take from it.
It is then saved as an open_clip `local-dir:` folder and loaded like any other tower.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vabcli.encoders.image import save_local_dir
from vabcli.world.scenes import CLASSES, Painter, moment_targets, sample_scene

VISION_STREAM = 2  # the world's scene stream the tower learns from
WORLD_TOWER_CFG: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 4, "width": 128, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
}
_BASE_MODEL = "ViT-B-32"  # open_clip fills in what the config above leaves out from it


def create_tower(seed: int = 0) -> torch.nn.Module:
    import open_clip

    torch.manual_seed(seed)
    return open_clip.create_model(_BASE_MODEL, pretrained=None, **WORLD_TOWER_CFG)


class WorldFrames:
    """Endless batches of frames as `vab tokenize` sees them (centre square, tower size) with
    their ground truth; half of the moments lie within half a second of a sound."""

    def __init__(self, seed: int, size: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.size = size
        self.index = 0

    def batch(self, scenes: int, per_scene: int) -> tuple[torch.Tensor, ...]:
        frames, present, timing = [], [], []
        for _ in range(scenes):
            scene = sample_scene(self.seed, self.index, 2.0, 8.0, stream=VISION_STREAM)
            self.index += 1
            painter = Painter(scene)
            times = self.rng.uniform(0, scene.duration, size=per_scene)
            near = self.rng.random(per_scene) < 0.5
            events = np.asarray(scene.events)
            jitter = self.rng.uniform(-0.5, 0.5, int(near.sum()))
            picked = self.rng.choice(events, size=int(near.sum())) + jitter
            times[near] = np.clip(picked, 0, scene.duration - 1e-3)
            frames.append(self._as_tokenized(painter, times))
            p, m = moment_targets([(s.label, list(s.events)) for s in scene.sources], times)
            present.append(p)
            timing.append(m)
        return (
            torch.cat(frames),
            torch.from_numpy(np.concatenate(present)),
            torch.from_numpy(np.concatenate(timing)),
        )

    def _as_tokenized(self, painter: Painter, times: np.ndarray) -> torch.Tensor:
        """Frames at `times`, centre square scaled to the tower's size: float [T, 3, S, S]."""
        square = np.stack([painter.square(painter.frame(float(t))) for t in times])
        x = torch.from_numpy(square).permute(0, 3, 1, 2).float() / 255
        return F.interpolate(x, size=(self.size, self.size), mode="area")


def train_tower(
    out: Path,
    steps: int = 3000,
    scenes_per_batch: int = 16,
    frames_per_scene: int = 4,
    lr: float = 1e-3,
    seed: int = 0,
    log: Callable[[str], None] = print,
    device: str = "cpu",
) -> None:
    """Train the tower for `steps` steps and save it as a `local-dir:` folder at `out`."""
    model = create_tower(seed).to(device)
    visual = model.visual
    cfg = visual.preprocess_cfg
    mean = torch.tensor(cfg["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"], device=device).view(1, 3, 1, 1)
    n_classes = len(CLASSES)
    dim = WORLD_TOWER_CFG["embed_dim"]
    heads = torch.nn.Linear(dim, n_classes * 2).to(device)
    # Unit-norm features times a learnt gain.
    scale = torch.nn.Parameter(torch.tensor(10.0, device=device))
    params = [*visual.parameters(), *heads.parameters(), scale]
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    data = WorldFrames(seed, WORLD_TOWER_CFG["vision_cfg"]["image_size"])
    started = time.monotonic()
    visual.train()
    for step in range(1, steps + 1):
        for group in optimiser.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        x, present, timing = (t.to(device) for t in data.batch(scenes_per_batch, frames_per_scene))
        features = F.normalize(visual((x - mean) / std), dim=-1) * scale
        out_heads = heads(features).view(-1, n_classes, 2)
        seen = F.binary_cross_entropy_with_logits(out_heads[..., 0], present)
        when = (torch.sigmoid(out_heads[..., 1]) - timing) ** 2
        when = (when * present).sum() / present.sum().clamp_min(1)
        loss = seen + 10 * when
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        if step % 100 == 0 or step == steps:
            acc = ((out_heads[..., 0] > 0) == (present > 0.5)).float().mean()
            log(
                f"tower step {step}/{steps}  presence bce {seen.item():.3f} (acc {acc:.3f})  "
                f"timing mse {when.item():.4f}  {(time.monotonic() - started) / 60:.1f} min"
            )
        if step % 1000 == 0 or step == steps:
            save_local_dir(model, WORLD_TOWER_CFG, out)
