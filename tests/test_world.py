"""The synthetic world and `vab synth`: ground truth that the pictures and the sounds agree on."""

import json
from fractions import Fraction
from itertools import pairwise

import numpy as np
import pytest

from vabcli.data.manifest import read_manifest
from vabcli.evaluation.metrics import detect_onsets, mel_db
from vabcli.media.decode import decode_audio
from vabcli.media.probe import probe
from vabcli.world.scenes import (
    CLASS_NAMES,
    CLASSES,
    MIN_EVENT_GAP,
    SYNTH_SAMPLE_RATE,
    Painter,
    drop_height,
    flash_level,
    moment_targets,
    render_audio,
    sample_scene,
)


def test_scenes_are_deterministic_and_varied():
    scenes = [sample_scene(5, i, 2.0, 20.0) for i in range(200)]
    assert scenes == [sample_scene(5, i, 2.0, 20.0) for i in range(200)]
    assert scenes != [sample_scene(6, i, 2.0, 20.0) for i in range(200)]
    assert len(CLASSES) >= 6
    assert {s.label for s in scenes} == {c.name for c in CLASSES}
    assert {"24000/1001", "30"} <= {s.fps for s in scenes}
    assert len({(s.width, s.height) for s in scenes}) >= 5
    durations = [s.duration for s in scenes]
    assert 2.0 - 0.1 <= min(durations) < 5 and 15 < max(durations) <= 20.0 + 0.1
    multi = [s for s in scenes if len(s.sources) > 1]
    assert multi and all(len({src.label for src in s.sources}) == len(s.sources) for s in multi)
    for scene in multi:  # the label is the one class heard most often, never a tie
        counts = sorted((len(src.events) for src in scene.sources), reverse=True)
        assert counts[0] > counts[1]
        assert scene.label == max(scene.sources, key=lambda s: len(s.events)).label
    for scene in scenes:
        events = scene.events
        assert events and all(0 <= e < scene.duration for e in events)
        assert all(b - a >= MIN_EVENT_GAP - 1e-6 for a, b in pairwise(events))


def test_sounds_start_exactly_at_the_events_with_silence_between():
    scene = sample_scene(3, 1, 6.0, 6.0)
    audio = render_audio(scene)
    assert len(audio) == round(scene.duration * SYNTH_SAMPLE_RATE)
    for event in scene.events:
        k = round(event * SYNTH_SAMPLE_RATE)
        assert np.abs(audio[k - 80 : k]).max() < 1e-3 or event - 0 < 0.01  # quiet just before
        assert np.abs(audio[k : k + 160]).max() > 0.05  # sounding just after
    before_first = audio[: round(scene.events[0] * SYNTH_SAMPLE_RATE)]
    assert np.abs(before_first).max() == 0.0


def test_pictures_show_the_moment_of_each_sound():
    events = (1.0, 2.5)
    assert drop_height(1.0, events) == 0.0 and drop_height(0.0, events) == 1.0
    assert drop_height(0.9, events) < drop_height(0.8, events) < 1.0  # falling onto the event
    assert flash_level(0.99, events) == 0.0 and flash_level(1.0, events) == 1.0
    assert flash_level(1.1, events) < 1.0
    scene = sample_scene(0, 4, 4.0, 4.0)
    painter = Painter(scene)
    before, at = painter.frame(scene.events[0] - 0.2), painter.frame(scene.events[0])
    assert before.shape == (scene.height, scene.width, 3) and before.dtype == np.uint8
    assert not np.array_equal(before, at)  # something visibly happens at the sound


def test_moment_targets():
    times = np.array([0.0, 0.9, 1.0, 1.2, 3.0])
    present, timing = moment_targets([("bell", [1.0]), ("lamp", [1.0])], times, horizon=0.5)
    bell, lamp = (CLASS_NAMES.index(name) for name in ("bell", "lamp"))
    assert present[:, bell].tolist() == [1] * 5 and present.sum() == 10
    # A dropper's picture tells the distance to its strike; a flasher's, the time since it.
    assert timing[:, bell].tolist() == pytest.approx([1.0, 0.2, 0.0, 0.4, 1.0])
    assert timing[:, lamp].tolist() == pytest.approx([1.0, 1.0, 0.0, 0.4, 1.0])
    assert timing[:, CLASS_NAMES.index("ball")].tolist() == [1.0] * 5


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory):
    from vabcli.world.synth import SynthOptions, synthesize

    out = tmp_path_factory.mktemp("synth")
    synthesize(out, SynthOptions(n=6, seed=11, min_duration=2.0, max_duration=3.5))
    return out


def test_synth_writes_playable_clips_whose_audio_matches_the_manifest(synth_set):
    entries = read_manifest(synth_set / "manifest.jsonl")
    assert len(entries) == 6
    assert {e.split for e in entries} <= {"train", "val", "test"}
    for entry, scene in zip(
        entries, [sample_scene(11, i, 2.0, 3.5) for i in range(6)], strict=True
    ):
        info = probe(entry.video)
        assert info.has_audio and info.video_codec == "h264"
        assert info.fps == pytest.approx(float(Fraction(scene.fps)), rel=1e-3)
        assert info.duration == pytest.approx(scene.duration, abs=0.01)
        assert entry.label == scene.label and list(entry.events) == scene.events
        assert sorted(e for _, events in entry.sources for e in events) == scene.events
        audio = decode_audio(info, 16_000)
        heard = detect_onsets(mel_db(audio))
        assert len(heard) == len(scene.events)  # through AAC, every sound and nothing else
        assert np.abs(heard - np.asarray(scene.events)).max() < 0.02


def test_vab_synth_cli_is_deterministic(tmp_path, runner):
    from vabcli.cli.main import app

    args = ["--n", "2", "--seed", "4", "--duration", "2", "-q"]
    first = runner.invoke(app, ["synth", str(tmp_path / "a"), *args])
    second = runner.invoke(app, ["synth", str(tmp_path / "b"), *args])
    assert first.exit_code == 0 and second.exit_code == 0, first.output
    a = (tmp_path / "a" / "manifest.jsonl").read_text()
    assert a == (tmp_path / "b" / "manifest.jsonl").read_text()
    assert all(json.loads(line)["events"] for line in a.splitlines())
    for name in ("clip-00000.mp4", "clip-00001.mp4"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    bad = runner.invoke(
        app, ["synth", str(tmp_path / "c"), "--min-duration", "5", "--max-duration", "2"]
    )
    assert bad.exit_code == 2 and "durations" in bad.output


def test_vab_synth_removes_the_half_written_clip_of_a_killed_run(tmp_path, runner):
    """A synth killed mid-clip (SIGKILL: no cleanup) leaves `.clip-N.tmp-...mp4`; writing that
    clip again removes it, and leaves alone a temporary a live writer may still be writing."""
    import os

    from vabcli.cli.main import app
    from vabcli.core.temps import temp_name

    tmp_path.mkdir(exist_ok=True)
    killed = tmp_path / ".clip-00000.tmp-999999-0badc0de.mp4"  # no host: gone once untouched 6 h
    killed.write_bytes(b"half a clip")
    os.utime(killed, (0, 0))
    live = tmp_path / ("." + temp_name("clip-00001") + ".mp4")  # this very process writes it
    live.write_bytes(b"being written")
    done = runner.invoke(app, ["synth", str(tmp_path), "--n", "2", "--duration", "2", "-q"])
    assert done.exit_code == 0, done.output
    assert not killed.exists() and live.exists()
    assert {p.name for p in tmp_path.glob("clip-*.mp4")} == {"clip-00000.mp4", "clip-00001.mp4"}


def test_make_model_recipe_overrides_are_typed_as_the_recipe_and_checked():
    from vabcli.world.make_model import Recipe, with_overrides

    recipe = with_overrides(
        Recipe(), ["data_clips=20", "lr=2e-3", "model_set=d_model=64,n_heads=2"]
    )
    assert recipe.data_clips == 20 and recipe.lr == 0.002
    assert recipe.model_set == ("d_model=64", "n_heads=2")
    assert recipe.train_steps == Recipe().train_steps  # untouched fields keep their defaults
    for bad in ["data_clips=0.5", "no_such_field=1", "data_clips"]:
        with pytest.raises(ValueError, match="--recipe"):
            with_overrides(Recipe(), [bad])


def test_make_model_counts_every_segment_of_a_resumed_stage(tmp_path, monkeypatch):
    from vabcli.world import make_model

    now = [0.0]
    monkeypatch.setattr(make_model.time, "monotonic", lambda: now[0])
    first = make_model._StageClock(tmp_path)
    first.start("train")
    now[0] += 600
    first.note("train")  # a validation 10 minutes in; then the process is killed
    now[0] += 300  # minutes after the last note are lost with the process
    again = make_model._StageClock(tmp_path)
    again.start("train", resumed=True)
    now[0] += 1200
    again.finish("train")
    assert again.minutes == {"train": 30.0}
    fresh = make_model._StageClock(tmp_path)  # a rebuild from scratch forgets earlier runs
    fresh.start("train")
    now[0] += 60
    fresh.finish("train")
    assert fresh.minutes == {"train": 1.0}
