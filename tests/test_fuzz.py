"""Property-based fuzzing (hypothesis) of what users type and write: manifest lines and the
numeric options of generate and tokenize.

Promises kept here: a manifest line becomes a clip item or a ManifestError naming `file:1:`,
never another exception; a numeric option value is accepted (the run goes on) or refused as a
usage error (exit 2, one `Error:` line), never a traceback, and refused before any model loads.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from vabcli.cli.main import app
from vabcli.data.clips import ClipItem, clip_items
from vabcli.data.manifest import ManifestError, read_manifest

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Any text, lone surrogates and control characters included.
TEXT = st.text(st.characters(exclude_categories=()), max_size=12)
NUMBERS = st.one_of(
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
)
KEYS = st.sampled_from(["video", "label", "split", "start", "end", "events", "sources"])
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(TEXT, KEYS), inner, max_size=4)
    ),
    max_leaves=12,
)
RECORDS = st.fixed_dictionaries(
    {},
    optional={
        "video": st.one_of(st.just("clip.mp4"), TEXT, VALUES),
        "label": st.one_of(TEXT, st.lists(TEXT, max_size=3), VALUES),
        "split": st.one_of(st.sampled_from(["train", "val", "test"]), VALUES),
        "start": st.one_of(NUMBERS, VALUES),
        "end": st.one_of(NUMBERS, VALUES),
        "events": st.one_of(st.lists(NUMBERS, max_size=3), VALUES),
        "sources": st.one_of(
            st.lists(st.fixed_dictionaries({"label": TEXT, "events": st.lists(NUMBERS)})), VALUES
        ),
    },
)


def _line(value) -> str:
    # allow_nan: write NaN/Infinity tokens, which Python's json reads back.
    return json.dumps(value, allow_nan=True, ensure_ascii=bool(hash(str(value)) % 2))


def _check_line(folder: Path, line: str) -> None:
    manifest = folder / "m.jsonl"
    manifest.write_text(line + "\n", encoding="utf-8", errors="surrogatepass")
    try:
        entries = read_manifest(manifest)
        items = clip_items(None, manifest)
    except ManifestError as exc:
        # `file:1:` for a bad line; `file:` alone when raw surrogates make it unreadable UTF-8
        assert str(exc).startswith(f"{manifest}:"), exc
        assert "\n" not in str(exc)
        return
    assert len(entries) == len(items) <= 1
    for entry, item in zip(entries, items, strict=True):
        assert isinstance(item, ClipItem) and item.line == 1
        times = [t for t in (entry.start, entry.end, *(entry.events or ())) if t is not None]
        assert all(math.isfinite(t) and t >= 0 for t in times)
        item.name().encode("utf-8")  # printable as text
        json.dumps(item.labels(), allow_nan=False).encode("utf-8")  # and as strict JSON
        assert item.error is None or "no such file" in item.error


@FUZZ
@given(value=st.one_of(RECORDS, VALUES))
def test_manifest_lines_parse_or_name_their_line(tmp_path, value):
    _check_line(tmp_path, _line(value))


@FUZZ
@given(
    depth=st.integers(min_value=1, max_value=200_000),
    opener=st.sampled_from(["[", '{"video": ', '{"a": [']),
)
def test_deep_nesting_is_a_manifest_error(tmp_path, depth, opener):
    _check_line(tmp_path, opener * depth)


@FUZZ
@given(raw=st.text(max_size=60))
def test_raw_text_lines_parse_or_name_their_line(tmp_path, raw):
    _check_line(tmp_path, raw.replace("\n", " "))


# --- numeric options -----------------------------------------------------------------------

OPTION_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**25), max_value=10**25).map(str),
    st.sampled_from(
        [
            "nan",
            "-nan",
            "inf",
            "-inf",
            "Infinity",
            "-0",
            "-0.0",
            "1e999",
            "0",
            "",
            "1e-320",
            "0x10",
            "1_000",
            " 3",
            "99999999999",
        ]
    ),
)
GENERATE_OPTIONS = [
    "--steps",
    "--guidance",
    "--temperature",
    "--top-k",
    "--top-p",
    "--noise",
    "--temperature-end",
    "--guidance-end",
    "--level-steps",
    "--seed",
    "--batch-size",
    "--keep-audio",
    "--gap-threshold",
    "--min-gap",
    "--window",
    "--context",
    "--lookahead",
    "--workers",
]
TOKENIZE_OPTIONS = ["--fps", "--size", "--bandwidth", "--workers"]


def _invoke(tmp_path: Path, args: list[str]):
    result = CliRunner().invoke(app, args, catch_exceptions=True)
    if "torch" in sys.modules:
        # vab flushes denormals for speed; in this process that would make hypothesis's own
        # float strategy see 5e-324 as zero.
        sys.modules["torch"].set_flush_denormal(False)
    # A traceback would show as an exception other than the CLI's own exit.
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args,
        result.exception,
    )
    assert "Traceback" not in result.output
    assert result.exit_code in (1, 2), (args, result.exit_code, result.output)
    if result.exit_code == 2:
        errors = [line for line in result.output.splitlines() if line.startswith("Error")]
        assert len(errors) == 1, result.output
    return result


def _no_model_load(monkeypatch):
    """Fail the test if any model or encoder would load: every input here is missing, so a
    run with good options must end without one, and one with bad options before one."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    import vabcli.generation.dubber

    monkeypatch.setattr(vabcli.generation.dubber, "Dubber", refuse)


@pytest.fixture
def no_model(monkeypatch):
    _no_model_load(monkeypatch)


@FUZZ
@given(option=st.sampled_from(GENERATE_OPTIONS), value=OPTION_VALUES)
def test_generate_numeric_options(tmp_path, no_model, option, value):
    _invoke(
        tmp_path,
        [
            "generate",
            str(tmp_path / "missing.mp4"),
            "--out",
            str(tmp_path / "out"),
            "--cache",
            str(tmp_path / "cache"),
            "-q",
            option,
            value,
        ],
    )


@FUZZ
@given(option=st.sampled_from(TOKENIZE_OPTIONS), value=OPTION_VALUES)
def test_tokenize_numeric_options(tmp_path, option, value):
    _invoke(
        tmp_path,
        [
            "tokenize",
            str(tmp_path / "missing.mp4"),
            "--codec",
            "debug",
            "--image-encoder",
            "debug",
            "--cache",
            str(tmp_path / "cache"),
            "-q",
            option,
            value,
        ],
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--window", "inf"],
        ["--window", "nan"],
        ["--context", "nan"],
        ["--guidance", "nan"],
        ["--temperature", "inf"],
        ["--steps", "99999999999"],
        ["--min-gap", "inf"],
        ["--gap-threshold", "nan"],
        ["--keep-audio", "inf"],
    ],
)
def test_meaningless_generate_values_are_usage_errors(tmp_path, no_model, args):
    result = _invoke(
        tmp_path, ["generate", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "out"), *args]
    )
    assert result.exit_code == 2 and args[0] in result.output
