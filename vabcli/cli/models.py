"""`vab models`: the models that ship with vab."""

import json

from vabcli.cli.common import JsonOpt, app
from vabcli.core.builtin import (
    BUILTIN,
    BUILTIN_DIR,
    CHECKPOINT,
    CODEC,
    VISION,
    builtin_card,
    folder_size,
)
from vabcli.core.errors import VabError


@app.command()
def models(as_json: JsonOpt = False) -> None:
    """List the bundled models: `--model builtin` (generate's default), `--codec builtin` and
    `--image-encoder builtin` name them. `make model` rebuilds them from scratch."""
    missing = []
    for part in (CODEC, VISION, CHECKPOINT):
        try:
            part.require()
        except VabError as exc:
            missing.append(str(exc))
    card = builtin_card()
    size = folder_size(BUILTIN_DIR) if BUILTIN_DIR.is_dir() else 0
    if as_json:
        record = {"name": BUILTIN, "path": str(BUILTIN_DIR), "bytes": size, "missing": missing}
        print(json.dumps({**record, **card}))
        return
    state = "MISSING" if missing else f"{size / 1e6:.1f} MB"
    print(f"{BUILTIN}  (default of vab generate --model)  {BUILTIN_DIR}  {state}")
    for problem in missing:
        print(f"  {problem}")
    for key, text in card.get("summary", {}).items():
        print(f"  {key:14s} {text}")
