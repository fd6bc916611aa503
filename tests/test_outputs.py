"""Output naming, shards and per-clip locks of `vab generate`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from vabcli.data.clips import ClipItem
from vabcli.data.shards import Shard
from vabcli.generation.outputs import ClipBusyError, OutputLock, plan_targets, shard_key
from vabcli.media.extract import Segment


def items(*names: str) -> list[ClipItem]:
    return [ClipItem(Path("/in") / n, relative=Path(n)) for n in names]


def test_outputs_mirror_the_tree_and_collisions_are_refused(tmp_path):
    found = items("a/x.mp4", "b/x.mp4", "a/x.mkv")
    found.append(ClipItem(Path("/in/a/x.mp4"), Segment(2.0, 4.5), relative=Path("a/x.mp4")))
    targets = plan_targets(found, tmp_path, "flac", mux=True)
    assert targets[0].audio == tmp_path / "a" / "x.flac"
    assert targets[0].video == tmp_path / "a" / "x.mp4"
    assert targets[1].sidecar == tmp_path / "b" / "x.json" and targets[1].problem is None
    assert "same output name" in targets[2].problem
    assert targets[3].audio == tmp_path / "a" / "x_2-4.5s.flac"
    assert plan_targets(found[:1], tmp_path, "wav", mux=False)[0].outputs == [
        tmp_path / "a" / "x.wav",
        tmp_path / "a" / "x.json",
    ]


def finished_clip(tmp_path: Path, mp4: Path):
    """A clip as a run leaves it: x.wav, x.mp4 (a copy of `mp4`) and the sidecar naming them."""
    target = plan_targets(items("x.mp4"), tmp_path, "wav", mux=True)[0]
    target.audio.write_bytes(b"RIFF audio")
    shutil.copy(mp4, target.video)
    outputs = {"audio": "x.wav", "video": "x.mp4", "sidecar": "x.json"}
    sizes = {p.name: p.stat().st_size for p in (target.audio, target.video)}
    target.sidecar.write_text(json.dumps({"outputs": outputs, "output_bytes": sizes}))
    return target


def test_a_clip_is_complete_only_when_its_sidecar_names_outputs_that_exist(tmp_path, clip):
    target = plan_targets(items("x.mp4"), tmp_path, "wav", mux=True)[0]
    assert not target.complete()
    mp4 = clip("whole.mp4", duration=1.0)
    target.audio.write_bytes(b"a")
    shutil.copy(mp4, target.video)
    assert not target.complete()  # an interrupted run: no sidecar
    target = finished_clip(tmp_path, mp4)
    assert target.complete()
    target.video.unlink()
    assert not target.complete()


@pytest.mark.parametrize("damage", ["empty video", "cut audio", "longer audio", "cut video"])
def test_a_clip_with_damaged_outputs_is_not_complete(tmp_path, clip, damage):
    target = finished_clip(tmp_path, clip("whole.mp4", duration=1.0))
    assert target.complete()
    victim = target.video if damage.endswith("video") else target.audio
    size = victim.stat().st_size
    with open(victim, "r+b") as f:
        f.truncate({"empty video": 0, "longer audio": size + 1}.get(damage, size // 2))
    if damage == "cut video":  # the structure tells, even beside an older sidecar without sizes
        outputs = json.loads(target.sidecar.read_text())["outputs"]
        target.sidecar.write_text(json.dumps({"outputs": outputs}))
    assert not target.complete()


def test_shards_follow_the_output_name_wherever_the_inputs_are(tmp_path):
    names = [f"clip{i}.mp4" for i in range(50)]
    here = plan_targets(items(*names), tmp_path, "wav", mux=True)
    elsewhere = [ClipItem(Path("/mnt/other") / n, relative=Path(n)) for n in names]
    there = plan_targets(elsewhere, tmp_path, "wav", mux=True)
    shares = [[shard_key(t) for t in Shard(n, 3).of(here, shard_key)] for n in (1, 2, 3)]
    assert sorted(sum(shares, [])) == sorted(shard_key(t) for t in here)
    for number, share in zip((1, 2, 3), shares, strict=True):
        assert [shard_key(t) for t in Shard(number, 3).of(there, shard_key)] == share


def test_taking_a_clip_lock_sweeps_that_clip_temporaries_only(tmp_path):
    dead = [
        ".x.tmp-99999-0123abcd.wav",
        ".x.tmp-99999-0123abcd.mp4",
        ".x.tmp-1-89abcdef.json",
        "..x.tmp-99999-0123abcd.tmp-99999-deadbeef.mp4",
    ]
    kept = [".x.y.tmp-99999-0123abcd.wav", ".xx.tmp-99999-0123abcd.wav", "x.wav", ".x.lockish"]
    for name in dead + kept:
        (tmp_path / name).write_bytes(b"left")
    live = tmp_path / f".x.tmp-{os.getpid()}-0123abcd.wav"  # even a live pid: the lock says
    live.write_bytes(b"left")  # nobody else writes this clip, so it is a killed run's
    with OutputLock(tmp_path / "x.json"):
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, ".x.lock"])


def test_a_clip_lock_is_exclusive_and_cleaned_up(tmp_path):
    sidecar = tmp_path / "x.json"
    first = OutputLock(sidecar)
    first.acquire()
    with pytest.raises(ClipBusyError):
        OutputLock(sidecar).acquire()
    first.release()
    assert not first.path.exists()
    with OutputLock(sidecar):
        pass
