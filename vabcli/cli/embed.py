"""`vab embed` (clips -> embedding file) and `vab retrieve` (queries -> ranked matches)."""

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from vabcli.cli.common import (
    DataOpt,
    InputsArg,
    ModelOpt,
    SharedOptions,
    app,
    clips_given,
    one_line_failures,
    open_cache,
    print_clip_answers,
    shared_options,
)
from vabcli.cli.console import AnswerRows, TokenizeBars, print_warning
from vabcli.core.builtin import BUILTIN
from vabcli.core.errors import VabError
from vabcli.data.clips import clip_items
from vabcli.tasks.options import (
    DIRECTIONS,
    EMBEDDING_FILE,
    MODALITY_NAMES,
    EmbedOptions,
    RetrieveOptions,
)


@app.command()
@shared_options
def embed(
    inputs: InputsArg = None,
    data: DataOpt = None,
    model: ModelOpt = Path(BUILTIN),
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="FILE", help="Embedding file to write (.npz).")
    ] = EMBEDDING_FILE,
    modality: Annotated[
        str, typer.Option(metavar="v|a", help="Embed the pictures (v) or the sound (a).")
    ] = EmbedOptions.modality,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace FILE.")] = False,
    *,
    shared: SharedOptions,
) -> None:
    """Embeddings of clips into one .npz (embeddings [N, D] float32 unit vectors, ids, model,
    modality) that numpy reads as is. Cached clips are not decoded again. Exit code 1 if a clip
    could not be embedded (it is left out of FILE)."""
    from vabcli.tasks.answers import embed_clips
    from vabcli.tasks.embedding_file import save_index

    if modality not in MODALITY_NAMES:
        raise typer.BadParameter("v (visual) or a (audio)", param_hint="--modality")
    clips_given(inputs, data)
    if out.exists() and not overwrite:
        raise typer.BadParameter(f"{out} exists: add --overwrite to replace it", param_hint="--out")
    opts = EmbedOptions(device=shared.device, workers=shared.workers, modality=modality)
    with one_line_failures():
        items = clip_items(inputs, data)
        with TokenizeBars(shared.quiet) as bars:
            embedded = embed_clips(model, items, open_cache(shared.cache), opts, bars)
        for clip in embedded.left_out:
            print_warning(f"{clip.item.name()}: {clip.error}; left out")
        if embedded.index is None:
            raise VabError("no clip could be embedded; nothing written")
        save_index(out, embedded.index, overwrite)
    index, failed = embedded.index, len(embedded.left_out)
    dim = int(index.embeddings.shape[1])
    if shared.as_json:
        summary = {"out": str(out), "n": len(index.ids), "dim": dim, "modality": modality}
        print(json.dumps({**summary, "model": index.model, "failed": failed}))
    else:
        left_out = f"; {failed} clips left out" if failed else ""
        print(
            f"{len(index.ids)} {MODALITY_NAMES[modality]} embeddings ({dim}-d) -> {out}{left_out}"
        )
    if failed:
        raise typer.Exit(1)


@app.command()
@shared_options
def retrieve(
    inputs: InputsArg = None,
    data: DataOpt = None,
    index_file: Annotated[
        Path, typer.Option("--index", metavar="FILE", help="An embedding file (vab embed).")
    ] = EMBEDDING_FILE,
    model: ModelOpt = Path(BUILTIN),
    direction: Annotated[
        str,
        typer.Option(metavar="v2a|a2v", help="Pictures find sounds (v2a) or sounds pictures."),
    ] = RetrieveOptions.direction,
    top_k: Annotated[
        int, typer.Option("--top-k", metavar="K", min=1, help="Matches.")
    ] = RetrieveOptions.top_k,
    *,
    shared: SharedOptions,
) -> None:
    """Ranked matches of each query clip in an embedding file of the other modality, with
    cosine scores. JSON lines: input, status, error, matches [{id, score}]. Exit code 1 if a
    query failed (for example a2v with a clip without audio)."""
    from vabcli.tasks.answers import search_clips

    if direction not in DIRECTIONS:
        raise typer.BadParameter("v2a or a2v", param_hint="--direction")
    clips_given(inputs, data)
    opts = RetrieveOptions(
        device=shared.device, workers=shared.workers, direction=direction, top_k=top_k
    )
    print_clip_answers(
        inputs,
        data,
        lambda items, cache, bars: search_clips(model, index_file, items, cache, opts, bars),
        AnswerRows(_matches, {"matches": []}, _shown_matches, note=f" ({direction})"),
        shared,
    )


def _matches(matches: list[Any]) -> dict[str, Any]:
    return {"matches": [{"id": m.id, "score": round(m.score, 6)} for m in matches]}


def _shown_matches(row: dict[str, Any]) -> str:
    return ", ".join(f"{m['id']} ({m['score']:.3f})" for m in row["matches"])
