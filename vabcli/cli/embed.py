"""`vab embed` (clips -> embedding file) and `vab retrieve` (queries -> ranked matches)."""

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from vabcli.cli.common import CacheOpt, DeviceOpt, JsonOpt, QuietOpt, WorkersOpt, app, open_cache
from vabcli.cli.console import print_error, print_warning, printable
from vabcli.cli.train import DataOpt, _tokenize_all
from vabcli.core.errors import VabError
from vabcli.data.clips import ClipItem, clip_items

ModelOpt = Annotated[
    Path,
    typer.Option("--model", metavar="CKPT", help="A contrastive fine-tune or pre-trained model."),
]
InputsArg = Annotated[
    list[str] | None,
    typer.Argument(metavar="INPUT", help="Video files, folders or globs (or use --data)."),
]
MODALITY_NAMES = {"v": "visual", "a": "audio"}


def _latents(
    items: list[ClipItem], embedder: Any, cache: Path | None, device: str, workers: int, quiet: bool
) -> Iterator[tuple[ClipItem, str | None, np.ndarray | None, np.ndarray | None]]:
    """(item, error, features, codes) per clip, tokenized with the model's own encoders."""
    from vabcli.encoders.tokenize import ClipTokenizer, latent_files, options_from_spec

    store = open_cache(cache)
    opts = options_from_spec(embedder.meta.get("encoders") or {}, device=device)
    outcomes, _ = _tokenize_all(items, lambda: ClipTokenizer(opts, store), workers, quiet)
    for item, outcome in zip(items, outcomes, strict=True):
        if outcome.status != "ok":
            yield item, outcome.error or "failed", None, None
            continue
        features, codes = latent_files(store, outcome.figures)
        yield item, None, np.load(features), None if codes is None else np.load(codes)


def _vector(embedder: Any, modality: str, features: Any, codes: Any) -> np.ndarray:
    if modality == "a":
        if codes is None:
            raise VabError("has no audio to embed")
        return embedder.audio(codes)
    return embedder.visual(features)


def _check_modality(modality: str) -> None:
    if modality not in MODALITY_NAMES:
        raise typer.BadParameter("v (visual) or a (audio)", param_hint="--modality")


@app.command()
def embed(
    inputs: InputsArg = None,
    data: DataOpt = None,
    model: ModelOpt = Path("builtin"),
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="FILE", help="Embedding file to write (.npz).")
    ] = Path("embeddings.npz"),
    modality: Annotated[
        str, typer.Option(metavar="v|a", help="Embed the pictures (v) or the sound (a).")
    ] = "v",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace FILE.")] = False,
    cache: CacheOpt = None,
    device: DeviceOpt = "auto",
    workers: WorkersOpt = 2,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Embeddings of clips into one .npz (embeddings [N, D] float32 unit vectors, ids, model,
    modality) that numpy reads as is. Cached clips are not decoded again. Exit code 1 if a clip
    could not be embedded (it is left out of FILE)."""
    from vabcli.core.device import resolve_device
    from vabcli.tasks.embedding import load_embedder
    from vabcli.tasks.embedding_file import EmbeddingIndex, save_index

    _check_modality(modality)
    if not inputs and data is None:
        raise typer.BadParameter("give INPUT... or --data MANIFEST")
    if out.exists() and not overwrite:
        raise typer.BadParameter(f"{out} exists: add --overwrite to replace it", param_hint="--out")
    try:
        embedder = load_embedder(model, resolve_device(device))
        vectors, ids, failed = [], [], 0
        items = clip_items(inputs, data)
        for item, error, features, codes in _latents(
            items, embedder, cache, device, workers, quiet
        ):
            try:
                if error:
                    raise VabError(error)
                vectors.append(_vector(embedder, modality, features, codes))
                ids.append(item.name())
            except VabError as exc:
                failed += 1
                print_warning(f"{item.name()}: {exc}; left out")
        if not vectors:
            raise VabError("no clip could be embedded; nothing written")
        index = EmbeddingIndex(np.stack(vectors), ids, embedder.model_id, modality)
        save_index(out, index, overwrite)
    except (VabError, OSError) as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None
    summary = {"out": str(out), "n": len(ids), "dim": int(index.embeddings.shape[1]),
               "modality": modality, "model": embedder.model_id, "failed": failed}  # fmt: skip
    if as_json:
        print(json.dumps(summary))
    else:
        print(f"{len(ids)} {MODALITY_NAMES[modality]} embeddings ({summary['dim']}-d) -> {out}"
              + (f"; {failed} clips left out" if failed else ""))  # fmt: skip
    if failed:
        raise typer.Exit(1)


@app.command()
def retrieve(
    inputs: InputsArg = None,
    data: DataOpt = None,
    index_file: Annotated[
        Path, typer.Option("--index", metavar="FILE", help="An embedding file (vab embed).")
    ] = Path("embeddings.npz"),
    model: ModelOpt = Path("builtin"),
    direction: Annotated[
        str,
        typer.Option(metavar="v2a|a2v", help="Pictures find sounds (v2a) or sounds pictures."),
    ] = "v2a",
    top_k: Annotated[int, typer.Option("--top-k", metavar="K", min=1, help="Matches.")] = 5,
    cache: CacheOpt = None,
    device: DeviceOpt = "auto",
    workers: WorkersOpt = 2,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Ranked matches of each query clip in an embedding file of the other modality, with
    cosine scores. JSON lines: input, status, error, matches [{id, score}]. Exit code 1 if a
    query failed (for example a2v with a clip without audio)."""
    import torch

    from vabcli.core.device import resolve_device
    from vabcli.tasks.embedding import load_embedder
    from vabcli.tasks.embedding_file import load_index
    from vabcli.tasks.retrieval import top_k as search

    if direction not in ("v2a", "a2v"):
        raise typer.BadParameter("v2a or a2v", param_hint="--direction")
    if not inputs and data is None:
        raise typer.BadParameter("give INPUT... or --data MANIFEST")
    query_modality, index_modality = direction[0], direction[2]
    try:
        embedder = load_embedder(model, resolve_device(device))
        index = load_index(index_file, model=embedder.model_id)
        if index.modality != index_modality:
            held, wanted = MODALITY_NAMES[index.modality], MODALITY_NAMES[index_modality]
            raise VabError(f"{index_file} holds {held} embeddings; {direction} searches {wanted}")
        vectors = torch.from_numpy(index.embeddings)

        def matches(features: Any, codes: Any) -> dict[str, Any]:
            query = _vector(embedder, query_modality, features, codes)
            scores, rows = search(torch.from_numpy(query)[None], vectors, top_k)
            return {"matches": [{"id": index.ids[r], "score": round(float(s), 6)}
                                for s, r in zip(scores[0], rows[0], strict=True)]}  # fmt: skip

        latents = _latents(clip_items(inputs, data), embedder, cache, device, workers, quiet)
        failed = answer_each(latents, matches, {"matches": []}, _shown_matches, as_json,
                             f" ({direction})")  # fmt: skip
    except (VabError, OSError) as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None
    if failed:
        raise typer.Exit(1)


def _shown_matches(row: dict[str, Any]) -> str:
    return ", ".join(f"{m['id']} ({m['score']:.3f})" for m in row["matches"])


def answer_each(
    latents: Iterable[tuple[ClipItem, str | None, Any, Any]],
    answer: Callable[[Any, Any], dict[str, Any]],
    failure: dict[str, Any],
    shown: Callable[[dict[str, Any]], str],
    as_json: bool,
    note: str = "",
) -> int:
    """Answer each clip from its (features, codes) and print it as it comes: a JSON line
    (input, status, error, then the answer's fields), or `ok  INPUT  -> shown(row)`. A clip that
    could not be tokenized, or whose answer raises VabError, gets an error row with `failure`'s
    fields (its message + `note`). Returns how many failed."""
    failed = 0
    for item, error, features, codes in latents:
        row: dict[str, Any] = {"input": item.name(), "status": "ok", "error": None}
        try:
            if error:
                raise VabError(error)
            row.update(answer(features, codes))
        except VabError as exc:
            failed += 1
            row.update(status="error", error=f"{exc}{note}", **failure)
        if as_json:
            print(json.dumps(row))
        elif row["status"] == "error":
            print(f"error    {printable(row['input'])}  {printable(row['error'])}")
        else:
            print(f"ok       {printable(row['input'])}  -> {printable(shown(row))}")
    return failed
