"""Training: it learns, resumes exactly, stops on NaN, and runs data-parallel under torchrun."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.test_exit import torchrun, torchrun_env
from vabcli.config import TrainOptions, model_config
from vabcli.model.checkpoint import load_checkpoint, load_training_state
from vabcli.training import trainer as train_module
from vabcli.training.dataset import LatentClip
from vabcli.training.trainer import RunInfo, Trainer, TrainingStopped

VISUAL_DIM = 16
INFO = RunInfo(codec_id="codec-x", visual_id="visual-y", meta={"note": "synthetic"})


def synthetic_latents(folder: Path, n: int = 4, seconds: float = 3.0) -> list[LatentClip]:
    """Clips whose tokens follow from their pictures: each clip has its own picture and grid."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for i in range(n):
        picture = rng.normal(size=VISUAL_DIM).astype(np.float32)
        features = np.tile(picture, (round(seconds * 8), 1))
        codes = rng.integers(0, 1024, size=(4, round(seconds * 75))).astype(np.int16)
        np.save(folder / f"f{i}.npy", features)
        np.save(folder / f"c{i}.npy", codes)
        clips.append(LatentClip(folder / f"f{i}.npy", folder / f"c{i}.npy"))
    return clips


def trainer(tmp_path, out="run", resume=False, seconds=3.0, **options) -> Trainer:
    # Under torchrun each rank writes its own (identical) copy: one rank rewriting the files
    # while the other reads them crashed the DDP test now and then.
    clips = synthetic_latents(tmp_path / f"latents{os.environ.get('RANK', '')}", seconds=seconds)
    opts = TrainOptions(
        **{
            "steps": 6,
            "batch_size": 4,
            "clip_seconds": 1.0,
            "val_every": 3,
            "warmup_steps": 2,
            "workers": 0,
            "lr": 2e-3,
            **options,
        }
    )
    cfg = model_config("tiny", visual_dim=VISUAL_DIM)
    return Trainer(cfg, INFO, opts, clips, clips, tmp_path / out, "cpu", resume)


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_tiny_preset_learns_the_clips(tmp_path):
    # Clips as long as the window: each picture maps to one grid (no crop offset to infer).
    final = trainer(tmp_path, steps=120, val_every=60, batch_size=8, seconds=1.0).run()
    assert final["val_accuracy"] > 0.5, final  # chance is 1/1024
    assert final["val_loss"] < metrics(tmp_path / "run")[0]["loss"] / 2


def test_resume_gives_the_same_run(tmp_path):
    trainer(tmp_path, out="straight").run()

    def interrupt_after_step_3(values):
        if values["step"] == 3:  # a real Ctrl-C, delivered in the middle of the run
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        trainer(tmp_path, out="resumed").run(interrupt_after_step_3)
    assert load_checkpoint(tmp_path / "resumed" / "last")[2].step == 3
    trainer(tmp_path, out="resumed", resume=True).run()
    straight, resumed = metrics(tmp_path / "straight"), metrics(tmp_path / "resumed")
    assert [m["step"] for m in resumed] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(straight, resumed, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5), (a, b)
        assert ("val_loss" in a) == ("val_loss" in b)
        if "val_loss" in a:
            assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)


def test_checkpoints_record_the_run(tmp_path):
    trainer(tmp_path).run()
    cfg, state, meta = load_checkpoint(tmp_path / "run" / "last")
    assert cfg.visual_dim == VISUAL_DIM and meta.step == 6 and meta.extra["note"] == "synthetic"
    assert (meta.codec_id, meta.visual_id) == ("codec-x", "visual-y")
    assert load_training_state(tmp_path / "run" / "last")  # optimizer moments for --resume
    best = load_checkpoint(tmp_path / "run" / "best")[2]
    assert best.validation["val_loss"] == meta.best_val_loss


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real = train_module.masked_token_loss

    def poisoned(*args, **kwargs):
        result = real(*args, **kwargs)
        step = args[0].training and poisoned.calls
        poisoned.calls += 1
        return replace(result, loss=result.loss * float("nan")) if step == 4 else result

    poisoned.calls = 0
    monkeypatch.setattr(train_module, "masked_token_loss", poisoned)
    with pytest.raises(TrainingStopped, match="loss became nan at step"):
        trainer(tmp_path).run()
    assert load_checkpoint(tmp_path / "run" / "last")[2].step == 3


def test_resume_refuses_other_encoders(tmp_path):
    trainer(tmp_path).run()
    other = RunInfo(codec_id="another", visual_id="visual-y")
    clips = synthetic_latents(tmp_path / "latents")
    with pytest.raises(Exception, match="trained with codec encoder"):
        Trainer(
            model_config("tiny", visual_dim=VISUAL_DIM),
            other,
            TrainOptions(workers=0),
            clips,
            clips,
            tmp_path / "run",
            "cpu",
            resume=True,
        )


DDP_SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from tests.test_train import trainer
from vabcli.training.distributed import exit_process
def main():
    t = trainer(Path(sys.argv[1]), steps=2, val_every=2)
    t.run()
    # One file per rank: two processes printing to one stdout can interleave their lines.
    run = t.launch
    Path(sys.argv[1], f"rank{run.rank}.txt").write_text(f"of {run.world_size} step {t.step}")
main()
exit_process(0)
"""


def test_torchrun_two_cpu_processes(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    root = Path(__file__).parent.parent
    done = torchrun(str(script), str(tmp_path), str(root), env=torchrun_env(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):
        assert (tmp_path / f"rank{rank}.txt").read_text() == "of 2 step 2"
    assert load_checkpoint(tmp_path / "run" / "last")[2].step == 2
    assert len(metrics(tmp_path / "run")) == 2  # one writer: rank 0


def test_a_checkpoint_rebuilds_its_model(tmp_path):
    import torch

    from vabcli.model.checkpoint import load_model

    run = trainer(tmp_path)
    run.run()
    model, meta = load_model(tmp_path / "run" / "last")
    assert meta.step == 6 and not model.training
    for name, value in run.model.state_dict().items():
        assert torch.equal(value.cpu(), model.state_dict()[name])


def test_a_process_alone_joins_no_group_and_leads(monkeypatch):
    from vabcli.core.device import Launch
    from vabcli.training.distributed import join_process_group, sum_across_ranks

    monkeypatch.setenv("RANK", "1")  # a stray variable without torchrun's WORLD_SIZE
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    alone = join_process_group("cpu")
    assert alone == Launch() and alone.leader
    assert sum_across_ranks({"loss": 2.5}, alone, "cpu") == {"loss": 2.5}
