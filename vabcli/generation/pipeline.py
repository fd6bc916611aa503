"""`vab generate`: the batch pipeline, videos -> features -> tokens -> waveform -> muxed MP4.

Three stages run at once. Worker threads prepare clips (probe, lock, visual features from the
cache or the encoders, the token grid to fill); the calling thread samples the next window of up
to `batch_size` clips per forward pass; finisher threads turn tokens into audio, mux and write
the sidecar. Clips join the sampling batch in input order whatever the threads' timing, so the
same command gives byte-identical outputs run after run.
"""

from __future__ import annotations

import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vabcli.config import DubOptions
from vabcli.core import cancel
from vabcli.core.errors import CancelledError, VabError, internal_error, one_line
from vabcli.core.jobs import JobEvents, Outcome
from vabcli.generation.outputs import DubTarget

if TYPE_CHECKING:  # torch is imported only when some clip needs work
    from vabcli.generation.dubber import ClipJob, Dubber

__all__ = ["DubOptions", "run_dub", "settle_without_work"]


def settle_without_work(targets: list[DubTarget], overwrite: bool) -> list[Outcome | None]:
    """Outcomes known before any model loads: bad items fail, finished clips are skipped."""
    outcomes: list[Outcome | None] = []
    for t in targets:
        if t.problem:
            outcomes.append(Outcome(t.item.name(), "error", t.problem))
        elif not overwrite and t.complete():
            reason = f"done: {t.sidecar.name} exists; --overwrite redoes it"
            outcomes.append(Outcome(t.item.name(), "skipped", figures={"reason": reason}))
        else:
            outcomes.append(None)
    return outcomes


def run_dub(
    targets: list[DubTarget],
    opts: DubOptions,
    make_dubber: Callable[[], Dubber],
    events: JobEvents | None = None,
) -> list[Outcome]:
    """Dub every target; outcomes in input order. The model loads only if some clip needs it."""
    events = events or JobEvents()
    outcomes = settle_without_work(targets, opts.overwrite)
    for outcome in outcomes:
        if outcome is not None:
            events.finished(outcome)
    todo = [i for i, o in enumerate(outcomes) if o is None]
    if todo:
        cancel.reset()
        dubber = make_dubber()
        try:
            done = _Pipeline(dubber, opts, events).run([targets[i] for i in todo])
        finally:
            dubber.close()
        for i, outcome in zip(todo, done, strict=True):
            outcomes[i] = outcome
    return [o for o in outcomes if o is not None]


@dataclass
class _Pipeline:
    dubber: Dubber
    opts: DubOptions
    events: JobEvents
    finished: dict[int, Outcome] = field(default_factory=dict)

    def run(self, targets: list[DubTarget]) -> list[Outcome]:
        lookahead = self.opts.batch_size + self.opts.workers
        prep = ThreadPoolExecutor(self.opts.workers, thread_name_prefix="vab-prepare")
        finish = ThreadPoolExecutor(self.opts.workers, thread_name_prefix="vab-finish")
        queued: deque[tuple[int, Future]] = deque()
        finishing: list[tuple[int, ClipJob, Future]] = []
        active: list[tuple[int, ClipJob]] = []
        upcoming = iter(enumerate(targets))
        try:
            while True:
                while len(queued) < lookahead and (nxt := next(upcoming, None)) is not None:
                    queued.append((nxt[0], prep.submit(self._prepare, nxt[1])))
                while len(active) < self.opts.batch_size and queued:
                    i, future = queued.popleft()
                    job = self._settled(i, future.result())
                    if job is not None:
                        active.append((i, self.dubber.start_sampling(job)))
                if not active and not queued:
                    break
                if active:
                    for i, job in self._advance(active, targets):
                        finishing.append((i, job, finish.submit(self._finish, job)))
                finishing = self._collect(finishing, wait=False)
            self._collect(finishing, wait=True)
        except BaseException:
            cancel.request()
            prep.shutdown(wait=True, cancel_futures=True)
            finish.shutdown(wait=True, cancel_futures=True)
            # Prepared clips hold their output locks: give them back (finishers release theirs).
            held = [f.result() for _, f in queued if not f.cancelled()]
            held += [job for _, job, f in finishing if f.cancelled()] + [job for _, job in active]
            for job in held:
                if not isinstance(job, Outcome):
                    job.release()
            raise
        prep.shutdown(wait=True)
        finish.shutdown(wait=True)
        return [self.finished[i] for i in range(len(targets))]

    def _prepare(self, target: DubTarget) -> ClipJob | Outcome:
        name = target.item.name()
        try:
            cancel.check()
            self.events.started(name)
            return self.dubber.prepare(target)
        except BaseException as exc:  # reported by the calling thread, in input order
            return _failure(name, exc)

    def _settled(self, i: int, result: ClipJob | Outcome) -> ClipJob | None:
        if isinstance(result, Outcome):
            self._report(i, result)
            return None
        return result

    def _advance(
        self, active: list[tuple[int, ClipJob]], targets: list[DubTarget]
    ) -> list[tuple[int, ClipJob]]:
        """One batched window for every active clip; returns (and removes) the finished ones."""
        cancel.check()
        try:
            self.dubber.sample([job for _, job in active])
        except Exception as exc:  # the whole batch shares the failure
            for i, job in active:
                job.release()
                self._report(i, _failure(targets[i].item.name(), exc))
            active.clear()
            return []
        done = [(i, job) for i, job in active if job.tokens.finished]
        for i, job in active:
            self.events.progress(targets[i].item.name(), job.tokens.done, len(job.tokens.spans))
        active[:] = [(i, job) for i, job in active if not job.tokens.finished]
        return done

    def _finish(self, job: ClipJob) -> Outcome:
        try:
            cancel.check()
            return Outcome(job.item.name(), "ok", figures=self.dubber.finish(job))
        except BaseException as exc:
            return _failure(job.item.name(), exc)
        finally:
            job.release()

    def _collect(
        self, finishing: list[tuple[int, ClipJob, Future]], wait: bool
    ) -> list[tuple[int, ClipJob, Future]]:
        pending = []
        for i, job, future in finishing:
            if wait or future.done():
                self._report(i, future.result())
            else:
                pending.append((i, job, future))
        return pending

    def _report(self, i: int, outcome: Outcome) -> None:
        if isinstance(outcome, Outcome) and outcome.error == _INTERRUPTED:
            raise KeyboardInterrupt
        self.finished[i] = outcome
        self.events.finished(outcome)


_INTERRUPTED = "interrupted"


def _failure(name: str, exc: BaseException) -> Outcome:
    from vabcli.generation.outputs import ClipBusyError

    if isinstance(exc, ClipBusyError):
        return Outcome(name, "skipped", figures={"reason": str(exc)})
    if isinstance(exc, (KeyboardInterrupt, CancelledError)):
        return Outcome(name, "error", _INTERRUPTED)
    if isinstance(exc, VabError):
        return Outcome(name, "error", one_line(exc))
    return Outcome(
        name,
        "error",
        internal_error(exc),
        traceback="".join(traceback.format_exception(exc)),
    )
