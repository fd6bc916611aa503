"""Shell completion scripts: committed files match the generator, and completion lists commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vabcli.cli.completions import SHELLS, completion_script

COMPLETIONS = Path(__file__).resolve().parent.parent / "completions"


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_committed_scripts_are_current(shell):
    committed = (COMPLETIONS / SHELLS[shell]).read_text()
    assert committed == completion_script(shell).rstrip("\n") + "\n", (
        "run `make completions` and commit completions/"
    )


def complete(words: str, cword: int) -> list[str]:
    env = {
        **os.environ,
        "_VAB_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(cword),
    }
    vab = Path(sys.executable).parent / "vab"
    return subprocess.run([str(vab)], env=env, capture_output=True, text=True).stdout.split()


def test_completion_lists_commands_and_options():
    assert complete("vab ", 1) == [
        *(
            "extract",
            "tokenize",
            "train",
            "finetune",
            "embed",
            "retrieve",
            "classify",
            "generate",
            "mux",
        ),
        *("manifest", "synth", "eval", "models", "cache"),
    ]
    options = complete("vab extract --", 2)
    assert {"--cache", "--fps", "--size", "--sample-rate", "--workers", "--json"} <= set(options)
    assert {"--out", "--reencode", "--keep-original-audio"} <= set(complete("vab mux --", 2))
