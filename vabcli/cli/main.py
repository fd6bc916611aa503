"""The `vab` command line: each command parses, builds an options object and calls the library.

Commands live in small modules (`vabcli/cli/<command>.py`) that register on the one app defined
in vabcli/cli/common.py; this module is the entry point.
"""

import atexit
import os
import select
import signal
import sys
from typing import NoReturn

# Each command module registers its commands on the one app (vabcli.cli.common.app).
import vabcli.cli.cache  # noqa: F401
import vabcli.cli.classify  # noqa: F401
import vabcli.cli.embed  # noqa: F401
import vabcli.cli.eval  # noqa: F401
import vabcli.cli.extract  # noqa: F401
import vabcli.cli.finetune  # noqa: F401
import vabcli.cli.generate  # noqa: F401
import vabcli.cli.manifest  # noqa: F401
import vabcli.cli.models  # noqa: F401
import vabcli.cli.mux  # noqa: F401
import vabcli.cli.synth  # noqa: F401
import vabcli.cli.tokenize  # noqa: F401
import vabcli.cli.train  # noqa: F401
from vabcli.cli.common import EXIT_INTERRUPTED, app
from vabcli.cli.console import debug_enabled, print_error
from vabcli.core.errors import VabError
from vabcli.core.process import exit_now, exit_quickly
from vabcli.core.threads import prepare_process


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


# 128 + SIGPIPE: what a shell reports for a tool stopped because its reader left (`| head`).
EXIT_BROKEN_PIPE = 141


def main() -> None:
    """Console-script entry point: set the process up, run the command, leave with its status."""
    prepare_process()  # first: torch's OpenMP reads its settings once, when torch loads
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    code = _command_status()
    # The command is over: a SIGTERM from here on (threads joining, teardown) ends the process as
    # SIGTERM does, not as a KeyboardInterrupt escaping at exit.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # only a process that imported the distributed plumbing joined a process group
    distributed = sys.modules.get("vabcli.training.distributed")
    if distributed is not None:
        distributed.exit_process(code, leave=_leave)
    _leave(code)


def _leave(code: int) -> NoReturn:
    """End a process that joined no process group with `code`."""
    if code == EXIT_INTERRUPTED:
        _leave_interrupted()
    exit_quickly(code)


def _leave_interrupted() -> NoReturn:
    """End an interrupted run with exit 130 for certain.

    CPython 3.11 marks a KeyboardInterrupt raised inside code run by eval/exec (namedtuple and
    dataclass creation while a module imports) as unhandled even when vab caught it, and then ends
    the process by SIGINT (-2) after a clean exit 130. So an interrupted run does the usual exit
    work itself (atexit handlers, flushing) and leaves through os._exit.
    """
    atexit._run_exitfuncs()
    exit_now(EXIT_INTERRUPTED)


def _command_status() -> int:
    """Run the command line and return its exit status, whatever way it ends."""
    try:
        app(prog_name="vab")
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM before or between batches (start-up, loading)
        print_error("interrupted")
        code = EXIT_INTERRUPTED
    except VabError as exc:  # raised outside a batch (e.g. no ffmpeg at all)
        if debug_enabled():
            sys.excepthook(*sys.exc_info())
        else:
            print_error(str(exc))
        code = 1
    except Exception:  # a bug: shown as Python would, but the process still ends through here
        sys.excepthook(*sys.exc_info())
        code = 1
    try:
        sys.stdout.flush()  # what is still buffered reaches the reader now, or the run says so
    except BrokenPipeError:
        code = EXIT_BROKEN_PIPE
    if code == EXIT_BROKEN_PIPE:
        # Nothing more can reach the reader: later flushes (interpreter exit) go nowhere, quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return code


def _exit_code(exc: SystemExit) -> int:
    """The status of a command that ended by exiting. Typer turns a write to a closed stdout
    into a silent exit 1 (the BrokenPipeError is the exit's context): a reader that left
    (`vab ... | head`) gets the pipe status instead, a broken pipe elsewhere an error line."""
    cause = exc.__context__
    if isinstance(cause, BrokenPipeError):
        if _stdout_gone():
            return EXIT_BROKEN_PIPE
        print_error(f"internal error: {cause}")
        return 1
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    print(exc.code, file=sys.stderr)
    return 1


def _stdout_gone() -> bool:
    """True when stdout is a pipe whose reader has left (poll reports an error on its end)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False
