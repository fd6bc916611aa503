"""The library under `vab embed/retrieve/classify/eval`: many clips through one tokenizer, a
checkpoint's answer per clip with failures as data, and how the CLI prints and fails."""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer

from vabcli.cli.common import EXIT_INTERRUPTED, one_line_failures
from vabcli.cli.console import AnswerRows, print_answers
from vabcli.core.cache import Cache
from vabcli.core.errors import VabError
from vabcli.core.jobs import JobEvents
from vabcli.data.clips import ClipItem
from vabcli.encoders.tokenize import ClipTokenizer, TokenizeOptions
from vabcli.encoders.tokenize_clips import TokenizeEvents, tokenize_clips
from vabcli.tasks.latents import ClipLatents, answer_clips


def _latents(name, error=None, codes=True):
    features = None if error else np.zeros((4, 8), np.float32)
    audio = np.zeros((2, 10), np.int16) if codes and not error else None
    return ClipLatents(ClipItem(name), error, features, audio)


def test_answers_keep_going_past_failures_and_carry_their_errors():
    def answer(features, codes):
        if codes is None:
            raise VabError("has no audio")
        return features.shape[0] + codes.shape[1]

    clips = [_latents("a"), _latents("b", error="b: no such file"), _latents("c", codes=False)]
    answers = list(answer_clips(clips, answer))
    assert [(a.item.name(), a.value, a.error) for a in answers] == [
        ("a", 14, None),
        ("b", None, "b: no such file"),
        ("c", None, "has no audio"),
    ]


def test_answers_print_as_text_or_json_lines_and_count_failures(capsys):
    clips = [_latents("a"), _latents("b\nc", error="broken")]
    rows = AnswerRows(lambda n: {"n": n}, {"n": None}, lambda row: f"n={row['n']}", note=" (v2a)")
    failed = print_answers(answer_clips(clips, lambda f, c: 3), rows, as_json=False)
    assert failed == 1
    assert capsys.readouterr().out.splitlines() == [
        "ok       a  -> n=3",
        "error    b\\nc  broken (v2a)",
    ]
    print_answers(answer_clips(clips, lambda f, c: 3), rows, as_json=True)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        {"input": "a", "status": "ok", "error": None, "n": 3},
        {"input": "b\nc", "status": "error", "error": "broken (v2a)", "n": None},
    ]


@pytest.mark.parametrize(
    "raised, code, message",
    [
        (VabError("no model here"), 1, "error: no model here"),
        (OSError("disk gone"), 1, "error: disk gone"),
        (KeyboardInterrupt(), EXIT_INTERRUPTED, "error: stopped half way"),
    ],
)
def test_a_failed_command_is_one_error_line_and_its_exit_code(capsys, raised, code, message):
    with pytest.raises(typer.Exit) as stopped, one_line_failures("stopped half way"):
        raise raised
    assert stopped.value.exit_code == code
    assert capsys.readouterr().err.strip() == message


def test_a_reader_that_left_is_no_command_failure():
    with pytest.raises(BrokenPipeError), one_line_failures():
        raise BrokenPipeError


class _Heard(TokenizeEvents):
    def __init__(self):
        self.total, self.finished_names = None, []

    def tokenizing(self, total):
        self.total = total

    def finished(self, outcome):
        self.finished_names.append(outcome.input)


def test_tokenize_clips_keeps_input_order_and_tells_the_total(clip, tmp_path):
    clips = [clip(f"t{i}.mp4", duration=1.0, tone_hz=300.0 + 100 * i) for i in range(3)]
    items = [ClipItem(clips[0]), ClipItem(tmp_path / "gone.mp4", error="gone"), ClipItem(clips[1])]
    opts = TokenizeOptions(codec="debug", image_encoder="debug", device="cpu")
    heard = _Heard()
    with ClipTokenizer(opts, Cache(tmp_path / "cache")) as tokenizer:
        done = tokenize_clips(items, tokenizer, 2, heard)
    assert [o.input for o in done.outcomes] == [item.name() for item in items]
    assert [o.status for o in done.outcomes] == ["ok", "error", "ok"]
    assert done.outcomes[1].error == "gone"
    assert (done.codec_id, done.visual_id) == (tokenizer.codec_id, tokenizer.visual_id)
    assert done.codec_id and done.visual_id
    assert heard.total == 3 and sorted(heard.finished_names) == sorted(i.name() for i in items)
    # Plain JobEvents hear the clips as well, without the total.
    with ClipTokenizer(opts, Cache(tmp_path / "cache")) as tokenizer:
        again = tokenize_clips(items[:1], tokenizer, 1, JobEvents())
    assert again.outcomes[0].figures["cache_hit"]
