"""The bundled model: it ships complete, loads through the ordinary code paths, and works."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch

from vabcli.core import builtin
from vabcli.core.builtin import BUILTIN_DIR, CHECKPOINT, CODEC, VISION, BuiltinModelMissingError
from vabcli.encoders.audio_codec import load_codec
from vabcli.encoders.image import load_visual_encoder
from vabcli.evaluation.metrics import OnsetCounts, detect_onsets, mel_db
from vabcli.media.decode import decode_audio
from vabcli.media.probe import probe
from vabcli.model.checkpoint import read_meta

VAB = [sys.executable, "-m", "vabcli"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from vabcli.world.synth import SynthOptions, synthesize

    out = tmp_path_factory.mktemp("world")
    # Seed 31: no data set the bundled model was trained on.
    return synthesize(out, SynthOptions(n=3, seed=31, min_duration=3.0, max_duration=5.0))


def test_vab_models_lists_the_bundled_model_within_the_size_budget():
    done = subprocess.run([*VAB, "models", "--json"], capture_output=True, text=True, check=True)
    record = json.loads(done.stdout)
    assert record["name"] == "builtin" and record["missing"] == []
    assert 1e6 < record["bytes"] <= 50e6
    assert {"codec", "image encoder", "model"} <= set(record["summary"])
    text = subprocess.run([*VAB, "models"], capture_output=True, text=True, check=True).stdout
    assert "builtin" in text and "MB" in text and "MISSING" not in text


def test_the_checkpoint_names_its_encoders_by_name_not_by_path():
    encoders = read_meta(CHECKPOINT.folder).encoders
    assert encoders["codec"] == "builtin" and encoders["image_encoder"] == "builtin"


def test_the_bundled_model_is_what_make_model_builds():
    """`make model` rebuilds the bundled model: the card's recipe is make_model's, and the
    checkpoint has the dimensions that recipe's `vab train` gives a new model (time code too)."""
    from dataclasses import asdict

    from vabcli.config import model_config
    from vabcli.model.checkpoint import read_model_config
    from vabcli.world.make_model import Recipe

    recipe = Recipe()
    card = json.loads((BUILTIN_DIR / "card.json").read_text())
    assert card["recipe"] == json.loads(json.dumps(asdict(recipe)))
    shipped = read_model_config(CHECKPOINT.folder)
    dims = dict(setting.split("=") for setting in recipe.model_set)
    built = model_config("tiny", **{name: int(value) for name, value in dims.items()})
    for name in ("d_model", "n_heads", "n_multiway", "n_shared", "time_scale"):
        assert getattr(shipped, name) == pytest.approx(getattr(built, name)), name
    assert read_meta(CHECKPOINT.folder).step == recipe.train_steps


def test_builtin_codec_keeps_every_sound_of_the_world(world):
    codec = load_codec("builtin")
    assert (codec.sample_rate, codec.n_codebooks, codec.frame_rate) == (16_000, 4, 50.0)
    counts = OnsetCounts()
    for line in world.read_text().splitlines():
        entry = json.loads(line)
        audio = decode_audio(probe(world.parent / entry["video"]), 16_000)
        rebuilt = codec.synthesize(codec.encode(torch.from_numpy(audio)[None, None]))[0, 0].numpy()
        counts.add(detect_onsets(mel_db(rebuilt)), np.asarray(entry["events"]), 0.1)
    assert counts.f1 >= 0.9, (counts.matched, counts.detected, counts.reference)


def test_builtin_image_encoder_loads_as_an_open_clip_tower():
    encoder = load_visual_encoder("builtin")
    assert encoder.id.startswith("builtin-") and encoder.dim == 64
    frames = np.zeros((2, *encoder.image_size, 3), dtype=np.uint8)
    frames[1, 20:40, 20:40] = (220, 40, 40)
    features = encoder.encode(frames)
    assert features.shape == (2, 64) and not np.allclose(features[0], features[1])


def test_generate_uses_the_bundled_model_by_default(world, tmp_path):
    out = tmp_path / "dubbed"
    args = ["--data", str(world), "--out", str(out), "--cache", str(tmp_path / "cache")]
    done = subprocess.run(
        [*VAB, "generate", *args, "--steps", "4", "-q"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    scores = subprocess.run(
        [*VAB, "eval", "--generated", str(out), "--reference", str(world), "--json", "-q"],
        capture_output=True,
        text=True,
    )
    assert scores.returncode == 0, scores.stderr
    result = json.loads(scores.stdout)
    assert result["clips"] == 3 and result["duration_error_ms"] == 0
    assert result["onset_f1"] > 0.5  # random weights would not place sounds on the events
    sidecar = json.loads((out / "clip-00000.json").read_text())
    assert sidecar["codec_id"].startswith("vab-world-16k@")
    wav, rate = soundfile.read(out / "clip-00000.wav")
    duration = probe(world.parent / "clip-00000.mp4").duration
    assert rate == 16_000 and len(wav) == round(duration * rate)


def test_a_missing_bundled_file_fails_fast_naming_the_file_and_the_fix(tmp_path, monkeypatch):
    import vabcli.encoders.audio_codec
    import vabcli.encoders.image

    gone = builtin.BuiltinPart("codec", tmp_path / "codec", CODEC.files)
    monkeypatch.setattr(vabcli.encoders.audio_codec, "CODEC", gone)
    with pytest.raises(BuiltinModelMissingError, match="make model") as err:
        load_codec("builtin")
    assert str(tmp_path / "codec" / "config.json") in str(err.value)
    monkeypatch.setattr(
        vabcli.encoders.image, "VISION", builtin.BuiltinPart("x", tmp_path, VISION.files)
    )
    with pytest.raises(BuiltinModelMissingError, match="open_clip_config.json"):
        load_visual_encoder("builtin")
    assert BUILTIN_DIR.is_dir()
