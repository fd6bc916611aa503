"""One forward of the bundled model under OpenMP wait settings, idle or beside busy processes.

A sampling step is a few hundred small kernels, and each wakes its OpenMP team: how long a
finished thread spins before it sleeps (`GOMP_SPINCOUNT`; `OMP_WAIT_POLICY=PASSIVE` is 0,
libgomp's default 300000) decides how much of a step is wake-up latency, and how many cycles a
busy neighbour loses to spinning. Each setting runs in its own process (libgomp reads its
environment once, when torch loads) and times `--forwards` forwards of the shape `vab generate`
samples by default: 4 clips x 2 guidance rows, one 4 s window.

Command: `.venv/bin/python benchmarks/openmp_spin.py [--spinners N]` (a few seconds a setting).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from vabcli.core.threads import SPIN_COUNT

SETTINGS = {
    "PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spin 1000": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "1000"},
    f"spin {SPIN_COUNT} (vab's)": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": str(SPIN_COUNT)},
    "spin 10000": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"},
    "libgomp default": {},
}
SPIN = "while True: pass"


def time_forwards(forwards: int) -> float:
    """Milliseconds per forward of the bundled model, in this process."""
    import torch

    from vabcli.core.builtin import CHECKPOINT
    from vabcli.model.checkpoint import load_model

    model, _ = load_model(CHECKPOINT.require())
    cfg = model.cfg
    clips, window = 4, 4.0
    t_v, t_a = round(window * cfg.visual_fps), round(window * cfg.audio_frame_rate)
    visual = torch.randn(2 * clips, t_v, cfg.visual_dim)
    codes = torch.randint(0, cfg.codebook_size, (2 * clips, cfg.n_codebooks, t_a))
    null = torch.arange(2 * clips) >= clips
    with torch.inference_mode():
        model(visual, codes, null)  # warm-up: first-call allocations and time codes
        began = time.perf_counter()
        for _ in range(forwards):
            model(visual, codes, null)
    return (time.perf_counter() - began) / forwards * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--forwards", type=int, default=20)
    parser.add_argument("--spinners", type=int, default=0, help="busy processes beside it")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process: time, print, leave
    args = parser.parse_args()
    if args.one:
        print(f"{time_forwards(args.forwards):.1f}")
        return
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    busy = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.spinners)]
    try:
        print(f"{os.cpu_count()} cores, {args.spinners} busy process(es), {args.forwards} forwards")
        print(f"{'setting':20s} {'ms per forward':>15s}")
        for name, env in SETTINGS.items():
            done = subprocess.run(
                [sys.executable, __file__, "--one", "yes", "--forwards", str(args.forwards)],
                env={**clean, **env},
                capture_output=True,
                text=True,
                check=True,
            )
            print(f"{name:20s} {done.stdout.strip():>15s}", flush=True)
    finally:
        for spinner in busy:
            spinner.kill()
            spinner.wait()


if __name__ == "__main__":
    main()
