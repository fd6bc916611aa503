"""Manifest lines: paths relative to the manifest, optional fields, errors naming file:line."""

from __future__ import annotations

import pytest

from vabcli.data.manifest import ManifestError, read_manifest


def test_fields_and_paths(tmp_path):
    manifest = tmp_path / "data" / "manifest.jsonl"
    manifest.parent.mkdir()
    manifest.write_text(
        '{"video": "clips/a.mp4", "label": "dog", "split": "train"}\n'
        "\n# a comment\n"
        '{"video": "/abs/b.mkv", "label": ["cat", "meow"], "split": "val",'
        ' "start": 2, "end": 4.5}\n'
        '{"video": "c.mov"}\n'
    )
    a, b, c = read_manifest(manifest)
    assert a.video == tmp_path / "data" / "clips" / "a.mp4" and a.label == "dog" and a.line == 1
    assert str(b.video) == "/abs/b.mkv" and b.label == ("cat", "meow") and b.line == 4
    assert (b.split, b.start, b.end) == ("val", 2.0, 4.5)
    assert c.label is None and c.split is None and c.start is None


@pytest.mark.parametrize(
    "line, complaint",
    [
        ("{not json", "not valid JSON"),
        ('["a.mp4"]', "JSON object"),
        ('{"label": "x"}', '"video"'),
        ('{"video": "a.mp4", "split": "holdout"}', '"split"'),
        ('{"video": "a.mp4", "start": -1}', '"start"'),
        ('{"video": "a.mp4", "start": 5, "end": 3}', '"end"'),
        ('{"video": "a.mp4", "label": 3}', '"label"'),
        ('{"video": "a.mp4", "lable": "typo"}', 'unknown field(s) "lable"'),
        ('{"video": "a.mp4", "\\n": null}', 'unknown field(s) "\\n"'),  # one line, quoted
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, line, complaint):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"video": "ok.mp4"}\n' + line + "\n")
    with pytest.raises(ManifestError) as err:
        read_manifest(manifest)
    assert str(err.value).startswith(f"{manifest}:2: ") and complaint in str(err.value)
    assert "\n" not in str(err.value)
