"""Errors as one line: what vab prints after `error:` never spans two lines."""

import pickle

from vabcli.core.errors import VabError, one_line
from vabcli.encoders.network import PICKLE_REFUSED, first_line


def test_every_run_of_whitespace_becomes_one_space():
    assert one_line(VabError("cannot read /tmp/two\nlines.mp4:\r\n  truncated")) == (
        "cannot read /tmp/two lines.mp4: truncated"
    )
    assert one_line("internal error: KeyError: 'a'\n") == "internal error: KeyError: 'a'"


def test_an_exception_without_a_message_is_named_by_its_type():
    assert one_line(RuntimeError()) == "RuntimeError" and one_line(" \n") == ""


def test_a_library_load_error_is_its_first_line_or_the_pickle_refusal():
    torch_like = RuntimeError("Error(s) in loading state_dict:\n\tMissing key(s): a, b\n\t...")
    assert first_line(torch_like) == "Error(s) in loading state_dict:"
    assert first_line(ValueError()) == "ValueError"
    wrapped = RuntimeError("cannot load")
    wrapped.__cause__ = pickle.UnpicklingError("Weights only load failed.\nRe-running ...")
    assert first_line(wrapped) == PICKLE_REFUSED
