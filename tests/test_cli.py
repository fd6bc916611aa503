"""The command line as scripts meet it: help, exit codes, JSON lines, bad input, Ctrl-C."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from tests.conftest import VAB, run_vab, start_vab, tmp_entries, wait_until_writing
from vabcli import __version__
from vabcli.cli.common import OptionGroup, with_option_groups
from vabcli.cli.main import app
from vabcli.core.cache import Cache
from vabcli.media.testing import write_tone

EXTRACT_FIELDS = {
    "input",
    "status",
    "error",
    "duration",
    "fps",
    "n_frames",
    "has_audio",
    "sample_rate",
    "n_samples",
    "cache_key",
}


def test_help_lists_only_working_commands(runner):
    result = runner.invoke(app, ["-h"])
    assert result.exit_code == 0
    listing = result.output.split("Commands:")[1]
    assert re.findall(r"^  (\w+) ", listing, flags=re.M) == [
        "extract",
        "tokenize",
        "train",
        "finetune",
        "embed",
        "retrieve",
        "classify",
        "generate",
        "mux",
        "manifest",
        "synth",
        "eval",
        "models",
        "cache",
    ]
    for command in ["extract", "tokenize", "train", "generate", "mux", "cache"]:
        sub = runner.invoke(app, [command, "--help"])
        assert sub.exit_code == 0 and "Usage: vab " + command in sub.output


def test_version_and_console_script():
    vab = Path(sys.executable).parent / "vab"
    done = subprocess.run([str(vab), "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"vab {__version__}"


@pytest.mark.parametrize(
    "args",
    [
        ["extract"],
        ["extract", "x.mp4", "--fps", "0"],
        ["extract", "x.mp4", "--size", "big"],
        ["nosuchcommand"],
        ["mux", "a.mp4", "b.wav"],
        ["mux", "a.mp4", "b.wav", "-o", "out.avi"],
    ],
)
def test_usage_errors_exit_2(runner, args):
    assert runner.invoke(app, args).exit_code == 2


def test_bad_inputs_do_not_stop_the_batch(clip, tmp_path, cache_dir):
    good = clip("good.mp4", duration=1.0, fps="25")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.mkv").write_text("not a video at all\n" * 20)
    data = clip("full.mp4", duration=2.0, fps="25").read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    write_tone(folder / "only audio.m4a", 1.0).rename(folder / "only audio.mp4")
    corrupt = bytearray(data)
    corrupt[: len(corrupt) // 3] = bytes(len(corrupt) // 3)  # header zeroed out
    (folder / "corrupt.mov").write_bytes(bytes(corrupt))
    done = run_vab(
        "extract",
        str(folder),
        str(good),
        str(tmp_path / "missing.mp4"),
        "--cache",
        str(cache_dir),
        "--json",
    )
    assert done.returncode == 1
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(records) == 7
    by_name = {Path(r["input"]).name: r for r in records}
    assert by_name["good.mp4"]["status"] == "ok"
    errors = [r for r in records if r["status"] == "error"]
    assert len(errors) == 6
    error_lines = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert len(error_lines) == 6
    for record in errors:
        assert Path(record["input"]).name in record["error"] and "\n" not in record["error"]
    assert "no video stream" in by_name["only audio.mp4"]["error"]


def test_json_lines_fields_and_human_output(clip, cache_dir, runner):
    path = clip("good.mp4", duration=1.0, fps="25")
    result = runner.invoke(app, ["extract", str(path), "--cache", str(cache_dir), "--json"])
    record = json.loads(result.stdout)
    assert EXTRACT_FIELDS <= set(record) and record["status"] == "ok" and record["error"] is None
    human = runner.invoke(app, ["extract", str(path), "--cache", str(cache_dir)])
    assert human.exit_code == 0 and human.stdout.startswith("ok ") and "(cached)" in human.stdout
    assert "1 ok, 0 skipped, 0 failed" in human.stderr


def test_awkward_paths(clip, tmp_path, cache_dir):
    folder = tmp_path / "ünïcode dir" / 'it\'s "quoted"'
    folder.mkdir(parents=True)
    video = folder / "clip [1] ü 'x'.mp4"
    video.write_bytes(clip("good.mp4", duration=1.0, fps="25").read_bytes())
    write_tone(folder / "clip [1] ü 'x'.wav", 1.0)
    done = run_vab("extract", str(video), "--cache", str(cache_dir / "caché dir"), "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["input"] == str(video)
    done = run_vab("mux", str(folder), str(folder), "--out", str(tmp_path / "out ü"), "--json")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out ü" / "clip [1] ü 'x'.mp4").is_file()


def test_glob_input(clip, tmp_path, cache_dir):
    for name in ["a.mp4", "b.mp4"]:
        (tmp_path / name).write_bytes(clip(name, duration=0.5, fps="25").read_bytes())
    done = run_vab("extract", str(tmp_path / "*.mp4"), "--cache", str(cache_dir), "--json")
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 2


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 130)])
def test_interrupt_leaves_no_partial_output(long_clip, cache_dir, sig, code):
    args = ["--cache", str(cache_dir), "--fps", "25", "--size", "128"]
    proc = start_vab("extract", str(long_clip), *args)
    wait_until_writing(proc, cache_dir)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert "interrupted" in err
    assert tmp_entries(cache_dir) == []
    # Usually nothing is left; an entry committed just before the signal must be whole.
    for meta in cache_dir.rglob("meta.json"):
        key = meta.parent.name
        assert Cache(cache_dir).lookup("extract", key)["n_frames"] == 15_000


def test_mux_interrupted_leaves_no_output(long_clip, tmp_path):
    audio = write_tone(tmp_path / "a.wav", 600.0)
    out = tmp_path / "out"
    proc = start_vab("mux", str(long_clip), str(audio), "-o", str(out / "o.mp4"), "--reencode")
    wait_until_writing(proc, out)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert list(out.iterdir()) == []


def test_missing_ffmpeg_is_a_clear_error(clip, cache_dir):
    path = clip("good.mp4", duration=1.0, fps="25")
    done = run_vab(
        "extract", str(path), "--cache", str(cache_dir), env={"VAB_FFMPEG": "/nonexistent/ffmpeg"}
    )
    assert done.returncode == 1
    assert "VAB_FFMPEG=/nonexistent/ffmpeg is not an executable" in done.stderr


def test_results_stay_on_stdout_while_progress_bars_draw_on_a_terminal(clip, cache_dir):
    """`vab extract ... --json > results.jsonl` typed in a terminal: bars on the terminal only."""
    path = clip("good.mp4", duration=1.0, fps="25")
    primary, secondary = pty.openpty()  # stderr is a terminal, stdout is a pipe
    try:
        done = subprocess.run(
            [*VAB, "extract", str(path), "--cache", str(cache_dir), "--json"],
            stdout=subprocess.PIPE,
            stderr=secondary,
            text=True,
            timeout=120,
        )
    finally:
        os.close(secondary)
        os.close(primary)
    assert done.returncode == 0
    assert json.loads(done.stdout)["status"] == "ok"


def test_an_option_group_stands_where_its_placeholder_does_and_arrives_gathered():
    """`with_option_groups`: the group's options appear in the placeholder's place in --help,
    take the group's (or the command's own) defaults, and reach the command as one object."""
    pair = OptionGroup.of(
        lambda low, high: (low, high),
        low=(Annotated[int, typer.Option("--low")], 1),
        high=(Annotated[int, typer.Option("--high")], 9),
    )
    seen = []
    toy = typer.Typer()

    @toy.command()
    @with_option_groups(bounds=pair.with_defaults(high=5))
    def command(
        first: Annotated[str, typer.Option("--first")] = "a",
        *,
        bounds: tuple[int, int],
        last: Annotated[str, typer.Option("--last")] = "z",
    ) -> None:
        seen.append((first, bounds, last))

    runner = CliRunner()
    assert runner.invoke(toy, ["--low", "3", "--last", "y"]).exit_code == 0
    assert seen == [("a", (3, 5), "y")]
    shown = runner.invoke(toy, ["--help"], env={"COLUMNS": "100", "NO_COLOR": "1"}).output
    flags = re.findall(r"--(first|low|high|last)\b", shown)
    assert flags == ["first", "low", "high", "last"]
