"""Contrastive fine-tuning under torchrun: negatives come from every rank.

Two CPU processes with 2 clips each must log the losses of one process with the 4 clips: each
rank's InfoNCE runs over the gathered global batch, and data-parallel averaging of the
gradients then matches the single-process step. Without the gathering each rank would score a
2-way InfoNCE (a lower loss), and the runs would part at step 1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from tests.test_exit import torchrun, torchrun_env
from tests.test_train import INFO, VISUAL_DIM, synthetic_latents
from vabcli.config import TrainOptions, model_config
from vabcli.model.transformer import VabModel
from vabcli.tasks.contrastive import ContrastiveSpec, ContrastiveTrainer


def contrastive_trainer(root: Path, batch_size: int, out: str) -> ContrastiveTrainer:
    clips = synthetic_latents(root / f"latents{os.environ.get('RANK', '')}", n=4)
    cfg = model_config("tiny", visual_dim=VISUAL_DIM)
    torch.manual_seed(1)
    init = VabModel(cfg).state_dict()  # the same "pre-trained" weights in every process
    opts = TrainOptions(
        steps=3,
        batch_size=batch_size,
        clip_seconds=1.0,
        val_every=3,
        warmup_steps=1,
        workers=0,
        lr=1e-3,
        log_every=1,
    )
    return ContrastiveTrainer(
        cfg, INFO, opts, clips, clips, root / out, "cpu", spec=ContrastiveSpec(2, 16), init=init
    )


DDP_SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from tests.test_finetune_ddp import contrastive_trainer
from vabcli.training.distributed import exit_process
contrastive_trainer(Path(sys.argv[1]), batch_size=2, out="ddp").run()
exit_process(0)
"""


def losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_torchrun_gathers_negatives_across_ranks(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    root = Path(__file__).parent.parent
    done = torchrun(str(script), str(tmp_path), str(root), env=torchrun_env(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    contrastive_trainer(tmp_path, batch_size=4, out="single").run()
    together, alone = losses(tmp_path / "ddp"), losses(tmp_path / "single")
    assert len(together) == len(alone) == 3
    assert together == pytest.approx(alone, rel=1e-4, abs=1e-5)
