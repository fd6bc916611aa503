"""How `vab` shares the machine's cores: OpenMP threads spin briefly, then wait passively,
and torch's intra-op thread teams are sized against vab's own threads and the cores this
process may use.

Why: torch runs its CPU kernels on OpenMP teams, and libgomp's default is to spin a finished
team's threads for a while (GOMP_SPINCOUNT 300000) before they sleep. On a machine shared with
other jobs the spinning threads take the cores the working ones need. Issue 13's figures, on 2
cores: `vab generate` of a 10 s clip next to one busy process took 13.7-14.3 s, against
9.6-9.9 s with `OMP_WAIT_POLICY=PASSIVE`, and anywhere up to 75 s next to several. But fully
passive threads sleep between any two kernels, and a sampling step is a few hundred small ones,
each waking its team: on an idle machine a forward took about 105 ms passive against 87 ms
spinning (benchmarks/openmp_spin.py). So the threads spin briefly (`GOMP_SPINCOUNT`,
SPIN_COUNT) before they sleep: idle, 4 clips of 10 s take 5.3 s instead of 5.5-6.1 s; next to
a 2-thread training job, 8.5-8.7 s against 8.35 s passive and 10.1 s at 10000 spins
(benchmarks/README.md, "a busy neighbour").

Invariant: a setting the user made (`OMP_WAIT_POLICY`, `GOMP_SPINCOUNT`, `OMP_NUM_THREADS`,
`MKL_NUM_THREADS`) is never overridden. Only the command line calls these: a program that
imports vabcli as a library keeps its own process settings.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

# Beyond this many threads a team spends more on fork/join barriers than it gains on the
# matrices of these models (d_model 128-1024, a few hundred tokens per window): each of the
# many small kernels of a step synchronises the whole team. torch's own default would start
# one thread per physical core (32 or 64 on a large server) for every thread that calls it.
MAX_TORCH_THREADS = 16

# Settings a user makes for OpenMP and MKL thread counts; torch reads them itself.
_USER_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


# Spins a finished OpenMP thread makes before it sleeps (libgomp: about 100 a microsecond; its
# default 300000, PASSIVE 0). Long enough to bridge most gaps between the kernels of a step (9%
# faster idle), short enough that beside a busy process vab loses 9%, not the default's 9x
# (benchmarks/README.md, "a busy neighbour").
SPIN_COUNT = 3000


def prepare_process() -> None:
    """Called first thing by `vab`, before torch loads: libgomp reads its environment once, when
    the library is loaded, so a later change would have no effect."""
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return  # the user's choice (an explicit spin count overrides any wait policy)
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)


def usable_cores() -> int:
    """CPUs this process may run on: its affinity mask (taskset, cpusets), bounded by a cgroup
    v2 CPU quota (`docker --cpus`, systemd CPUQuota), which os.cpu_count() ignores."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota(_read_text(Path("/sys/fs/cgroup/cpu.max")))
    return max(1, min(cores, quota)) if quota is not None else max(1, cores)


def cgroup_cpu_quota(cpu_max: str | None) -> int | None:
    """Whole CPUs allowed by a cgroup v2 `cpu.max` ("QUOTA PERIOD" or "max PERIOD"); None
    when unlimited or unreadable. A fraction of a CPU still gets one thread."""
    try:
        quota, period = (cpu_max or "").split()
        return None if quota == "max" else max(1, int(quota) // int(period))
    except ValueError:
        return None


def torch_threads(cores: int, concurrent: int = 1) -> int:
    """Threads per torch team when `concurrent` of vab's own threads call torch at the same
    time on `cores` CPUs.

    OpenMP gives every calling thread its own team, so the teams together should not outnumber
    the cores: with more threads than cores, a team's barrier waits for a thread the scheduler
    has parked, and every kernel of a step pays for it. Hence `cores / concurrent`,
    at least 1, at most MAX_TORCH_THREADS.

    On 2 cores the model's sampling (or training) thread is the only steady caller: 2 threads,
    what torch picks itself (halving it would halve an idle machine's speed; with passive waits
    a busy neighbour costs far less). Tokenizing runs the visual and audio encoders at once: 1
    each. On 64 cores torch alone would start 64 (or 32) threads per caller; here 16.
    """
    share = cores // max(1, concurrent)
    return max(1, min(MAX_TORCH_THREADS, share))


def size_torch_threads(concurrent: int = 1) -> int | None:
    """Set torch's intra-op threads for `concurrent` of vab's threads calling torch at once;
    returns the count set, or None when the user chose one (OMP_NUM_THREADS, MKL_NUM_THREADS).
    Ranks of a torchrun job share the machine already sized: torchrun gives each
    OMP_NUM_THREADS=1 unless the user chose a number.

    Call it once torch is imported and before vab's threads first use it: a thread takes the
    count when it first runs a parallel kernel.
    """
    if any(os.environ.get(name) for name in _USER_THREAD_VARIABLES):
        return None
    import torch

    threads = torch_threads(min(usable_cores(), torch_default_threads()), concurrent)
    torch.set_num_threads(threads)
    return threads


@functools.cache
def torch_default_threads() -> int:
    """torch's own count before vab changes it: one per physical core (SMT siblings add little
    to dense kernels), blind to affinity masks and CPU quotas."""
    import torch

    return torch.get_num_threads()


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None
