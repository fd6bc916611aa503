"""How a vab process ends: quietly when its stdout is closed (`vab ... | head`), a torchrun rank
without interpreter teardown, where gloo's threads can abort a finished run (SIGABRT,
"terminate called without an active exception"), and any finished run without the teardown's
0.3 s but with what exit is for (threads joined, atexit handlers, flushed output, its status).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import VAB, run_vab, tmp_entries

# A rank that reaches interpreter teardown aborts, every time: what gloo's threads make it do
# now and then (issue 13 item 1). Imported by every python under the test through PYTHONPATH;
# only ranks (LOCAL_RANK set by torchrun) carry the trap, never the launcher itself.
TEARDOWN_TRAP = """\
import atexit
import os
import signal

if "LOCAL_RANK" in os.environ:
    atexit.register(os.abort)
"""

# 128 + SIGPIPE: the status a shell reports for a tool that stopped because its reader left.
EXIT_BROKEN_PIPE = 141


def torchrun_env(tmp_path: Path) -> dict[str, str]:
    """The environment for a torchrun test: a rank that goes through interpreter teardown
    aborts, so the test fails every time a rank would merely risk it."""
    folder = tmp_path / "teardown-trap"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(TEARDOWN_TRAP)
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


def torchrun(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Two CPU processes under `torch.distributed.run` (torchrun) on this machine."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_the_teardown_trap_catches_a_rank_that_exits_normally(tmp_path):
    script = tmp_path / "plain.py"
    script.write_text("import torch.distributed as dist\ndist.init_process_group('gloo')\n")
    done = torchrun(str(script), env=torchrun_env(tmp_path), timeout=120)
    assert done.returncode != 0 and "SIGABRT" in done.stderr


def test_a_failed_rank_exits_with_its_own_status_and_one_line(tmp_path):
    done = torchrun(
        "-m",
        "vabcli",
        "train",
        "--data",
        str(tmp_path / "missing.jsonl"),
        "--out",
        str(tmp_path / "run"),
        "--codec",
        "debug",
        "--image-encoder",
        "debug",
        env=torchrun_env(tmp_path),
        timeout=120,
    )
    assert done.returncode == 1
    assert "missing.jsonl: cannot read manifest" in done.stderr
    # Both ranks end with their own status (torchrun's report), neither with SIGABRT.
    assert done.stderr.count("exitcode  : 1 ") == 2 and "SIGABRT" not in done.stderr


def closed_reader(*args: str) -> subprocess.CompletedProcess:
    """Run `vab` with its stdout a pipe whose reader has already gone (as `| head -c 0`)."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.Popen([*VAB, *args], stdout=write, stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write)
    _, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", err)


def test_a_closed_stdout_ends_quietly_with_the_pipe_status():
    done = closed_reader("models", "--json")
    assert done.returncode == EXIT_BROKEN_PIPE
    assert done.stderr == ""


def test_a_batch_whose_reader_leaves_stops_cleanly_and_keeps_its_cache_whole(clip, tmp_path):
    clips = [clip(f"p{i}.mp4", duration=1.0, tone_hz=300.0 + 100 * i) for i in range(3)]
    cache = tmp_path / "cache"
    done = closed_reader("extract", *map(str, clips), "--json", "--cache", str(cache))
    assert done.returncode == EXIT_BROKEN_PIPE, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert "error" not in done.stderr
    assert tmp_entries(cache) == []  # work cut short leaves no temporary behind
    again = run_vab("extract", *map(str, clips), "--json", "--cache", str(cache))
    assert again.returncode == 0, again.stderr
    assert [json.loads(line)["status"] for line in again.stdout.splitlines()] == ["ok"] * 3


def test_a_reader_that_takes_a_few_bytes_then_leaves(clip, tmp_path):
    """`vab extract --json | head -c 20`: the first line was read in part, the rest has nowhere
    to go."""
    clips = [clip(f"h{i}.mp4", duration=1.0, tone_hz=500.0 + 100 * i) for i in range(3)]
    proc = subprocess.Popen(
        [
            *VAB,
            "extract",
            *map(str, clips),
            "--json",
            "--workers",
            "1",
            "--cache",
            str(tmp_path / "cache"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout.read(20).startswith(b'{"input"')
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=300)
    # Either the rest no longer fitted (the pipe status) or it had all been written already.
    assert proc.returncode in (0, EXIT_BROKEN_PIPE), err
    assert "Traceback" not in err and "Exception ignored" not in err


def test_an_interrupt_outside_a_batch_is_exit_130_with_one_line(monkeypatch, capsys):
    """SIGTERM (vab turns it into KeyboardInterrupt) can land before any batch runs: while the
    command parses, loads a model or plans its outputs. It must still end as an interrupt."""
    from vabcli.cli import main as cli

    def interrupted_while_starting(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "app", interrupted_while_starting)
    assert cli._command_status() == 130
    assert capsys.readouterr().err.strip().splitlines() == ["error: interrupted"]


# A command interrupted while Python runs code through eval (a namedtuple or dataclass being made
# as a module imports, where a SIGTERM in start-up often lands): CPython 3.11 then marks the
# KeyboardInterrupt unhandled even though vab caught it, and ends the process by SIGINT.
INTERRUPTED_IN_EVAL = """\
import vabcli.cli.main as cli
{imports}

def app(prog_name):
    eval("(_ for _ in ()).throw(KeyboardInterrupt())")

cli.app = app
cli.main()
"""


# `vab train` and `vab finetune` import the process-group plumbing, and so leave through it
@pytest.mark.parametrize("imports", ["", "import vabcli.training.distributed"])
def test_a_run_interrupted_inside_eval_still_exits_130(tmp_path, imports):
    (tmp_path / "interrupted_in_eval.py").write_text(INTERRUPTED_IN_EVAL.format(imports=imports))
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "interrupted_in_eval"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert done.returncode == 130 and done.stderr == "error: interrupted\n", done


# A finished command that leaves work for interpreter exit: a non-daemon thread still writing, an
# atexit handler, stdout still buffered, and a global whose finaliser only teardown would call.
FINISHED_WITH_LOOSE_ENDS = """\
import atexit
import sys
import threading
import time

import vabcli.cli.main as cli


class Teardown:
    def __del__(self):
        sys.stderr.write("teardown ran\\n")


FINALISED_BY_TEARDOWN = Teardown()


def app(prog_name):
    def late_write():
        time.sleep(0.3)
        open("thread-done", "w").close()

    threading.Thread(target=late_write).start()
    atexit.register(lambda: open("atexit-done", "w").close())
    sys.stdout.write("buffered, no newline")
    raise SystemExit(3)


cli.app = app
cli.main()
"""


@pytest.mark.parametrize("profiled", [False, True], ids=["plain", "under cProfile"])
def test_a_finished_run_does_what_exit_must_and_skips_teardown(tmp_path, profiled):
    """vab leaves a finished run through os._exit (the teardown cost 0.3 s of a 5 s run), but
    only after what exit is for: threads joined, atexit handlers run, stdout flushed, its own
    status. Under a profiler the usual exit, so the profile is written."""
    (tmp_path / "finished_run.py").write_text(FINISHED_WITH_LOOSE_ENDS)
    root = Path(__file__).resolve().parents[1]
    profiler = ["-m", "cProfile", "-o", "run.prof"] if profiled else []
    done = subprocess.run(
        [sys.executable, *profiler, "-m", "finished_run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
        timeout=120,
    )
    expected_status = 0 if profiled else 3  # cProfile swallows a script's SystemExit
    assert done.returncode == expected_status, done
    assert done.stdout == "buffered, no newline"
    assert (tmp_path / "thread-done").exists() and (tmp_path / "atexit-done").exists()
    assert ("teardown ran" in done.stderr) == profiled, done.stderr
    assert (tmp_path / "run.prof").exists() == profiled
