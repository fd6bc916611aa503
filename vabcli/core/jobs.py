"""Running one job over many inputs: a failed item never stops the others.

Each item ends as an `Outcome` (ok, skipped or error, with the job's figures). Work runs on a
thread pool: the heavy lifting happens in ffmpeg child processes, so threads are enough. On
Ctrl-C or SIGTERM every ffmpeg child is killed and each worker's cleanup runs before the
interrupt propagates, so no partial output survives.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from vabcli.core import cancel
from vabcli.core.errors import OutputExistsError, VabError, internal_error, one_line

Status = Literal["ok", "skipped", "error"]
T = TypeVar("T")
ProgressFn = Callable[[int, int], None]


@dataclass
class Outcome:
    input: str
    status: Status
    error: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    traceback: str | None = None  # only for unexpected failures (bugs); shown with VAB_DEBUG=1

    def to_json(self) -> dict[str, Any]:
        return {"input": self.input, "status": self.status, "error": self.error, **self.figures}


@dataclass
class Job(Generic[T]):
    """What to run per item and how to name it; `work` returns the item's figures."""

    work: Callable[[T, ProgressFn], dict[str, Any]]
    name: Callable[[T], str]
    error: Callable[[T], str | None] = lambda item: None  # a failure known before any work


class JobEvents:
    """Callbacks for a front end; called from worker threads except `finished`."""

    def started(self, name: str) -> None: ...

    def progress(self, name: str, done: int, total: int) -> None: ...

    def finished(self, outcome: Outcome) -> None: ...


def run_jobs(
    items: Sequence[T], job: Job[T], workers: int = 1, events: JobEvents | None = None
) -> list[Outcome]:
    """Run `job` over `items` with `workers` threads; outcomes are returned in input order."""
    events = events or JobEvents()
    outcomes: list[Outcome | None] = [None] * len(items)
    cancel.reset()
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="vab")
    try:
        futures = {pool.submit(_run_one, item, job, events): i for i, item in enumerate(items)}
        for future in as_completed(futures):
            outcome = future.result()
            outcomes[futures[future]] = outcome
            events.finished(outcome)
    except BaseException:
        cancel.request()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [o for o in outcomes if o is not None]


def _run_one(item: T, job: Job[T], events: JobEvents) -> Outcome:
    name = job.name(item)
    known_error = job.error(item)
    if known_error:
        return Outcome(name, "error", known_error)
    events.started(name)
    try:
        cancel.check()
        figures = job.work(item, lambda done, total: events.progress(name, done, total))
        return Outcome(name, "ok", figures=figures)
    except OutputExistsError as exc:
        return Outcome(name, "skipped", figures={"reason": str(exc)})
    except VabError as exc:
        return Outcome(name, "error", one_line(exc))
    except Exception as exc:  # a bug: report it on one line, keep the traceback for VAB_DEBUG
        return Outcome(
            name,
            "error",
            internal_error(exc),
            traceback=traceback.format_exc(),
        )
