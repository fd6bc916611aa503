"""`vab manifest`: manifests from folder trees and CSVs (VGGSound's layout included), splits
by a stable hash, missing videos left out and counted, errors naming the row."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vabcli.cli.main import app
from vabcli.data.manifest import ManifestError, read_manifest
from vabcli.data.manifest_sources import (
    SplitShares,
    records_from_csv,
    records_from_folder,
    write_manifest,
)


def _tree(root, names):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"not decoded: vab manifest only lists files")
    return root


def test_a_folder_tree_gives_labels_from_folder_names_and_paths_from_the_manifest(tmp_path):
    root = _tree(
        tmp_path / "clips",
        ["dog/a.mp4", "dog/b.MOV", "cat/deep/c.mkv", "loose.webm", "dog/notes.txt", ".hidden.mp4"],
    )
    out = tmp_path / "lists" / "manifest.jsonl"
    out.parent.mkdir()
    summary = write_manifest(records_from_folder(root, SplitShares()), out)
    entries = read_manifest(out)
    assert [e.video.resolve() for e in entries] == [
        root / "cat/deep/c.mkv",
        root / "dog/a.mp4",
        root / "dog/b.MOV",
        root / "loose.webm",
    ]
    assert [e.label for e in entries] == ["deep", "dog", "dog", None]
    assert all(e.video.exists() and e.split in ("train", "val", "test") for e in entries)
    assert json.loads(out.read_text().splitlines()[1])["video"] == "../clips/dog/a.mp4"
    assert summary.clips == 4 and summary.labels == Counter({"dog": 2, "deep": 1})


def test_a_clips_split_depends_only_on_its_path_and_the_shares_are_kept(tmp_path):
    shares = SplitShares.parse("8:1:1")
    keys = [f"class{i % 7}/clip{i}.mp4" for i in range(20000)]
    counts = Counter(shares.of(key) for key in keys)
    assert abs(counts["train"] / 20000 - 0.8) < 0.015
    assert abs(counts["val"] / 20000 - 0.1) < 0.01 and abs(counts["test"] / 20000 - 0.1) < 0.01
    # More clips in the folder, or a rerun on another machine: the first clips keep their split.
    small = _tree(tmp_path / "a" / "clips", ["x/1.mp4", "x/2.mp4", "y/3.mp4"])
    big = _tree(tmp_path / "b" / "clips", ["x/1.mp4", "x/2.mp4", "y/3.mp4", "y/4.mp4", "z/5.mp4"])
    first = {
        str(r["video"].relative_to(small)): r["split"] for r in records_from_folder(small, shares)
    }
    second = {
        str(r["video"].relative_to(big)): r["split"] for r in records_from_folder(big, shares)
    }
    assert first == {key: second[key] for key in first}


@given(
    st.tuples(*[st.floats(0, 100, allow_nan=False)] * 3).filter(lambda t: sum(t) > 0),
    st.text(min_size=1, max_size=30),
)
def test_only_splits_with_a_share_are_drawn(numbers, key):
    text = ":".join(repr(n) for n in numbers)
    split = SplitShares.parse(text).of(key)
    assert numbers[("train", "val", "test").index(split)] > 0


@pytest.mark.parametrize("text", ["8:1", "a:b:c", "0:0:0", "-1:1:1", "inf:1:1", "dev"])
def test_bad_shares_are_refused(text):
    with pytest.raises(ValueError, match="split"):
        SplitShares.parse(text)


def test_one_split_name_puts_every_clip_there():
    assert {SplitShares.parse("val").of(str(i)) for i in range(100)} == {"val"}


def test_a_csv_with_a_header_fills_the_manifest_fields(tmp_path):
    _tree(tmp_path / "v", ["a.mp4", "b.mp4"])
    table = tmp_path / "list.csv"
    table.write_text(
        "\ufeffvideo,label,start,end,split,notes\n"  # a BOM, as spreadsheets write
        "v/a.mp4,dog,1.5,4,val,anything\n"
        '\n"v/b.mp4","people marching, loud",,,,\n'
    )
    out = tmp_path / "m.jsonl"
    write_manifest(records_from_csv(table, SplitShares()), out)
    a, b = read_manifest(out)
    assert (a.video, a.label, a.start, a.end, a.split) == (
        tmp_path / "v/a.mp4",
        "dog",
        1.5,
        4.0,
        "val",
    )
    assert b.label == "people marching, loud" and b.start is None and b.split is not None


def test_vggsound_rows_become_paths_through_the_video_pattern(tmp_path):
    _tree(tmp_path / "clips", ["0012abc_000030.mp4", "-xyz_000001.mp4"])
    table = tmp_path / "vggsound.csv"  # VGGSound: no header; id, start second, label, split
    table.write_text(
        '0012abc,30,dog barking,train\n-xyz,1,"people marching",test\nmissing,5,cat,train\n'
    )
    records = records_from_csv(
        table,
        SplitShares(),
        columns=["id", "second", "label", "split"],
        video_pattern="clips/{id}_{second:06d}.mp4",
    )
    out = tmp_path / "vgg.jsonl"
    summary = write_manifest(records, out)
    a, b = read_manifest(out)
    assert a.video == tmp_path / "clips/0012abc_000030.mp4" and a.label == "dog barking"
    assert (b.split, a.split) == ("test", "train") and a.start is None  # "second" names a file
    assert summary.missing == [tmp_path / "clips/missing_000005.mp4"] and summary.clips == 2


def test_missing_videos_are_kept_when_asked(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("video\nnot/there.mp4\n")
    out = tmp_path / "m.jsonl"
    write_manifest(records_from_csv(table, SplitShares()), out, keep_missing=True)
    assert [e.video for e in read_manifest(out)] == [tmp_path / "not/there.mp4"]
    with pytest.raises(ManifestError, match="none of the 1 videos listed exists"):
        write_manifest(records_from_csv(table, SplitShares()), tmp_path / "n.jsonl")
    assert not (tmp_path / "n.jsonl").exists()


@pytest.mark.parametrize(
    "text, columns, pattern, complaint",
    [
        ("video,label\na.mp4,dog,extra\n", None, None, r"t.csv:2: 3 cells, expected 2"),
        ("video,start,end\na.mp4,4,2\n", None, None, r"t.csv:2: end \(2.0\) must be after"),
        ("video,start\na.mp4,soon\n", None, None, r"t.csv:2: start must be a number"),
        ("video,split\na.mp4,dev\n", None, None, r"t.csv:2: split must be one of"),
        ("name,label\na,dog\n", None, None, r"no 'video' column \(columns: name, label\)"),
        ("a,dog\n", ["id", "label"], "{idx}.mp4", r"no column 'idx' \(columns: id, label\)"),
        ("a,dog\n", ["id", "label"], "{label:03d}.mp4", r"t.csv:1: .*'dog' is not a whole"),
        ("a,dog\n", ["id", "id"], "{id}.mp4", r"a column name appears twice"),
        ("", None, None, r"empty CSV"),
    ],
)
def test_a_row_that_cannot_be_a_clip_names_file_and_line(
    tmp_path, text, columns, pattern, complaint
):
    table = tmp_path / "t.csv"
    table.write_text(text)
    with pytest.raises(ManifestError, match=complaint):
        list(records_from_csv(table, SplitShares(), columns, pattern))


def test_vab_manifest_writes_what_the_library_writes_and_refuses_to_overwrite(tmp_path, runner):
    root = _tree(tmp_path / "clips", ["dog/a.mp4", "cat/b.mp4"])
    out = tmp_path / "m.jsonl"
    result = runner.invoke(app, ["manifest", str(root), "--out", str(out), "--split", "1:1:0"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    library = tmp_path / "lib.jsonl"
    write_manifest(records_from_folder(root, SplitShares(1, 1, 0)), library)
    assert out.read_text() == library.read_text()
    again = runner.invoke(app, ["manifest", str(root), "--out", str(out)])
    assert again.exit_code == 1 and "--overwrite" in again.stderr
    assert out.read_text() == library.read_text()


def test_vab_manifest_to_stdout_and_its_one_line_errors(tmp_path, runner, monkeypatch):
    root = _tree(tmp_path / "clips", ["dog/a.mp4"])
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["manifest", "clips", "-o", "-", "--split", "test"])
    assert json.loads(result.stdout) == {
        "video": "clips/dog/a.mp4",
        "label": "dog",
        "split": "test",
    }
    shutil.rmtree(root / "dog")
    for args, code, message in [
        (["clips"], 1, "error: clips: no videos in this folder or below"),
        (["nothere.csv"], 1, "error: nothere.csv: no such file or folder"),
        (["clips", "--columns", "a,b"], 2, "for a CSV, not a folder"),
    ]:
        failed = runner.invoke(app, ["manifest", *args])
        assert failed.exit_code == code and message in failed.stderr, failed.output
    assert not (tmp_path / "manifest.jsonl").exists()


def test_the_api_writes_what_the_command_writes(tmp_path, runner):
    import vabcli

    table = tmp_path / "list.csv"
    _tree(tmp_path, ["clips/a_000001.mp4", "clips/b_000002.mp4"])
    table.write_text("a,1,dog\nb,2,cat\n")
    shape = ["--columns", "id,second,label", "--video-pattern", "clips/{id}_{second:06d}.mp4"]
    done = runner.invoke(app, ["manifest", str(table), "-o", str(tmp_path / "cli.jsonl"), *shape])
    assert done.exit_code == 0, done.output
    written = vabcli.manifest(
        table,
        tmp_path / "api.jsonl",
        columns=["id", "second", "label"],
        video_pattern="clips/{id}_{second:06d}.mp4",
    )
    assert written.read_text() == (tmp_path / "cli.jsonl").read_text()
    assert [e.label for e in read_manifest(written)] == ["dog", "cat"]
