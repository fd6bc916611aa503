"""The Python API: the README's example runs as written, its dub is the audio `vab generate`
writes, and `import vabcli` stays light."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from vabcli.cli.main import app

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_example() -> str:
    section = README.read_text(encoding="utf-8").partition("\n## Python API\n")[2]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README.md's Python API section has no python example"
    return match.group(1)


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> tuple[Path, dict]:
    """The README example run in a folder of two `vab synth` clips; its variables."""
    from vabcli.core.threads import size_torch_threads

    folder = tmp_path_factory.mktemp("api")
    synth = ["synth", str(folder / "data"), "--n", "2", "--duration", "2", "--seed", "1"]
    done = CliRunner().invoke(app, synth)
    assert done.exit_code == 0, done.output
    # The torch threads `vab generate` sets itself, so the audio can be compared bitwise.
    size_torch_threads()
    namespace: dict = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("VAB_CACHE", str(folder / "cache"))
        exec(compile(_readme_example(), str(README), "exec"), namespace)
    yield folder, namespace
    namespace["model"].close()


def test_the_dub_is_what_vab_generate_writes(example):
    folder, ns = example
    dub = ns["dub"]
    assert dub.audio.dtype == np.float32 and dub.audio.ndim == 1
    assert len(dub.audio) == round(dub.duration * dub.sample_rate) == 2 * 16000
    assert dub.seed == 7 and np.abs(dub.audio).max() > 0.01  # sound, not silence
    clip, out = folder / "data" / "clip-00000.mp4", folder / "cli"
    generate = ["generate", str(clip), "--out", str(out), "--seed", "7", "--no-mux", "-q"]
    # A cache of its own: the command computes the clip's features itself.
    done = CliRunner().invoke(app, [*generate, "--cache", str(folder / "cli-cache")])
    assert done.exit_code == 0, done.output
    written, rate = soundfile.read(out / "clip-00000.wav", dtype="int16")
    assert rate == dub.sample_rate
    # The example wrote the dub with soundfile: the same 16-bit samples, every one.
    example_wav, _ = soundfile.read(folder / "clip-00000.wav", dtype="int16")
    assert np.array_equal(example_wav, written)
    as_float, _ = soundfile.read(out / "clip-00000.wav", dtype="float32")
    assert np.abs(as_float - dub.audio).max() <= 2 / 32768  # within the WAV's rounding


def test_a_window_with_no_room_for_the_default_lookahead_dubs_without_one(example):
    """`--window 0.3` at 8 fps leaves 0.15 s of new sound a window: room for one visual frame,
    none for a lookahead besides. It dubs (as it did before the lookahead was a default)."""
    folder, ns = example
    dub = ns["model"].dub(folder / "data" / "clip-00000.mp4", window_seconds=0.3)
    assert len(dub.audio) == 2 * 16000 and np.abs(dub.audio).max() > 0.01


def test_the_example_embeds_and_generates(example):
    folder, ns = example
    vectors = ns["vectors"]
    assert vectors.shape[0] == 2 and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert [(o.status, o.error) for o in ns["outcomes"]] == [("ok", None), ("ok", None)]
    for name in ("clip-00000", "clip-00001"):
        assert (folder / "dubbed" / f"{name}.mp4").stat().st_size > 0
    sound = ns["model"].embed(folder / "data" / "clip-00000.mp4", modality="a")
    assert sound.shape == (1, vectors.shape[1])


def test_another_seed_gives_other_audio(example):
    folder, ns = example
    other = ns["model"].dub(folder / "data" / "clip-00000.mp4", seed=8)
    assert len(other.audio) == len(ns["dub"].audio)
    assert not np.array_equal(other.audio, ns["dub"].audio)


def test_a_bad_path_is_one_clear_error(example, tmp_path):
    import vabcli

    _, ns = example
    missing = tmp_path / "missing.mp4"
    with pytest.raises(vabcli.VabError, match=f"^{re.escape(str(missing))}: no such file$"):
        ns["model"].dub(missing)
    with pytest.raises(vabcli.VabError, match="no checkpoint at"):
        vabcli.load(tmp_path / "no-model")
    with pytest.raises(vabcli.VabError, match="is not a classifier"):
        ns["model"].classify(missing)
    with pytest.raises(TypeError, match="'audio_format'"):  # a file's option, not a clip's
        ns["model"].dub(missing, audio_format="flac")


def test_import_stays_light():
    code = (
        "import sys, vabcli\n"
        "assert not [m for m in sys.modules if m.startswith('vabcli.')], sys.modules\n"
        "assert 'numpy' not in sys.modules and vabcli.__version__\n"
        "assert {'load', 'generate', 'Dub'} <= set(dir(vabcli))\n"
        "vabcli.load, vabcli.generate, vabcli.Dub, vabcli.VabError\n"
        "assert 'torch' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def tiny_models(tmp_path) -> tuple[Path, Path]:
    """A tiny random pre-trained checkpoint (debug encoders) and a classifier built on it."""
    import torch

    from tests.tiny_models import make_checkpoint
    from vabcli.model.checkpoint import load_checkpoint, save_checkpoint
    from vabcli.tasks.classify import ClassifierModel, ClassifySpec

    pretrained = make_checkpoint(tmp_path / "pre")
    cfg, _, meta = load_checkpoint(pretrained)
    spec = ClassifySpec(n_layers=1, modality="av", labels=("high", "low", "mid"), multi_label=False)
    torch.manual_seed(1)
    classifier = save_checkpoint(
        tmp_path / "cls", ClassifierModel(cfg, spec), cfg, {**meta.to_dict(), **spec.meta()}
    )
    return pretrained, classifier


def test_embed_and_classify_give_what_the_commands_give(tiny_models, example, tmp_path):
    import vabcli

    pretrained, classifier = tiny_models
    videos = sorted((example[0] / "data").glob("*.mp4"))
    cache = ["--cache", str(tmp_path / "cli-cache")]
    runner = CliRunner()
    out = tmp_path / "v.npz"
    embed = ["embed", *map(str, videos), "--model", str(pretrained), "--out", str(out), *cache]
    assert runner.invoke(app, embed).exit_code == 0
    with vabcli.load(pretrained, cache=tmp_path / "cache") as model:
        assert np.array_equal(model.embed(videos), np.load(out)["embeddings"])
        with pytest.raises(vabcli.VabError, match="is not a classifier"):
            model.classify(videos)
    classify = [
        "classify",
        *map(str, videos),
        "--model",
        str(classifier),
        "--top-k",
        "2",
        "--json",
        *cache,
    ]
    done = runner.invoke(app, classify)
    assert done.exit_code == 0, done.output
    rows = [json.loads(line) for line in done.output.splitlines()]
    with vabcli.load(classifier, cache=tmp_path / "cache") as model:
        results = model.classify(videos, top_k=2)
        with pytest.raises(vabcli.VabError, match="not a model that generates audio"):
            model.dub(videos[0])
        with pytest.raises(vabcli.VabError, match="is a classifier"):
            model.embed(videos)
    assert [r.label for r in results] == [row["label"] for row in rows]
    for result, row in zip(results, rows, strict=True):
        assert list(result.scores) == list(row["scores"])
        assert np.allclose(list(result.scores.values()), list(row["scores"].values()), atol=1e-6)


def test_train_and_finetune_through_the_api(clip, tmp_path):
    """A tiny model pre-trained from a manifest, then fine-tuned into a classifier: checkpoints
    written, summaries as `vab train --json` prints them."""
    import vabcli

    lines = []
    for i, split in enumerate(["train", "train", "val"]):
        path = clip(f"a{i}.mp4", duration=1.5, tone_hz=300.0 + 100 * i)
        lines.append(json.dumps({"video": str(path), "split": split, "label": f"l{i % 2}"}))
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    short = {"batch_size": 2, "clip_seconds": 1.0, "val_every": 2, "workers": 1}
    debug = {"cache": tmp_path / "cache", "codec": "debug", "image_encoder": "debug"}
    steps = []
    run = tmp_path / "run"

    def on_step(metrics: dict) -> None:
        steps.append(metrics["step"])

    summary = vabcli.train(run, data=manifest, steps=2, on_step=on_step, **debug, **short)
    assert summary["out"] == str(run) and summary["last"] == str(run / "last")
    assert summary["step"] == 2 and "val_loss" in summary and steps == [1, 2]
    assert (run / "last" / "model.safetensors").is_file()
    with pytest.raises(ValueError, match="--overwrite"):
        vabcli.train(run, data=manifest, steps=1, **debug)
    cls = tmp_path / "cls"
    tuned = vabcli.finetune(
        "classify", run, cls, data=manifest, steps=2, cache=debug["cache"], **short
    )
    assert tuned["step"] == 2 and "val_accuracy" in tuned
    assert (cls / "last" / "model.safetensors").is_file()
    # `data` may also be a pack folder (`vab train --write-pack`): no videos, no encoders.
    pack, cache = tmp_path / "pack", ["--cache", str(debug["cache"])]
    encoders = ["--codec", "debug", "--image-encoder", "debug"]
    write = ["train", "--data", str(manifest), "--write-pack", str(pack), *cache, *encoders]
    assert CliRunner().invoke(app, write).exit_code == 0
    from_pack = vabcli.train(tmp_path / "packed", data=pack, steps=1, **short)
    assert from_pack["step"] == 1


def test_tokenize_and_evaluate_give_what_the_commands_give(example, tmp_path):
    """vabcli.tokenize fills the cache as `vab tokenize` does (a second call finds every clip
    cached); vabcli.evaluate scores the example's dubs as `vab eval --json` does."""
    import vabcli

    folder, _ = example
    manifest = folder / "data" / "manifest.jsonl"
    debug = {"codec": "debug", "image_encoder": "debug"}
    first = vabcli.tokenize(data=manifest, cache=tmp_path / "cache", **debug)
    again = vabcli.tokenize(data=manifest, cache=tmp_path / "cache", **debug)
    assert [o.status for o in first] == ["ok", "ok"]
    assert [o.figures["cache_hit"] for o in again] == [True, True]
    assert [o.figures["n_visual"] for o in again] == [o.figures["n_visual"] for o in first]

    scores = vabcli.evaluate(manifest, generated=folder / "dubbed")
    command = ["eval", "--generated", str(folder / "dubbed"), "--reference", str(manifest)]
    done = CliRunner().invoke(app, [*command, "--json", "-q"])
    printed = json.loads(done.stdout)
    assert scores["clips"] == printed["clips"] == 2 and scores["missing"] == 0
    assert scores["onset_f1"] == pytest.approx(printed["onset_f1"], abs=1e-4)
    with pytest.raises(ValueError, match="generated"):
        vabcli.evaluate(manifest)
