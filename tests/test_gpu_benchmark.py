"""benchmarks/gpu.py runs end to end on CPU (`--quick`), so the script a GPU session runs works."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_the_gpu_benchmark_runs_on_cpu_and_prints_its_three_tables():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu", "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| ")]
    numbers = lambda cell: float(cell.replace(",", ""))  # noqa: E731
    training = [r for r in rows if len(r) == 6 and r[0].strip() == "tiny"]
    generation = [r for r in rows if len(r) == 5 and r[0].strip() == "tiny"]
    tokenize = [r for r in rows if len(r) == 3 and re.match(r" \d+ x ", r[0])]
    assert len(training) == 1 and numbers(training[0][4]) > 0
    assert [int(r[1]) for r in generation] == [1, 2]
    assert all(numbers(r[3]) > 0 for r in generation)
    assert len(tokenize) == 1 and numbers(tokenize[0][1]) > 0 and numbers(tokenize[0][2]) > 0
