"""`vab generate` next to a busy process, with and without OMP_WAIT_POLICY in the environment,
before and after vab set its threading by itself (issue 13 item 2, vabcli/threads.py).

One 10 s clip (`vab synth`, seed 5) dubbed by the bundled model on the CPU, its visual features
already cached (a first, untimed run fills each version's cache), while one pure-Python
spinner keeps one core busy. Each row is a whole `vab generate` process (start-up, model load,
sampling, decode, mux), as a user or a cron job runs it. `--spinners 0` times the same rows on
the otherwise idle machine.

Before and after: "after" is this working tree; "before" is an earlier commit (--before,
default: the parent of the commit that added vabcli/threads.py), checked out with `git
worktree` into a temporary folder and run from there. No switch in vab turns the new
behaviour off; the old code is simply the old code. The environment of every run is given
explicitly: the variable is removed, or set to PASSIVE.

Command: `.venv/bin/python benchmarks/threads_busy.py` (5 repeats per row; `--quick` for 1, to
check that it runs). Run it on an otherwise idle machine: other load is noise here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPIN = "while True: pass"
CLIP_SECONDS = 10


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()


def threads_commit() -> str:
    """The commit that added vabcli/threads.py: its parent is the code before the change."""
    return git("log", "--diff-filter=A", "--format=%H", "-1", "--", "vabcli/threads.py")


def vab(code: Path, *args: str, env: dict[str, str]) -> float:
    """Run `python -m vabcli` from the source tree `code`; wall seconds. Fails loudly."""
    # A whole process is what is measured (its threads and start-up), not a library call.
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "vabcli", *args], cwd=code, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"vab {' '.join(args)} failed in {code}:\n{done.stderr[-2000:]}")
    return seconds


def environment(policy: str | None) -> dict[str, str]:
    """This environment without any OpenMP wait policy, or with `policy`."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["HF_HUB_OFFLINE"] = "1"
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    return env


def generate_args(clip: Path, out: Path, cache: Path) -> list[str]:
    return [
        "generate",
        str(clip),
        "--out",
        str(out),
        "--cache",
        str(cache),
        "--device",
        "cpu",
        "--overwrite",
        "--quiet",
    ]


def time_rows(
    versions: dict[str, Path], clip: Path, work: Path, repeats: int, spinners: int
) -> list[tuple]:
    """(version, policy shown, seconds of each repeat) per row; rows interleaved per repeat, so
    a slow spell of the machine falls on every row alike."""
    policies = {"unset": None, "PASSIVE": "PASSIVE"}
    for name, code in versions.items():  # fill each version's cache (features), untimed
        vab(
            code,
            *generate_args(clip, work / f"out-{name}", work / f"cache-{name}"),
            env=environment("PASSIVE"),
        )
    times: dict[tuple[str, str], list[float]] = {(v, p): [] for v in versions for p in policies}
    busy = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(spinners)]
    try:
        time.sleep(1.0)  # the spinners are running before the first timed run
        for _ in range(repeats):
            for (name, shown), seconds in times.items():
                args = generate_args(clip, work / f"out-{name}", work / f"cache-{name}")
                seconds.append(vab(versions[name], *args, env=environment(policies[shown])))
    finally:
        for spinner in busy:
            spinner.kill()
            spinner.wait()
    return [(name, shown, seconds) for (name, shown), seconds in times.items()]


def table(rows: list[tuple], labels: dict[str, str]) -> str:
    lines = [
        f"{'code':34s} {'OMP_WAIT_POLICY':>15s} {'runs':>5s} {'median s':>9s} "
        f"{'min s':>7s} {'max s':>7s}"
    ]
    for name, shown, seconds in rows:
        lines.append(
            f"{labels[name]:34s} {shown:>15s} {len(seconds):5d} "
            f"{statistics.median(seconds):9.2f} {min(seconds):7.2f} "
            f"{max(seconds):7.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--before",
        default=None,
        help="commit of the 'before' code (default: the parent of the commit "
        "that added vabcli/threads.py)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per row")
    parser.add_argument("--quick", action="store_true", help="one run per row (a smoke test)")
    parser.add_argument(
        "--spinners", type=int, default=1, help="busy processes beside vab (0: an idle machine)"
    )
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    before = git("rev-parse", args.before or f"{threads_commit()}^")
    work = Path(tempfile.mkdtemp(prefix="threads-busy-"))
    old = work / "before"
    git("worktree", "add", "--detach", str(old), before)
    try:
        vab(
            ROOT,
            "synth",
            str(work / "clips"),
            "--n",
            "1",
            "--seed",
            "5",
            "--duration",
            str(CLIP_SECONDS),
            "--quiet",
            env=environment("PASSIVE"),
        )
        clip = next((work / "clips").glob("*.mp4"))
        versions = {"before": old, "after": ROOT}
        labels = {
            "before": f"before ({before[:10]})",
            "after": f"after ({git('rev-parse', '--short=10', 'HEAD')} + tree)",
        }
        print(
            f"vab generate of one {CLIP_SECONDS} s clip, features cached, next to "
            f"{args.spinners} busy process(es); {os.cpu_count()} cores, {repeats} run(s) per row",
            flush=True,
        )
        print(table(time_rows(versions, clip, work, repeats, args.spinners), labels))
    finally:
        git("worktree", "remove", "--force", str(old))
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
