"""The GPU figures in one run: training tokens/s and MFU, `vab generate` per 10 s clip with peak
memory, tokenize frames/s and audio seconds/s.

Training: tiny, small and base on synthetic latents of the real shapes (512-d features at 8 fps,
4 x 1024 codes at 75 Hz), through the Trainer `vab train` runs (bf16 autocast and fused AdamW on
CUDA), with and without `--compile`; tokens/s is what the trainer itself reports at its log
steps (the device waited for there), after a warm-up interval. MFU = 6 x parameters x positions
per second / the device's peak dense bf16 FLOP/s.

Generation: the base preset (random init: speed does not depend on what weights learned) on
ViT-B-32 and EnCodec 24 kHz of the real sizes, through `vabcli.generate` (what `vab generate`
runs) on 10 s clips at batch 1, 8 and 32, features cached (a first run fills the cache), so the
figure is sampling, codec synthesis and muxing; peak memory is torch's peak allocation.

Tokenize: `vabcli.tokenize` of the same clips into an empty cache on the device.

    python benchmarks/gpu.py [--device cuda] [--peak-tflops 989] [--parts train,generate,tokenize]
    python benchmarks/gpu.py --device cpu --quick     # the test suite runs this: minutes -> s

Targets on an H100-class GPU (issue 16): base generation <= 0.1 s per 10 s clip at batch 32,
<= 4 GB at batch 1, training MFU >= 35%.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate_throughput import as_keywords, make_clips, save_random_model  # noqa: E402
from tokenize_throughput import real_size_weights  # noqa: E402
from train_throughput import synthetic_clips  # noqa: E402

# Peak dense bf16 tensor FLOP/s by device name (vendor data sheets), for MFU.
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


@dataclass(frozen=True)
class Plan:
    """What one run measures: full on a GPU, a small version that proves the script on CPU."""

    train_presets: tuple[str, ...]
    train_batch: int
    train_steps: int  # per measured interval; one more interval warms up
    generate_preset: str
    generate_batches: tuple[int, ...]
    clip_seconds: float
    clips: int
    real_encoders: bool


FULL = Plan(("tiny", "small", "base"), 32, 20, "base", (1, 8, 32), 10.0, 32, True)
QUICK = Plan(("tiny",), 2, 2, "tiny", (1, 2), 2.0, 2, False)


def peak_flops(device: str, given: float) -> float | None:
    if given:
        return given * 1e12
    if not device.startswith("cuda"):
        return None
    import torch

    name = torch.cuda.get_device_name()
    return next((t * 1e12 for key, t in PEAK_TFLOPS.items() if key in name), None)


def train_row(preset: str, plan: Plan, device: str, compile_: bool, peak: float | None) -> str:
    from vabcli.config import TrainOptions, model_config
    from vabcli.training.trainer import RunInfo, Trainer

    with tempfile.TemporaryDirectory() as tmp:
        clips = synthetic_clips(Path(tmp), 8, 10.0)
        opts = TrainOptions(
            steps=2 * plan.train_steps,
            batch_size=plan.train_batch,
            clip_seconds=4.0,
            val_every=10**9,
            log_every=plan.train_steps,
            workers=2,
            compile=compile_,
        )
        cfg = model_config(preset, visual_dim=512, audio_frame_rate=75.0)
        info = RunInfo("synthetic", "synthetic")
        trainer = Trainer(cfg, info, opts, clips, [], Path(tmp) / "run", device)
        logged: list[dict[str, float]] = []
        trainer.run(lambda m: logged.append(m) if "tokens_per_s" in m else None)
        params = trainer.model.n_parameters()
    tokens_per_s = logged[-1]["tokens_per_s"]  # the second interval: warmed up
    positions_per_s = tokens_per_s / cfg.n_codebooks * (1 + cfg.visual_fps / cfg.audio_frame_rate)
    mfu = f"{6 * params * positions_per_s / peak:.1%}" if peak else "n/a"
    cells = [preset, f"{params / 1e6:.1f} M", f"{plan.train_batch} x 4 s"]
    cells += ["yes" if compile_ else "no", f"{tokens_per_s:,.0f}", mfu]
    return "| " + " | ".join(cells) + " |"


def generation_rows(plan: Plan, root: Path, encoders: dict[str, str], device: str) -> list[str]:
    """Seconds per 10 s clip and peak memory of `vab generate` at each batch size."""
    import torch

    import vabcli

    model = save_random_model(root, plan.generate_preset, encoders)
    clips, cache = root / "clips", root / "cache"
    options = {"device": device, "mux": True}  # the checkpoint names its encoders
    vabcli.generate([clips], root / "warm", model=model, cache=cache, **options)  # features
    rows = []
    for batch in plan.generate_batches:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        outcomes = vabcli.generate(
            [clips], root / f"out{batch}", model=model, cache=cache, batch_size=batch, **options
        )
        wall = time.perf_counter() - start
        failed = [o for o in outcomes if o.status != "ok"]
        if failed:
            raise SystemExit(f"generate: {failed[0].input}: {failed[0].error}")
        on_gpu = device.startswith("cuda")
        peak = f"{torch.cuda.max_memory_allocated() / 2**30:.2f}" if on_gpu else "n/a"
        per_clip = wall / len(outcomes) * 10.0 / plan.clip_seconds
        cells = [plan.generate_preset, batch, len(outcomes), f"{per_clip:.3f}", peak]
        rows.append("| " + " | ".join(map(str, cells)) + " |")
    return rows


def tokenize_row(plan: Plan, root: Path, encoders: dict[str, str], device: str) -> str:
    import vabcli

    start = time.perf_counter()
    cache = root / "tokenize-cache"
    outcomes = vabcli.tokenize([root / "clips"], cache=cache, device=device, **encoders)
    wall = time.perf_counter() - start
    frames = sum(o.figures["n_visual"] for o in outcomes if o.status == "ok")
    seconds = sum(o.figures["duration"] for o in outcomes if o.status == "ok")
    clips = f"{len(outcomes)} x {plan.clip_seconds:g} s"
    return f"| {clips} | {frames / wall:,.0f} | {seconds / wall:,.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: proves the script")
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="for MFU (else by name)")
    parser.add_argument(
        "--parts",
        default="train,generate,tokenize",
        help="which tables (a device lease may not fit all three in one call)",
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    import torch

    from vabcli.core.threads import size_torch_threads

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    size_torch_threads()
    plan = QUICK if args.quick else FULL
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.machine()
    print(f"device: {name} ({args.device}), {os.cpu_count()} CPU cores; torch {torch.__version__}")
    peak = peak_flops(args.device, args.peak_tflops)
    if "train" in parts:
        print("\ntraining (synthetic latents, 4 s windows, bf16 on CUDA):\n")
        print("| preset | parameters | batch | compile | audio tokens/s | MFU |")
        print("|--------|-----------:|-------|---------|---------------:|----:|")
        for preset in plan.train_presets:
            for compile_ in (False, True) if args.device.startswith("cuda") else (False,):
                print(train_row(preset, plan, args.device, compile_, peak), flush=True)
    if not parts & {"generate", "tokenize"}:
        return
    root = Path(tempfile.mkdtemp(prefix="vab-bench-gpu-"))
    try:
        make_clips(root / "clips", plan.clips, plan.clip_seconds)
        if plan.real_encoders:
            encoders = as_keywords(real_size_weights(root))
        else:
            encoders = {"codec": "debug", "image_encoder": "debug"}
        if "generate" in parts:
            shape = f"{plan.clips} clips x {plan.clip_seconds:g} s"
            print(f"\nvab generate, features cached ({shape}):\n")
            print("| preset | batch | clips | s per 10 s clip | peak GiB |")
            print("|--------|------:|------:|----------------:|---------:|")
            for row in generation_rows(plan, root, encoders, args.device):
                print(row, flush=True)
        if "tokenize" in parts:
            print("\ntokenize (empty cache):\n")
            print("| clips | frames/s | audio s/s |")
            print("|-------|---------:|----------:|")
            print(tokenize_row(plan, root, encoders, args.device), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
