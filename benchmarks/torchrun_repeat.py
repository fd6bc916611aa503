"""The torchrun tests, again and again, on busy cores: does a finished run ever fail at exit?

Issue 13 item 1: a rank whose work was done could die at interpreter exit with SIGABRT
("terminate called without an active exception"), now and then, more often on a loaded
machine. This runs the repository's torchrun tests N times (default 20) while spinner
processes keep every core busy, and prints a table of passes and failures per test. The
output of each failed run is kept under --logs.

Command: `.venv/bin/python benchmarks/torchrun_repeat.py --n 20` (about 1-2 min a round on 2
cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = [
    "tests/test_train.py::test_torchrun_two_cpu_processes",
    "tests/test_finetune_ddp.py::test_torchrun_gathers_negatives_across_ranks",
    "tests/test_train_cli.py::test_torchrun_two_processes_through_the_cli",
]
SPIN = "while True: pass"


def start_spinners(count: int) -> list[subprocess.Popen]:
    """Processes that each keep one core busy (pure Python, no threads of their own)."""
    return [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(count)]


def stop(spinners: list[subprocess.Popen]) -> None:
    for proc in spinners:
        proc.kill()
        proc.wait()


def run_round(index: int, logs: Path) -> dict[str, tuple[bool, float]]:
    """One pytest run of every torchrun test: test -> (passed, seconds)."""
    # Whole processes are what is measured (their exit under torchrun), not a library call.
    report = logs / f"round-{index:03d}.xml"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            *TESTS,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    results = {}
    if report.exists():
        for case in ET.parse(report).getroot().iter("testcase"):
            name = case.get("name", "")
            failed = any(case.find(tag) is not None for tag in ("failure", "error", "skipped"))
            results[name] = (not failed, float(case.get("time", "nan")))
    if done.returncode != 0 or len(results) != len(TESTS):
        (logs / f"round-{index:03d}.log").write_text(done.stdout + done.stderr)
    for test in TESTS:  # a test pytest never reported (a crash of pytest itself) failed
        results.setdefault(test.rsplit("::", 1)[1], (False, float("nan")))
    return results


def table(rounds: list[dict[str, tuple[bool, float]]]) -> str:
    lines = [
        f"{'test':52s} {'runs':>5s} {'passed':>7s} {'failed':>7s} {'median s':>9s} {'max s':>7s}"
    ]
    for test in TESTS:
        name = test.rsplit("::", 1)[1]
        runs = [r[name] for r in rounds]
        passed = sum(ok for ok, _ in runs)
        seconds = [s for _, s in runs if s == s]
        median = statistics.median(seconds) if seconds else float("nan")
        longest = max(seconds) if seconds else float("nan")
        lines.append(
            f"{name:52s} {len(runs):5d} {passed:7d} {len(runs) - passed:7d} "
            f"{median:9.1f} {longest:7.1f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20, help="rounds (each runs every test once)")
    parser.add_argument(
        "--busy",
        type=int,
        default=os.cpu_count() or 2,
        help="spinner processes (default: one per core)",
    )
    parser.add_argument("--logs", type=Path, default=None, help="where failed runs' output goes")
    args = parser.parse_args()
    logs = args.logs or Path(tempfile.mkdtemp(prefix="torchrun-repeat-"))
    logs.mkdir(parents=True, exist_ok=True)
    print(
        f"{args.n} rounds of {len(TESTS)} torchrun tests next to {args.busy} busy "
        f"processes on {os.cpu_count()} cores; failed runs' output in {logs}",
        flush=True,
    )
    spinners = start_spinners(args.busy)
    rounds = []
    started = time.monotonic()
    try:
        for i in range(1, args.n + 1):
            rounds.append(run_round(i, logs))
            failed = [name for name, (ok, _) in rounds[-1].items() if not ok]
            verdict = "FAILED " + ", ".join(failed) if failed else "all passed"
            print(
                f"round {i}/{args.n}: {verdict}  ({time.monotonic() - started:.0f} s so far)",
                flush=True,
            )
    finally:
        stop(spinners)
    print(table(rounds), flush=True)
    sys.exit(0 if all(ok for r in rounds for ok, _ in r.values()) else 1)


if __name__ == "__main__":
    main()
