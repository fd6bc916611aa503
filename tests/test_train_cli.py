"""`vab train` as users run it: manifest in, run folder out, clear errors, resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import run_vab
from vabcli.config import unit_time_scale
from vabcli.model.checkpoint import read_meta, read_model_config
from vabcli.model.transformer import time_code

DEBUG = ["--codec", "debug", "--image-encoder", "debug"]
SHORT = ["--batch-size", "2", "--clip-seconds", "1", "--val-every", "2", "--workers", "1"]


@pytest.fixture
def manifest(clip, tmp_path):
    lines = []
    for i, (split, audio) in enumerate(
        [("train", True), ("train", True), ("train", False), ("val", True), ("test", True)]
    ):
        path = clip(f"c{i}.mp4", duration=1.5, tone_hz=300.0 + 50 * i, audio=audio)
        lines.append(json.dumps({"video": str(path), "split": split, "label": f"l{i}"}))
    (tmp_path / "broken.mp4").write_bytes(b"nope")
    lines.append(json.dumps({"video": "broken.mp4", "split": "train"}))
    path = tmp_path / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def train(manifest, out, cache, *extra):
    return run_vab(
        "train",
        "--data",
        str(manifest),
        "--out",
        str(out),
        "--cache",
        str(cache),
        *DEBUG,
        *SHORT,
        *extra,
    )


def test_train_writes_a_run_and_reports_what_it_skipped(manifest, tmp_path, cache_dir):
    done = train(manifest, tmp_path / "run", cache_dir, "--steps", "2", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["step"] == 2 and "val_loss" in summary
    assert "2 train and 1 val clips; skipped 1 without audio and 1 that failed" in done.stderr
    assert "M parameters" in done.stderr
    for name in ["last/model.safetensors", "last/config.json", "best/config.json"]:
        assert (tmp_path / "run" / name).is_file()
    resumed = train(manifest, tmp_path / "run", cache_dir, "--steps", "4", "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "run" / "metrics.jsonl").open()]
    assert steps == [2, 4]  # a line every --log-every (10) steps, and at each run's last step
    finished = train(manifest, tmp_path / "run", cache_dir, "--steps", "4", "--resume")
    assert finished.returncode == 0 and "already at step 4" in finished.stdout
    again = train(manifest, tmp_path / "run", cache_dir, "--steps", "2")
    assert again.returncode == 2 and "--overwrite" in again.stderr
    replaced = train(manifest, tmp_path / "run", cache_dir, "--steps", "1", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1


def test_unusable_data_stops_with_one_line(tmp_path, cache_dir):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    done = train(empty, tmp_path / "run", cache_dir)
    assert done.returncode == 1 and "no train or val clips" in done.stderr
    (tmp_path / "bad.mp4").write_bytes(b"x")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"video": "bad.mp4"}\n')
    done = train(broken, tmp_path / "run", cache_dir)
    assert done.returncode == 1 and "no usable training clips: 1 failed" in done.stderr
    assert not (tmp_path / "run").exists()


def test_a_pack_trains_without_the_videos_like_the_manifest_does(manifest, tmp_path, cache_dir):
    own = tmp_path / "own"  # copies: the session's clips are shared with other tests
    own.mkdir()
    lines = []
    for line in manifest.read_text().splitlines():
        entry = json.loads(line)
        video = Path(entry["video"])
        entry["video"] = str(own / video.name)
        shutil.copy(video if video.is_absolute() else manifest.parent / video, entry["video"])
        lines.append(json.dumps(entry))
    manifest = own / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    pack = tmp_path / "pack"
    written = run_vab(
        "train",
        "--data",
        str(manifest),
        "--write-pack",
        str(pack),
        "--cache",
        str(cache_dir),
        *DEBUG,
        "--json",
    )
    assert written.returncode == 0, written.stderr
    report = json.loads(written.stdout)
    assert (report["train_clips"], report["val_clips"]) == (2, 1) and report["bytes"] > 0
    assert not (tmp_path / "run").exists()  # a pack is written, nothing is trained
    for video in own.glob("*.mp4"):
        video.unlink()  # the pack stands alone
    from_pack = run_vab(
        "train", "--pack", str(pack), "--out", str(tmp_path / "p"), *SHORT, "--steps", "2", "--json"
    )
    assert from_pack.returncode == 0, from_pack.stderr
    assert "2 train and 1 val clips" in from_pack.stderr
    cfg = json.loads((tmp_path / "p" / "last" / "config.json").read_text())
    assert cfg["codec_id"].startswith("debug") and cfg["step"] == 2
    from vabcli.training.plan import read_pack

    plan = read_pack(pack, "tiny", {})  # the labels travel too (classification trains on them)
    assert [c.label for c in plan.train] == ["l0", "l1"] and plan.val[0].label == "l3"
    again = run_vab("train", "--data", str(manifest), "--write-pack", str(pack), *DEBUG)
    assert again.returncode == 2 and "--overwrite" in again.stderr  # before any tokenizing


def test_pack_options_are_checked(manifest, tmp_path):
    not_a_pack = tmp_path / "empty"
    not_a_pack.mkdir()
    done = run_vab("train", "--pack", str(not_a_pack), "--out", str(tmp_path / "r"))
    assert done.returncode == 1 and "not a training pack" in done.stderr
    both = run_vab("train", "--data", str(manifest), "--pack", str(not_a_pack), "--out", "r")
    assert both.returncode == 2 and "one of them" in both.stderr
    assert run_vab("train", "--pack", str(not_a_pack), "--write-pack", "p").returncode == 2
    assert run_vab("train", "--data", str(manifest)).returncode == 2  # no --out
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "bad",
    [
        ["--set", "d_model=100", "--set", "n_heads=3"],
        ["--set", "visual_fps=4"],
        ["--set", "oops"],
        ["--mask-bounds", "0.9,0.5"],
        ["--mask-bounds", "half"],
        ["--label-smoothing", "0.9"],
        ["--label-smoothing", "nan"],
        ["--lr", "nan"],
        ["--lr", "inf"],
        ["--lr", "0"],
        ["--clip-seconds", "inf"],
        ["--clip-seconds", "nan"],
        ["--steps", "99999999999"],
    ],
)
def test_bad_training_options_are_usage_errors(manifest, tmp_path, cache_dir, bad):
    done = train(manifest, tmp_path / "run", cache_dir, *bad)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "run").exists()
    assert not cache_dir.exists()  # refused before any clip is tokenized


def test_bad_fine_tune_options_are_usage_errors(tmp_path):
    init = tmp_path / "nothing-read-before-the-options"
    for bad in (["--lr", "nan"], ["--clip-seconds", "inf"]):
        done = run_vab(
            "finetune",
            "contrastive",
            "--init",
            str(init),
            "--data",
            "m.jsonl",
            "--out",
            str(tmp_path / "ft"),
            *bad,
        )
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr


def test_resume_before_the_first_checkpoint_starts_from_the_beginning(
    manifest, tmp_path, cache_dir
):
    """A run killed before it saved anything (SIGKILL, power loss) leaves a run folder with a
    partial metrics log and no checkpoint; the same cron line with --resume starts it over."""
    reference = train(manifest, tmp_path / "ref", cache_dir, "--steps", "2", "--json")
    assert reference.returncode == 0, reference.stderr
    killed = tmp_path / "run"
    killed.mkdir()
    (killed / "metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n{"step": 2, "lo')
    resumed = train(manifest, killed, cache_dir, "--steps", "2", "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert "no checkpoint yet" in resumed.stderr

    def losses(run):
        return [(m["step"], m["loss"]) for m in map(json.loads, (run / "metrics.jsonl").open())]

    assert losses(killed) == losses(tmp_path / "ref")
    ref_weights = (tmp_path / "ref" / "last" / "model.safetensors").read_bytes()
    assert (killed / "last" / "model.safetensors").read_bytes() == ref_weights


def test_new_models_get_a_unit_time_code_and_a_resumed_run_keeps_its_own(
    manifest, tmp_path, cache_dir
):
    """A new model's time code has unit norm; a run born with amplitude 1 (the default before)
    resumes as it was born, without --set, and is refused another amplitude."""
    new = train(manifest, tmp_path / "new", cache_dir, "--steps", "1")
    assert new.returncode == 0, new.stderr
    cfg = read_model_config(tmp_path / "new" / "last")
    assert cfg.time_scale == pytest.approx(unit_time_scale(cfg.d_model))
    code = time_code(torch.arange(50) / 7.0, cfg.d_model) * cfg.time_scale
    assert torch.linalg.vector_norm(code, dim=-1) == pytest.approx(torch.ones(50), rel=1e-5)

    old = tmp_path / "old"
    born = train(manifest, old, cache_dir, "--steps", "1", "--set", "time_scale=1")
    assert born.returncode == 0, born.stderr
    resumed = train(manifest, old, cache_dir, "--steps", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert read_model_config(old / "last").time_scale == 1.0
    assert read_meta(old / "last").step == 2
    other = train(manifest, old, cache_dir, "--steps", "3", "--resume", "--set", "time_scale=0.5")
    assert other.returncode == 1 and "other model dimensions" in other.stderr, other.stderr


def test_torchrun_two_processes_through_the_cli(manifest, tmp_path, cache_dir):
    from tests.test_exit import torchrun, torchrun_env

    out = tmp_path / "ddp"
    done = torchrun(
        "-m",
        "vabcli",
        "train",
        "--data",
        str(manifest),
        "--out",
        str(out),
        "--cache",
        str(cache_dir),
        *DEBUG,
        *SHORT,
        "--steps",
        "2",
        "--log-every",
        "1",
        "--json",
        env=torchrun_env(tmp_path),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(done.stdout.strip().splitlines()) == 1  # one summary: rank 0's
    assert json.loads(done.stdout)["step"] == 2
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert (out / "last" / "model.safetensors").is_file()


def test_ctrl_c_saves_the_run(manifest, tmp_path, cache_dir):
    import signal
    import time

    from tests.conftest import start_vab
    from vabcli.model.checkpoint import load_checkpoint

    out = tmp_path / "run"
    endless = ["--steps", "100000", "--val-every", "100000"]
    args = ["--data", str(manifest), "--out", str(out), "--cache", str(cache_dir)]
    proc = start_vab("train", *args, *DEBUG, *SHORT, *endless)
    deadline = time.monotonic() + 120
    while not (out / "metrics.jsonl").exists():
        assert time.monotonic() < deadline and proc.poll() is None, "training never started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "--resume" in err
    assert load_checkpoint(out / "last")[2].step >= 1


LABELS = ["low", "high", "low", "high", "low"]


def test_finetune_embed_retrieve_classify_round_trip(clip, tmp_path, cache_dir):
    lines = []
    for i, split in enumerate(["train", "train", "train", "val", "val"]):
        path = clip(f"f{i}.mp4", duration=1.5, tone_hz=300.0 + 100 * i)
        lines.append(json.dumps({"video": str(path), "split": split, "label": LABELS[i]}))
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    assert train(manifest, tmp_path / "pre", cache_dir, "--steps", "2").returncode == 0

    def finetune(init, *extra):
        return run_vab(
            "finetune",
            "contrastive",
            "--init",
            str(init),
            "--data",
            str(manifest),
            "--out",
            str(tmp_path / "ft"),
            "--cache",
            str(cache_dir),
            *SHORT,
            *extra,
        )

    done = finetune(tmp_path / "pre", "--steps", "2", "--proj-dim", "16", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["step"] == 2
    assert {"val_loss", "val_r1_v2a", "val_r5_a2v", "val_r10_a2v"} <= set(summary)
    meta = json.loads((tmp_path / "ft" / "last" / "config.json").read_text())
    assert (meta["task"], meta["n_layers"], meta["proj_dim"]) == ("contrastive", 2, 16)
    resumed = finetune(tmp_path / "pre", "--steps", "3", "--proj-dim", "16", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "ft" / "metrics.jsonl").open()]
    assert steps == [2, 3]  # each run's last step (a line every --log-every steps otherwise)
    # What the towers never run stays as pre-trained; what they run has moved.
    from safetensors.torch import load_file

    before = load_file(str(tmp_path / "pre" / "last" / "model.safetensors"))
    after = load_file(str(tmp_path / "ft" / "last" / "model.safetensors"))
    prefix = "embed.towers.backbone."
    assert all(
        torch.equal(after[prefix + k], v)
        for k, v in before.items()
        if k.startswith(("shared.", "heads.", "null_visual"))
    )
    assert not torch.equal(after[prefix + "visual_in.weight"], before["visual_in.weight"])
    # A fine-tune neither generates audio nor starts another fine-tune: one line each.
    first = json.loads(lines[0])["video"]
    dub = run_vab(
        "generate",
        first,
        "--model",
        str(tmp_path / "ft"),
        "--out",
        str(tmp_path / "dub"),
        "--cache",
        str(cache_dir),
    )
    assert dub.returncode == 1 and "contrastive fine-tune" in dub.stderr
    inside = run_vab(
        "finetune",
        "contrastive",
        "--init",
        str(tmp_path / "pre"),
        "--data",
        str(manifest),
        "--out",
        str(tmp_path),
        "--overwrite",
    )
    assert inside.returncode == 2 and "inside" in inside.stderr  # --overwrite would delete it
    assert (tmp_path / "pre" / "last" / "model.safetensors").is_file()
    again = run_vab(
        "finetune",
        "contrastive",
        "--init",
        str(tmp_path / "ft"),
        "--data",
        str(manifest),
        "--out",
        str(tmp_path / "ft2"),
    )
    assert again.returncode == 1 and "start from a pre-trained one" in again.stderr
    assert not (tmp_path / "ft2").exists()

    # embed -> retrieve with the fine-tune; and the one-line refusals.
    def vab(*args):
        return run_vab(*args, "--cache", str(cache_dir), "--json")

    index = tmp_path / "audio.npz"
    made = vab(
        "embed",
        "--data",
        str(manifest),
        "--model",
        str(tmp_path / "ft"),
        "--modality",
        "a",
        "--out",
        str(index),
    )
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["n"] == 5
    import numpy as np

    with np.load(index) as plain:
        assert plain["embeddings"].shape == (5, 16) and str(plain["modality"]) == "a"
        assert np.allclose(np.linalg.norm(plain["embeddings"], axis=1), 1, atol=1e-5)
    found = vab(
        "retrieve",
        first,
        "--index",
        str(index),
        "--model",
        str(tmp_path / "ft"),
        "--direction",
        "v2a",
        "--top-k",
        "3",
    )
    assert found.returncode == 0, found.stderr
    row = json.loads(found.stdout)
    scores = [m["score"] for m in row["matches"]]
    assert row["status"] == "ok" and len(scores) == 3 and scores == sorted(scores, reverse=True)
    assert {m["id"] for m in row["matches"]} <= {json.loads(ln)["video"] for ln in lines}
    other = vab("retrieve", first, "--index", str(index), "--model", str(tmp_path / "pre"))
    assert other.returncode == 1 and "built by model" in other.stderr
    wrong_way = vab(
        "retrieve",
        first,
        "--index",
        str(index),
        "--model",
        str(tmp_path / "ft"),
        "--direction",
        "a2v",
    )
    assert wrong_way.returncode == 1 and "holds audio embeddings" in wrong_way.stderr
    silent = clip("silent.mp4", duration=1.5, audio=False)
    pictures = tmp_path / "visual.npz"
    assert (
        vab(
            "embed",
            "--data",
            str(manifest),
            "--model",
            str(tmp_path / "ft"),
            "--out",
            str(pictures),
        ).returncode
        == 0
    )
    mute = vab(
        "retrieve",
        str(silent),
        first,
        "--index",
        str(pictures),
        "--model",
        str(tmp_path / "ft"),
        "--direction",
        "a2v",
    )
    rows = [json.loads(ln) for ln in mute.stdout.splitlines()]
    assert mute.returncode == 1 and [r["status"] for r in rows] == ["error", "ok"]
    assert "no audio" in rows[0]["error"] and len(rows[1]["matches"]) == 5
    assert vab("embed", first, "--model", str(tmp_path / "ft"), "--out", str(index)).returncode == 2
    scored = vab(
        "eval", "--task", "retrieval", "--model", str(tmp_path / "ft"), "--reference", str(manifest)
    )
    assert scored.returncode == 0, scored.stderr
    scores = json.loads(scored.stdout)
    assert (scores["clips"], scores["chance_r1"], scores["r5_v2a"]) == (5, 0.2, 1.0)
    assert 0 <= scores["r1_a2v"] <= scores["r5_a2v"] <= 1

    classify_round_trip(tmp_path, manifest, lines, silent, cache_dir)


def classify_round_trip(tmp_path, manifest, lines, silent, cache_dir):
    """finetune classify (from the contrastive fine-tune, and a probe of the pre-trained
    backbone) -> classify -> eval, and the one-line refusals."""
    from safetensors.torch import load_file

    def finetune(init, out, data, *extra):
        return run_vab(
            "finetune",
            "classify",
            "--init",
            str(init),
            "--data",
            str(data),
            "--out",
            str(tmp_path / out),
            "--cache",
            str(cache_dir),
            "--steps",
            "2",
            *SHORT,
            "--json",
            *extra,
        )

    def vab(*args):
        return run_vab(*args, "--cache", str(cache_dir), "--json")

    done = finetune(tmp_path / "ft", "cls", manifest)
    assert done.returncode == 0, done.stderr
    assert {"val_loss", "val_accuracy"} <= set(json.loads(done.stdout))
    meta = json.loads((tmp_path / "cls" / "last" / "config.json").read_text())
    assert (meta["task"], meta["labels"], meta["multi_label"]) == (
        "classify",
        ["high", "low"],
        False,
    )
    probe = finetune(tmp_path / "pre", "probe", manifest, "--freeze", "--modality", "v")
    assert probe.returncode == 0, probe.stderr
    before = load_file(str(tmp_path / "pre" / "last" / "model.safetensors"))
    after = load_file(str(tmp_path / "probe" / "last" / "model.safetensors"))
    assert all(torch.equal(after["towers.backbone." + k], v) for k, v in before.items())
    first = json.loads(lines[0])["video"]
    named = vab("classify", str(silent), first, "--model", str(tmp_path / "probe"), "--top-k", "2")
    rows = [json.loads(ln) for ln in named.stdout.splitlines()]
    assert named.returncode == 0 and [r["status"] for r in rows] == ["ok", "ok"]  # v needs no sound
    for row in rows:
        probs = list(row["scores"].values())
        assert row["label"] == next(iter(row["scores"])) and probs == sorted(probs, reverse=True)
        assert set(row["scores"]) == {"high", "low"} and abs(sum(probs) - 1) < 1e-4
    deaf = vab("classify", str(silent), first, "--model", str(tmp_path / "cls"))
    rows = [json.loads(ln) for ln in deaf.stdout.splitlines()]
    assert deaf.returncode == 1 and [r["status"] for r in rows] == ["error", "ok"]
    assert "no audio" in rows[0]["error"]
    scored = vab(
        "eval", "--task", "classify", "--model", str(tmp_path / "cls"), "--reference", str(manifest)
    )
    assert scored.returncode == 0, scored.stderr
    summary = json.loads(scored.stdout)
    assert (summary["clips"], summary["chance"]) == (5, 0.5) and 0 <= summary["accuracy"] <= 1
    # Label lists: BCE, and mAP in validation and eval.
    lists = tmp_path / "lists.jsonl"
    tags = [["low"], ["high", "loud"], ["low", "loud"], ["high"], ["low", "loud"]]
    lists.write_text(
        "".join(
            json.dumps({**json.loads(ln), "label": t}) + "\n"
            for ln, t in zip(lines, tags, strict=True)
        )
    )
    multi = finetune(tmp_path / "pre", "multi", lists, "--modality", "a")
    assert multi.returncode == 0, multi.stderr
    assert 0 <= json.loads(multi.stdout)["val_map"] <= 1
    assert (
        vab(
            "eval",
            "--task",
            "classify",
            "--model",
            str(tmp_path / "multi"),
            "--reference",
            str(lists),
        ).returncode
        == 0
    )
    # An unknown label: one line, nothing written or scored.
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text(
        lines[0] + "\n" + json.dumps({**json.loads(lines[3]), "label": "purr"}) + "\n"
    )
    wrong = vab(
        "eval", "--task", "classify", "--model", str(tmp_path / "cls"), "--reference", str(unknown)
    )
    assert wrong.returncode == 1 and wrong.stdout == ""
    assert "line 2" in wrong.stderr and "'purr' is not one of the model's 2 labels" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1
    unseen = finetune(tmp_path / "pre", "unseen", unknown)
    assert unseen.returncode == 1 and "'purr' is on no train clip" in unseen.stderr
    assert not (tmp_path / "unseen").exists()
    generator = vab("classify", first, "--model", str(tmp_path / "pre"))
    assert generator.returncode == 1 and "not a classifier" in generator.stderr
    missing = vab("classify", str(tmp_path / "nope.mp4"), "--model", str(tmp_path / "cls"))
    assert missing.returncode == 1 and "no such file" in json.loads(missing.stdout)["error"]


@pytest.mark.parametrize("rank, says", [("0", True), ("1", False)])
def test_only_the_first_rank_says_what_an_interrupt_kept(tmp_path, monkeypatch, capsys, rank, says):
    import typer

    from vabcli.cli.runs import training_failures

    monkeypatch.setenv("RANK", rank)
    (tmp_path / "last").mkdir()  # saved by rank 0; another rank may look before it is there
    with pytest.raises(typer.Exit) as ended, training_failures(tmp_path):
        raise KeyboardInterrupt
    assert ended.value.exit_code == 130
    assert ("holds the run so far" in capsys.readouterr().err) == says
