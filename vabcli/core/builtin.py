"""The bundled default model: a codec, an image tower and a VAB checkpoint, all trained here on
the synthetic world (`make model` rebuilds them), shipped inside the package.

The name `builtin` selects them: `--model builtin` (generate's default), `--codec builtin`,
`--image-encoder builtin`. Checkpoints trained on them record the name, not a path, so they
keep working wherever the package is installed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vabcli.core.errors import VabError

BUILTIN = "builtin"
WEIGHTS_DIR = Path(__file__).parents[1] / "weights"  # vabcli/weights, beside the subpackages
BUILTIN_DIR = WEIGHTS_DIR / BUILTIN
CARD_FILE = "card.json"  # what `vab models` shows: how it was made, its scores
_REBUILD = "run `make model` in the vab source tree to rebuild it"


class BuiltinModelMissingError(VabError):
    """The bundled model's files are not where the package keeps them."""


@dataclass(frozen=True)
class BuiltinPart:
    name: str
    folder: Path
    files: tuple[str, ...]

    def require(self) -> Path:
        """The folder, after checking every file is there."""
        for file in self.files:
            if not (self.folder / file).is_file():
                raise BuiltinModelMissingError(
                    f"the bundled {self.name} is missing {self.folder / file}: {_REBUILD}"
                )
        return self.folder


CODEC = BuiltinPart("codec", BUILTIN_DIR / "codec", ("config.json", "weights.safetensors"))
VISION = BuiltinPart(
    "image encoder",
    BUILTIN_DIR / "vision",
    ("open_clip_config.json", "open_clip_model.safetensors"),
)
CHECKPOINT = BuiltinPart("model", BUILTIN_DIR / "vab", ("config.json", "model.safetensors"))


def builtin_card() -> dict:
    """The model card `make model` wrote ({} if none)."""
    try:
        return json.loads((BUILTIN_DIR / CARD_FILE).read_text())
    except (OSError, ValueError):
        return {}


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
