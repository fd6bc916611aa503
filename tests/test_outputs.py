"""Output naming, shards and per-clip locks of `vab generate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vabcli.clips import ClipItem
from vabcli.extract import Segment
from vabcli.outputs import ClipBusyError, OutputLock, in_shard, parse_shard, plan_targets


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


def test_a_clip_is_complete_only_when_its_sidecar_names_outputs_that_exist(tmp_path):
    target = plan_targets(items("x.mp4"), tmp_path, "wav", mux=True)[0]
    assert not target.complete()
    target.audio.write_bytes(b"a")
    target.video.write_bytes(b"v")
    assert not target.complete()  # an interrupted run: no sidecar
    outputs = {"audio": "x.wav", "video": "x.mp4", "sidecar": "x.json"}
    target.sidecar.write_text(json.dumps({"outputs": outputs}))
    assert target.complete()
    target.video.unlink()
    assert not target.complete()


def test_shards_split_a_list_deterministically_and_completely():
    found = items(*(f"clip{i}.mp4" for i in range(200)))
    shards = [[it for it in found if in_shard(it, i, 4)] for i in range(1, 5)]
    assert sorted(sum(shards, []), key=str) == sorted(found, key=str)
    assert all(25 <= len(s) <= 75 for s in shards)
    # adding clips never moves the others
    more = items(*(f"new{i}.mp4" for i in range(50)))
    assert [it for it in found + more if in_shard(it, 2, 4)][: len(shards[1])] == shards[1]
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "x", "1/0"):
        with pytest.raises(ValueError):
            parse_shard(bad)


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
