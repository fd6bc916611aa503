"""INPUT arguments: files, folders (recursive, by extension), globs, and what matches nothing."""

from __future__ import annotations

from vabcli.media.inputs import expand_inputs


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_folders_globs_and_errors(tmp_path):
    a = touch(tmp_path / "in" / "a.MP4")
    b = touch(tmp_path / "in" / "deep" / "b.webm")
    touch(tmp_path / "in" / "notes.txt")
    touch(tmp_path / "in" / ".hidden" / "c.mp4")
    touch(tmp_path / "in" / ".a.tmp-1-2.mp4")
    explicit = touch(tmp_path / "weird.bin")
    items = expand_inputs(
        [
            str(tmp_path / "in"),
            str(explicit),
            str(tmp_path / "in" / "*.MP4"),
            str(tmp_path / "nope.mp4"),
            str(tmp_path / "*.zzz"),
            str(touch(tmp_path / "empty" / "x.txt").parent),
        ]
    )
    ok = [i.path for i in items if i.error is None]
    assert ok == [a, b, explicit]  # folder order, explicit file kept, glob duplicate dropped
    errors = [i.error for i in items if i.error]
    assert len(errors) == 3
    assert "no such file" in errors[0] and "matches" in errors[1] and "no video files" in errors[2]
