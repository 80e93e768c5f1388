"""``mas bench``: how long MAS takes with a model, as a printed table.

Rows: CPU at batch 1 and at a batch of motions (seconds per motion, share of the time in
triangulation, peak resident memory of the process so far), and on a GPU when there is
one, motions per second at a large batch. A short warm-up run comes first so one-time
costs (allocations, thread pools) are not counted.
"""
from __future__ import annotations

import json
import platform
import resource
import time

import torch

from .checkpoint import load_checkpoint
from .device import pick_device
from .sampler import MasSettings, sample_mas


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB; Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_mas(loaded, batch: int, frames: int, views: int, steps, device, repeats: int = 1,
             triangulation: str = "fast") -> dict:
    settings = MasSettings(views=views, steps=steps, batch_size=batch, triangulation=triangulation)
    sample_mas(loaded, list(range(batch)), frames, MasSettings(views=views, steps=2, batch_size=batch), device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    best = None
    for r in range(repeats):
        t0 = time.perf_counter()
        res = sample_mas(loaded, list(range(batch)), frames, settings, device)
        wall = time.perf_counter() - t0
        if best is None or wall < best["wall"]:
            best = {"wall": wall, "tri": res.stats["triangulation_seconds"], "joints": res.joints}
    row = {"device": device.type, "mode": triangulation, "batch": batch, "seconds_per_motion": best["wall"] / batch,
           "motions_per_second": batch / best["wall"], "triangulation_share": best["tri"] / best["wall"],
           "peak_memory_mb": peak_rss_mb(), "joints": best["joints"]}
    if device.type == "cuda":
        row["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


def run_bench(model="human", device="auto", seconds=4.0, views=5, steps=None, batch=8, gpu_batch=256,
              json_out=None, reference=True, log=print) -> list[dict]:
    dev = pick_device(device)
    loaded = load_checkpoint(model, device="cpu")
    frames = int(round(seconds * loaded.fps))
    K = steps or loaded.config.diffusion_steps
    rows = []
    if dev.type == "cpu" or device == "auto":
        cpu = torch.device("cpu")
        rows.append(time_mas(loaded, 1, frames, views, steps, cpu, repeats=2))
        if reference:
            rows.append(time_mas(loaded, 1, frames, views, steps, cpu, triangulation="reference"))
        rows.append(time_mas(loaded, batch, frames, views, steps, cpu))
    if dev.type == "cuda":
        gpu = load_checkpoint(model, device=dev)
        rows.append(time_mas(gpu, 1, frames, views, steps, dev, repeats=3))
        rows.append(time_mas(gpu, gpu_batch, frames, views, steps, dev, repeats=2))
    cpu_name = platform.processor() or platform.machine()
    log(f"MAS with model {loaded.name!r}: {seconds:g} s at {loaded.fps:g} fps ({frames} frames), {views} views, "
        f"{K} steps; torch {torch.__version__}, {torch.get_num_threads()} CPU threads ({cpu_name})"
        + (f", {torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else ""))
    log("| device | triangulation | batch | s / motion | motions / s | share in triangulation | peak memory |")
    log("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        mem = f"{r['peak_memory_mb']:.0f} MB RSS" + (f", {r['peak_gpu_memory_mb']:.0f} MB GPU"
                                                     if "peak_gpu_memory_mb" in r else "")
        log(f"| {r['device']} | {r['mode']} | {r['batch']} | {r['seconds_per_motion']:.3f} | {r['motions_per_second']:.2f} | "
            f"{100 * r['triangulation_share']:.1f}% | {mem} |")
    fast = [r for r in rows if r["mode"] == "fast" and r["batch"] == 1 and r["device"] == "cpu"]
    ref = [r for r in rows if r["mode"] == "reference"]
    if fast and ref:
        diff = 1000 * float(abs(fast[0]["joints"][0] - ref[0]["joints"][0]).max())
        log(f"reference-style vs fast, same seed: {ref[0]['seconds_per_motion'] / fast[0]['seconds_per_motion']:.1f}x "
            f"the time; largest joint difference of the final motions {diff:.1f} mm")
    for r in rows:
        r.pop("joints")
    if json_out:
        with open(json_out, "w") as f:
            json.dump({"model": loaded.name, "frames": frames, "views": views, "steps": K, "rows": rows}, f, indent=1)
    return rows
