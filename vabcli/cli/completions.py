"""Write the shell completion scripts in completions/ (run by `make completions`).

The scripts are Typer's: the shell asks `vab` itself for candidates, so commands and options added
later complete without regenerating; a test still checks the files match what this writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from typer.completion import get_completion_script

SHELLS = {"bash": "vab.bash", "zsh": "_vab", "fish": "vab.fish"}


def completion_script(shell: str) -> str:
    return get_completion_script(prog_name="vab", complete_var="_VAB_COMPLETE", shell=shell)


def write_all(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for shell, name in SHELLS.items():
        path = folder / name
        path.write_text(completion_script(shell).rstrip("\n") + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "completions")):
        print(path)
