"""Training: it learns, resumes exactly, stops on NaN, and runs data-parallel under torchrun."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

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
            "log_every": 1,
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
    real = train_module.scored_token_loss

    def poisoned(*args, **kwargs):
        result = real(*args, **kwargs)
        step = args[0].training and poisoned.calls
        poisoned.calls += 1
        return replace(result, loss=result.loss * float("nan")) if step == 4 else result

    poisoned.calls = 0
    monkeypatch.setattr(train_module, "scored_token_loss", poisoned)
    with pytest.raises(TrainingStopped, match="loss became non-finite at step"):
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
    from vabcli.training.distributed import all_ranks_sum, join_process_group

    monkeypatch.setenv("RANK", "1")  # a stray variable without torchrun's WORLD_SIZE
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    alone = join_process_group("cpu")
    assert alone == Launch() and alone.leader
    assert all_ranks_sum(torch.tensor([2.5]), alone).tolist() == [2.5]


def test_log_steps_carry_the_mean_of_the_steps_since_the_last(tmp_path):
    trainer(tmp_path, out="each").run()
    each = [m["loss"] for m in metrics(tmp_path / "each")]
    trainer(tmp_path, out="grouped", log_every=4).run()
    grouped = metrics(tmp_path / "grouped")
    # Lines at validation steps (3, 6) and log steps (4), each the mean since the line before.
    assert [m["step"] for m in grouped] == [3, 4, 6]
    spans = [each[0:3], each[3:4], each[4:6]]
    for line, span in zip(grouped, spans, strict=True):
        assert line["loss"] == pytest.approx(sum(span) / len(span), rel=1e-5)
    straight = load_checkpoint(tmp_path / "each" / "last")[1]
    for name, value in load_checkpoint(tmp_path / "grouped" / "last")[1].items():
        assert torch.equal(value, straight[name]), name  # logging less changes no step


def test_steps_between_log_steps_read_no_loss_from_the_device(tmp_path, monkeypatch):
    """A proxy for "no host sync per step" that a CPU can check: vab's code reads no float
    tensor (loss, accuracy) on the host between log steps; each log step reads one vector.
    (torch's own optimizer reads its step counters, host tensors, on CPU only.)"""
    import sys

    reads: list[str] = []
    for name in ("item", "tolist", "__float__", "__bool__"):
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real, _name=name):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if self.is_floating_point() and caller.startswith("vabcli"):
                reads.append(_name)
            return _real(self, *args)

        monkeypatch.setattr(torch.Tensor, name, counted)
    per_step: list[tuple[int, list[str]]] = []

    def note(m):
        per_step.append((m["step"], list(reads)))
        reads.clear()

    trainer(tmp_path, steps=8, log_every=4, val_every=1000).run(note)
    assert [(step, len(r)) for step, r in per_step[:3]] == [(1, 0), (2, 0), (3, 0)]
    assert per_step[3] == (4, ["tolist"])  # the one collective of a log step
    assert [len(r) for _, r in per_step[4:7]] == [0, 0, 0]


def test_gradient_accumulation_takes_the_same_steps_in_less_memory(tmp_path):
    # Every token masked, no null condition, clips as long as the window: each micro-batch
    # scores the same number of tokens, so the mean of their means is the batch's mean.
    from vabcli.config import MaskingConfig

    whole = MaskingConfig(low=0.999999, high=1.0, mean=1.0, null_condition_prob=0.0)
    same = {"steps": 3, "val_every": 3, "masking": whole, "seconds": 1.0}
    trainer(tmp_path, out="one", batch_size=4, **same).run()
    trainer(tmp_path, out="two", batch_size=2, grad_accum=2, **same).run()
    one, two = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    for a, b in zip(one, two, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5), (a, b)
    assert two[-1]["val_loss"] == pytest.approx(one[-1]["val_loss"], rel=1e-5)
    weights = load_checkpoint(tmp_path / "one" / "last")[1]
    for name, value in load_checkpoint(tmp_path / "two" / "last")[1].items():
        torch.testing.assert_close(value, weights[name], rtol=1e-4, atol=1e-5, msg=name)


def test_accumulated_runs_resume_exactly(tmp_path):
    trainer(tmp_path, out="straight", batch_size=2, grad_accum=2).run()

    def interrupt_after_step_4(values):
        if values["step"] == 4:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        trainer(tmp_path, out="resumed", batch_size=2, grad_accum=2).run(interrupt_after_step_4)
    trainer(tmp_path, out="resumed", batch_size=2, grad_accum=2, resume=True).run()
    straight, resumed = metrics(tmp_path / "straight"), metrics(tmp_path / "resumed")
    assert [m["loss"] for m in straight] == pytest.approx([m["loss"] for m in resumed], rel=1e-5)


def test_save_every_keeps_last_between_validations(tmp_path):
    from vabcli.model.checkpoint import read_meta

    saved = []

    def note(m):
        last = tmp_path / "run" / "last"
        saved.append(read_meta(last).step if last.exists() else None)

    trainer(tmp_path, steps=5, val_every=5, save_every=2, log_every=1000).run(note)
    assert saved == [None, 2, 2, 4, 5]
    assert (
        not (tmp_path / "run" / "best").exists() or read_meta(tmp_path / "run" / "best").step == 5
    )


def test_a_non_finite_loss_between_log_steps_is_caught_before_anything_is_saved(
    tmp_path, monkeypatch
):
    real = train_module.scored_token_loss
    calls = {"train": 0}

    def poisoned(model, *args, **kwargs):
        result = real(model, *args, **kwargs)
        if model.training:
            calls["train"] += 1
            if calls["train"] == 4:
                return replace(result, loss=result.loss * float("inf"))
        return result

    monkeypatch.setattr(train_module, "scored_token_loss", poisoned)
    with pytest.raises(TrainingStopped, match="non-finite at steps 4-5"):
        trainer(tmp_path, log_every=5, val_every=3).run()
    _, weights, meta = load_checkpoint(tmp_path / "run" / "last")
    assert meta.step == 3 and all(torch.isfinite(w).all() for w in weights.values())


def test_compile_runs_the_steps_through_the_compiled_model_and_saves_the_bare_one(
    tmp_path, monkeypatch
):
    compiled = []

    class Compiled(torch.nn.Module):  # stands in for torch.compile's wrapper: same calls
        def __init__(self, model):
            super().__init__()
            self._orig_mod = model

        def forward(self, *args, **kwargs):
            compiled.append(1)
            return self._orig_mod(*args, **kwargs)

    monkeypatch.setattr(torch, "compile", Compiled)
    run = trainer(tmp_path, steps=2, val_every=2, compile=True)
    run.run()
    assert isinstance(run.net, Compiled) and run.net._orig_mod is run.model
    assert len(compiled) >= 2  # every training step went through it
    names = set(load_checkpoint(tmp_path / "run" / "last")[1])
    assert names == set(run.model.state_dict())  # no "_orig_mod." prefixes


def test_the_optimizer_is_fused_on_cuda_only():
    from vabcli.training.trainer import make_optimizer

    model = torch.nn.Linear(2, 2)
    assert not make_optimizer(model, TrainOptions(), "cpu").defaults["fused"]
    assert make_optimizer(model, TrainOptions(), "cuda:0").defaults["fused"]
