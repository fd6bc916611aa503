"""What the CLI shows: results on stdout (text or JSON lines), progress and summaries on stderr.

Invariant: one line per input in text output. File names may hold newlines and other control
characters, so every name and message shown as text passes through `printable` (JSON output
escapes them itself and keeps the real name).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from vabcli.core.jobs import JobEvents, Outcome
from vabcli.encoders.tokenize_clips import TokenizeEvents

if TYPE_CHECKING:
    from vabcli.tasks.latents import ClipAnswer

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


# C0 and C1 control characters and DEL, each as its Python escape (\n, \r, \t, \x1b, ...).
_CONTROL = {c: repr(chr(c))[1:-1] for c in (*range(32), *range(127, 160))}


def printable(text: str) -> str:
    """`text` with control characters escaped, so it stays on one line and moves no cursor."""
    return text.translate(_CONTROL)


def debug_enabled() -> bool:
    return os.environ.get("VAB_DEBUG", "") not in ("", "0")


def print_error(message: str) -> None:
    stderr.print(f"[bold red]error:[/] {escape(printable(message))}", markup=True, highlight=False)


def print_warning(message: str) -> None:
    stderr.print(f"[yellow]warning:[/] {escape(printable(message))}", markup=True, highlight=False)


def progress_bars(quiet: bool, redirect_stdout: bool = False) -> Progress:
    """Bars on stderr (label, bar, done/total, elapsed), shown only when stderr is a terminal."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
        disable=quiet or not stderr.is_terminal,
        redirect_stdout=redirect_stdout,
    )


class JobsDisplay(JobEvents):
    """Progress bars on stderr (only when it is a terminal) and one result line per item on stdout.

    `describe` turns an ok outcome's figures into the human-readable tail of its result line.
    """

    def __init__(
        self, total: int, verb: str, as_json: bool, quiet: bool, describe: Callable[[Outcome], str]
    ) -> None:
        self.total = total
        self.verb = verb
        self.as_json = as_json
        self.quiet = quiet
        self.describe = describe
        self.started_at = time.monotonic()
        self._lock = threading.Lock()
        self._tasks: dict[str, int] = {}
        self._finished = 0
        # Results printed while the bars are live go through rich, which draws them above the
        # bars, but onto stderr: only right when stdout is that same terminal, never when
        # stdout is a file or a pipe.
        self.bars = progress_bars(quiet, redirect_stdout=sys.stdout.isatty())
        self.overall = self.bars.add_task(self._overall_label(), total=total)

    def __enter__(self) -> JobsDisplay:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def _overall_label(self) -> str:
        return f"{self.verb} {self._finished}/{self.total}"

    def started(self, name: str) -> None:
        with self._lock:
            self._tasks[name] = self.bars.add_task(f"  {_short(name)}", total=None)

    def progress(self, name: str, done: int, total: int) -> None:
        with self._lock:
            task = self._tasks.get(name)
        if task is not None:
            self.bars.update(task, completed=done, total=total)

    def finished(self, outcome: Outcome) -> None:
        with self._lock:
            task = self._tasks.pop(outcome.input, None)
            self._finished += 1
        if task is not None:
            self.bars.remove_task(task)
        self.bars.update(self.overall, advance=1, description=self._overall_label())
        self._report(outcome)

    def _report(self, outcome: Outcome) -> None:
        if self.as_json:
            print(json.dumps(outcome.to_json(), ensure_ascii=False), flush=True)
        elif outcome.status == "ok":
            print(f"ok       {printable(outcome.input)}  {self.describe(outcome)}", flush=True)
        elif outcome.status == "skipped":
            reason = printable(outcome.figures.get("reason", ""))
            print(f"skipped  {printable(outcome.input)}  ({reason})", flush=True)
        if outcome.status == "error":
            print_error(outcome.error or "failed")
            if outcome.traceback and debug_enabled():
                stderr.print(outcome.traceback, markup=False)

    def summary(self, outcomes: list[Outcome]) -> int:
        """Print the closing line on stderr; return the exit code (1 if any item failed)."""
        counts = {s: sum(o.status == s for o in outcomes) for s in ("ok", "skipped", "error")}
        seconds = time.monotonic() - self.started_at
        if not self.quiet:
            stderr.print(
                f"{self.verb}: {counts['ok']} ok, {counts['skipped']} skipped, "
                f"{counts['error']} failed in {seconds:.1f} s",
                markup=False,
            )
            # The failures again, together: in a long batch their error lines scrolled away.
            for outcome in outcomes:
                if outcome.status == "error":
                    stderr.print(f"  failed: {printable(outcome.input)}", markup=False)
        return 1 if counts["error"] else 0


class TokenizeBars(JobsDisplay, TokenizeEvents):
    """Progress bars of tokenizing clips before the command's own work, from when it starts
    until every clip is done: their results are not the output, but a clip that failed is a
    warning (what follows leaves it out)."""

    def __init__(self, quiet: bool) -> None:
        super().__init__(0, "tokenize", as_json=False, quiet=quiet, describe=str)

    def __enter__(self) -> TokenizeBars:
        return self  # the bars start with the tokenizing

    def tokenizing(self, total: int) -> None:
        self.total = total
        self.bars.update(self.overall, total=total, description=self._overall_label())
        if total:
            self.bars.start()

    def finished(self, outcome: Outcome) -> None:
        super().finished(outcome)
        if self._finished == self.total:
            self.bars.stop()

    def _report(self, outcome: Outcome) -> None:
        if outcome.status == "error" and not self.quiet:
            print_warning(f"skipped: {outcome.error}")


@dataclass(frozen=True)
class AnswerRows:
    """How a command prints its answer for each clip: `fields` of an answer's value make its
    row, `failure` the fields of a failed clip's row (its error followed by `note`), and
    `shown(row)` the text after `ok  INPUT  ->`."""

    fields: Callable[[Any], dict[str, Any]]
    failure: dict[str, Any]
    shown: Callable[[dict[str, Any]], str]
    note: str = ""


def print_answers(answers: Iterable[ClipAnswer], rows: AnswerRows, as_json: bool) -> int:
    """Print each clip's answer as it comes: a JSON line (input, status, error, then the
    row's fields), or one text line. Returns how many clips failed."""
    failed = 0
    for answer in answers:
        row: dict[str, Any] = {"input": answer.item.name(), "status": "ok", "error": None}
        if answer.error is None:
            row.update(rows.fields(answer.value))
        else:
            failed += 1
            row.update(status="error", error=f"{answer.error}{rows.note}", **rows.failure)
        if as_json:
            print(json.dumps(row))
        elif row["status"] == "error":
            print(f"error    {printable(row['input'])}  {printable(row['error'])}")
        else:
            print(f"ok       {printable(row['input'])}  -> {printable(rows.shown(row))}")
    return failed


def _short(name: str, width: int = 48) -> str:
    name = printable(name)
    return name if len(name) <= width else "…" + name[-(width - 1) :]
