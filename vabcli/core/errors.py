"""Domain errors, and errors as one line. The CLI prints each as one `error: ...` line;
`VAB_DEBUG=1` shows tracebacks."""

from __future__ import annotations


def one_line(error: BaseException | str) -> str:
    """`error`'s message on one line, as vab reports errors: every run of whitespace (a newline in
    a file name, the lines of a long message) becomes one space; an exception without a message
    is named by its type."""
    text = " ".join(str(error).split())
    if text or isinstance(error, str):
        return text
    return type(error).__name__


def internal_error(error: BaseException) -> str:
    """How a bug (an exception that is not a VabError) is reported for one input: on one line,
    named by its type; the traceback is kept apart, for VAB_DEBUG."""
    return one_line(f"internal error: {type(error).__name__}: {error}")


class VabError(Exception):
    """Base of every error vab reports to users (exit code 1)."""


class MediaError(VabError):
    """An input file that cannot be read as the media it should be (corrupt, empty, no video)."""


class FFmpegNotFoundError(VabError):
    """No usable ffmpeg binary."""


class OutputExistsError(VabError):
    """The output is already there and `--overwrite` was not given."""


class CancelledError(VabError):
    """Work stopped because the run is being interrupted (Ctrl-C, SIGTERM)."""


class InputError(VabError):
    """A command-line input that names nothing usable (missing file, empty folder, no match)."""


class CodecError(VabError):
    """A codec that cannot be built: unknown name, bad folder, weights that do not fit."""


class CodecWeightsMissingError(CodecError):
    """Pretrained codec weights are not on disk and cannot be downloaded."""


class CacheError(VabError):
    """The cache folder cannot take a write: read-only, full, or impossible to create."""
