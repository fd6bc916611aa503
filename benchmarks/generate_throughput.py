"""`vab generate` speed: seconds per clip by stage, real-time factor, and maskgit vs ar.

Encoders of the real sizes with random weights (a ViT-B-32 image tower and the EnCodec 24 kHz
codec: the compute of the real thing; pretrained weights cannot be downloaded here), loaded
through the same `MODEL:FILE` / `--codec-weights` paths users use, and random-init VAB models of
the chosen presets saved as `vab train` saves them. Speed does not depend on what the weights
learned, so these numbers hold for trained models of the same sizes. Calls `vabcli.generate`
(what `vab generate` runs, with torch's threads sized as the command sizes them), one clip at a
time (`batch_size=1, workers=1`) so each stage's time is its own; the wall time per clip includes
loading the model, not starting Python.

Usage: python benchmarks/generate_throughput.py [--presets tiny,base] [--clips N]
           [--seconds S] [--device cpu|cuda] [--ar-seconds S]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tokenize_throughput import real_size_weights  # noqa: E402  (a sibling script)

from vabcli.core.threads import size_torch_threads  # noqa: E402

STAGES = ("decode", "features", "sampling", "synthesis", "mux")


def make_clips(folder: Path, count: int, seconds: float) -> None:
    from vabcli.media.testing import ClipSpec, make_clip

    source = "testsrc2=size=640x360:rate=30000/1001,noise=alls=12:allf=t+u"
    for i in range(count):
        spec = ClipSpec(duration=seconds, video_source=source, tone_hz=220.0 + 20 * i)
        make_clip(folder / f"clip{i:03d}.mp4", spec)


def as_keywords(options: list[str]) -> dict[str, str]:
    """`["--codec-weights", "w.th", ...]` -> `{"codec_weights": "w.th", ...}`."""
    pairs = zip(options[::2], options[1::2], strict=True)
    return {k.lstrip("-").replace("-", "_"): v for k, v in pairs}


def save_random_model(folder: Path, preset: str, encoders: dict[str, str]) -> Path:
    """A random-init VAB model of `preset` on the `encoders` (codec, codec_weights,
    image_encoder: TokenizeOptions' fields), as a checkpoint folder."""
    import torch

    from vabcli.config import model_config
    from vabcli.encoders.audio_codec import load_codec
    from vabcli.encoders.image import load_visual_encoder
    from vabcli.encoders.tokenize import TokenizeOptions, encoder_spec
    from vabcli.model.checkpoint import save_checkpoint
    from vabcli.model.transformer import VabModel

    weights = encoders.get("codec_weights")
    tok = TokenizeOptions(
        codec=encoders.get("codec", "encodec_24khz"),
        codec_weights=Path(weights) if weights else None,
        image_encoder=encoders["image_encoder"],
    )
    codec = load_codec(tok.codec, weights=tok.codec_weights)
    visual = load_visual_encoder(tok.image_encoder)
    dims = {
        "visual_dim": visual.dim,
        "n_codebooks": codec.n_codebooks,
        "codebook_size": codec.codebook_size,
        "audio_frame_rate": codec.frame_rate,
    }
    cfg = model_config(preset, **dims)
    torch.manual_seed(0)
    meta = {
        "step": 0,
        "codec_id": codec.id,
        "visual_id": visual.id,
        "encoders": encoder_spec(tok),
        "options": {"clip_seconds": 4.0},
    }
    return save_checkpoint(folder / f"vab-{preset}", VabModel(cfg), cfg, meta)


def run_generate(
    clips: Path, out: Path, model: Path, cache: Path, **options: object
) -> tuple[float, list[dict]]:
    """Dub every clip under `clips`; the wall time and each clip's figures (its JSON line)."""
    import vabcli

    start = time.perf_counter()
    outcomes = vabcli.generate([clips], out, model=model, cache=cache, **options)
    wall = time.perf_counter() - start
    failed = [o for o in outcomes if o.status == "error"]
    if failed:
        raise SystemExit(f"generate failed: {failed[0].input}: {failed[0].error}")
    return wall, [o.figures for o in outcomes]


def stage_row(label: str, lines: list[dict], wall: float, video_seconds: float) -> str:
    n = len(lines)
    means = [sum(line["timings"].get(s, 0.0) for line in lines) / n for s in STAGES]
    cells = " | ".join(f"{m:7.2f}" for m in means)
    return f"| {label:24s} | {cells} | {wall / n:7.2f} | {video_seconds * n / wall:7.2f}x |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny,base")
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--ar-seconds",
        type=float,
        default=10.0,
        help="clip length for the maskgit-vs-ar comparison",
    )
    parser.add_argument("--ar-presets", default="tiny")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vab-bench-gen-"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        make_clips(root / "clips", args.clips, args.seconds)
        make_clips(root / "ar-clip", 1, args.ar_seconds)
        encoders = real_size_weights(root)
        size_torch_threads()  # as `vab generate` does; a library call leaves them to its caller
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, device {args.device}; "
            f"{args.clips} clips x {args.seconds:g} s, 640x360 29.97 fps; ViT-B-32 + "
            "EnCodec 24k (random init); --steps 16 --guidance 5; 4 s windows"
        )
        print("\nseconds per clip by stage (features cached in the second run):\n")
        print(
            f"| {'model, run':24s} | "
            + " | ".join(f"{s:>7s}" for s in STAGES)
            + " | per clip | x real time |"
        )
        print("|" + "-" * 26 + "|" + "--------:|" * len(STAGES) + "---------:|------------:|")
        for preset in args.presets.split(","):
            model = save_random_model(root, preset, as_keywords(encoders))
            cache = root / f"cache-{preset}"
            for run in ("first", "cached features"):
                out = root / f"out-{preset}-{run[0]}"
                wall, lines = run_generate(
                    root / "clips", out, model, cache, device=args.device, batch_size=1, workers=1
                )
                print(stage_row(f"{preset}, {run}", lines, wall, args.seconds), flush=True)
        print(f"\nmaskgit vs ar on one {args.ar_seconds:g} s clip (features cached):\n")
        print("| model | sampler | steps | sampling s | speed-up |")
        print("|-------|---------|------:|-----------:|---------:|")
        for preset in args.ar_presets.split(","):
            model = root / f"vab-{preset}"
            if not model.exists():
                model = save_random_model(root, preset, as_keywords(encoders))
            cache = root / f"cache-{preset}"
            times = {}
            for sampler in ("maskgit", "ar"):
                out = root / f"ar-{preset}-{sampler}"
                _, lines = run_generate(
                    root / "ar-clip",
                    out,
                    model,
                    cache,
                    device=args.device,
                    sampler=sampler,
                    mux=False,
                )
                times[sampler] = lines[0]["timings"]["sampling"]
                speedup = times["ar"] / times["maskgit"] if sampler == "ar" else 1.0
                steps = "16" if sampler == "maskgit" else "1/frame"
                print(
                    f"| {preset} | {sampler} | {steps} | {times[sampler]:10.2f} | "
                    f"{speedup:7.1f}x |",
                    flush=True,
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
