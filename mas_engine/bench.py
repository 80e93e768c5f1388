"""``mas bench``: how long MAS takes with a model, as a printed table.

Rows: CPU at batch 1 and at a batch of motions (seconds per motion, share of the time in
triangulation, peak resident memory of the process so far), and on a GPU when there is
one, motions per second at a large batch. A short warm-up run comes first so one-time
costs (allocations, thread pools) are not counted.

``mas bench --scaling``: time and memory as motion length, views, batch size and diffusion
steps each vary from a base point, with growth exponents and a plot. Working memory on a CPU
is the resident memory above the process's own before the run; on a GPU, the peak allocated.
"""
from __future__ import annotations

import json
import platform
import resource
import time

import numpy as np
import torch

from . import validate
from .atomic import atomic_write
from .checkpoint import load_checkpoint
from .device import pick_device
from .sampler import MasSettings, check_request, sample_mas


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB; Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_mas(loaded, batch: int, frames: int, views: int, steps, device, repeats: int = 1,
             triangulation: str = "fast", rigid_bones: bool = False) -> dict:
    # by default the paper's chain (no bone prior), as the reference-style mode runs it, so that
    # the two modes' motions can be compared
    settings = MasSettings(views=views, steps=steps, batch_size=batch, triangulation=triangulation, rigid_bones=rigid_bones)
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
    row = {"device": device.type, "mode": triangulation + (" + rigid bones" if rigid_bones else ""), "batch": batch, "seconds_per_motion": best["wall"] / batch,
           "motions_per_second": batch / best["wall"], "triangulation_share": best["tri"] / best["wall"],
           "peak_memory_mb": peak_rss_mb(), "joints": best["joints"]}
    if device.type == "cuda":
        row["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


def model_flops_per_motion(loaded, frames: int, views: int, steps: int) -> float:
    """Floating-point operations of the denoiser for one MAS motion: one call on ``views`` 2D
    motions, counted by torch's FlopCounterMode (matrix products), times the steps. The fused
    inference path of torch's transformer layers is invisible to the counter: off while counting."""
    from torch.utils.flop_counter import FlopCounterMode

    p = next(loaded.model.parameters())
    x = torch.zeros(views, frames, loaded.config.num_joints, 2, device=p.device)
    t = torch.zeros(views, dtype=torch.long, device=p.device)
    fused = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            loaded.model(x, t)
    finally:
        torch.backends.mha.set_fastpath_enabled(fused)
    return float(counter.get_total_flops()) * steps


def matmul_flops_per_second(device, n: int = 1024, seconds: float = 0.5) -> float:
    """Measured float32 matrix-multiply throughput of ``device`` (n x n products, best of a few)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or best == 0.0:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for _ in range(4):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = max(best, 4 * 2 * n ** 3 / (time.perf_counter() - t0))
    return best


def run_bench(model="human", device="auto", seconds=4.0, views=5, steps=None, batch=8, gpu_batch=256,
              json_out=None, reference=True, log=print) -> list[dict]:
    seconds = validate.number("--seconds", seconds, 1e-3, 3600.0)
    dev = pick_device(device)
    loaded = load_checkpoint(model, device="cpu")
    frames = int(round(seconds * loaded.fps))
    check_request(loaded, frames, MasSettings(views=views, steps=steps, batch_size=batch))
    K = steps or loaded.config.diffusion_steps
    rows = []
    if dev.type == "cpu" or device == "auto":
        cpu = torch.device("cpu")
        rows.append(time_mas(loaded, 1, frames, views, steps, cpu, repeats=2))
        rows.append(time_mas(loaded, 1, frames, views, steps, cpu, repeats=2, rigid_bones=True))
        if reference:
            rows.append(time_mas(loaded, 1, frames, views, steps, cpu, triangulation="reference"))
        rows.append(time_mas(loaded, batch, frames, views, steps, cpu))
    if dev.type == "cuda":
        gpu = load_checkpoint(model, device=dev)
        rows.append(time_mas(gpu, 1, frames, views, steps, dev, repeats=3))
        if reference:
            rows.append(time_mas(gpu, 1, frames, views, steps, dev, triangulation="reference"))
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
    for kind in ("cpu", "cuda"):
        fast = [r for r in rows if r["mode"] == "fast" and r["batch"] == 1 and r["device"] == kind]
        ref = [r for r in rows if r["mode"] == "reference" and r["device"] == kind]
        if fast and ref:
            diff = 1000 * float(abs(fast[0]["joints"][0] - ref[0]["joints"][0]).max())
            log(f"{kind}: reference-style vs fast, same seed: {ref[0]['seconds_per_motion'] / fast[0]['seconds_per_motion']:.1f}x "
                f"the time; largest joint difference of the final motions {diff:.1f} mm")
    flop = model_flops_per_motion(loaded, frames, views, K)
    floors = {}
    for kind in dict.fromkeys(r["device"] for r in rows):
        d = torch.device(kind) if kind == "cpu" else dev
        tput = matmul_flops_per_second(d)
        floors[kind] = {"matmul_flops_per_second": tput, "floor_seconds_per_motion": flop / tput}
        best = min(r["seconds_per_motion"] for r in rows if r["device"] == kind and r["mode"] == "fast")
        log(f"{kind}: the model needs {flop / 1e9:.1f} GFLOP per motion ({K} steps x {views} views); this {kind}'s "
            f"matrix multiply runs at {tput / 1e9:.0f} GFLOP/s, so the floor is {flop / tput:.3f} s per motion; "
            f"the fast path's best is {best / (flop / tput):.1f}x that")
    for r in rows:
        r.pop("joints")
    if json_out:
        summary = {"model": loaded.name, "frames": frames, "views": views, "steps": K, "rows": rows,
                   "flop_per_motion": flop, "floors": floors}
        atomic_write(json_out, lambda tmp: tmp.write_text(json.dumps(summary, indent=1)))
    return rows


# ---------------------------------------------------------------- scaling (mas bench --scaling)

class _PeakRss:
    """Peak resident memory (MB) while the block runs, above what it was when the block began:
    /proc/self/statm sampled every 5 ms in a thread (ru_maxrss only ever grows). Memory freed
    earlier is first handed back to the system (glibc's malloc_trim), so the base is honest."""

    def __enter__(self):
        import ctypes
        import gc
        import os
        import threading

        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
        self._page = os.sysconf("SC_PAGE_SIZE") / 2**20
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _rss(self) -> float:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self._page
        except OSError:          # not Linux: no per-run figure
            return 0.0

    def _poll(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def extra_mb(self) -> float:
        return self.peak - self.base


SWEEPS_CPU = {"seconds": [1, 2, 4, 8, 15, 30, 60], "views": [2, 3, 5, 8, 12, 16], "batch": [1, 2, 4, 8, 16, 32],
              "steps": [10, 25, 50, 100]}
SWEEPS_GPU = dict(SWEEPS_CPU, batch=[1, 4, 16, 64, 256, 1024])
BASE = {"seconds": 4.0, "views": 5, "batch": 1, "steps": None}


def time_point(loaded, device, seconds, views, batch, steps) -> dict:
    """One MAS run (after a short warm-up of the same shape): seconds per motion and peak memory."""
    model = loaded        # beyond the model's own length: blended windows (windows.py), as mas generate makes them
    frames = int(round(seconds * model.fps))
    seeds = list(range(batch))
    settings = MasSettings(views=views, steps=steps, batch_size=batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    with _PeakRss() as mem:        # the warm-up allocates what the run reuses: count both
        sample_mas(model, seeds, frames, MasSettings(views=views, steps=2, batch_size=batch), device)
        t0 = time.perf_counter()
        res = sample_mas(model, seeds, frames, settings, device)
        wall = time.perf_counter() - t0
    row = {"seconds": seconds, "views": views, "batch": batch, "steps": steps or model.config.diffusion_steps,
           "wall_s": wall, "seconds_per_motion": wall / batch, "triangulation_share": res.stats["triangulation_seconds"] / wall,
           "extra_rss_mb": mem.extra_mb, "windowed": frames > model.config.max_frames}
    if device.type == "cuda":
        row["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


def growth_exponent(xs, ys) -> float:
    """Slope of log(y) against log(x): 1 is linear growth, 2 quadratic."""
    return float(np.polyfit(np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float)), 1)[0])


def run_scaling(model="human", device="auto", png=None, json_out=None, sweeps=None, log=print) -> dict:
    """Time and memory of MAS as each of motion length, views, batch size and diffusion steps is
    varied from the base point (4 s, 5 views, batch 1, all steps); a table per sweep, growth
    exponents, and optionally a PNG of the four curves."""
    dev = pick_device(device)
    loaded = load_checkpoint(model, device=dev)
    sweeps = sweeps or (SWEEPS_GPU if dev.type == "cuda" else SWEEPS_CPU)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    log(f"MAS scaling with model {loaded.name!r} on {dev.type} ({where}); torch {torch.__version__}; base point: "
        f"4 s, 5 views, batch 1, {loaded.config.diffusion_steps} steps")
    result = {"model": loaded.name, "device": dev.type, "where": where, "sweeps": {}}
    for var, values in sweeps.items():
        rows = []
        for v in values:
            point = dict(BASE, **{var: v})
            rows.append(time_point(loaded, dev, point["seconds"], point["views"], point["batch"], point["steps"]))
        mem_key = "peak_gpu_mb" if dev.type == "cuda" else "extra_rss_mb"
        cost = "seconds_per_motion" if var == "batch" else "wall_s"
        result["sweeps"][var] = {"rows": rows, "exponent": growth_exponent(values, [r[cost] for r in rows])}
        log(f"\n{var} (growth exponent of {'time per motion' if var == 'batch' else 'time'}: "
            f"{result['sweeps'][var]['exponent']:.2f})")
        log(f"| {var} | wall (s) | s / motion | motions / s | share in triangulation | working memory (MB) |")
        log("|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            flag = " *" if r["windowed"] else ""
            log(f"| {r[var]:g}{flag} | {r['wall_s']:.3f} | {r['seconds_per_motion']:.3f} | {r['batch'] / r['wall_s']:.2f} | "
                f"{100 * r['triangulation_share']:.1f}% | {r[mem_key]:.0f} |")
    if any(r["windowed"] for s in result["sweeps"].values() for r in s["rows"]):
        log(f"\n* longer than the model's {loaded.config.max_frames} frames: made in overlapping windows")
    if json_out:
        atomic_write(json_out, lambda tmp: tmp.write_text(json.dumps(result, indent=1)))
    if png:
        plot_scaling(result, png)
        log(f"wrote {png}")
    return result


def plot_scaling(result: dict, png) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mem_key = "peak_gpu_mb" if result["device"] == "cuda" else "extra_rss_mb"
    labels = {"seconds": "motion length (s)", "views": "views", "batch": "batch size (motions per call)",
              "steps": "diffusion steps"}
    fig, axes = plt.subplots(1, len(result["sweeps"]), figsize=(4 * len(result["sweeps"]), 3.4))
    for ax, (var, sweep) in zip(np.atleast_1d(axes), result["sweeps"].items()):
        xs = [r[var] for r in sweep["rows"]]
        cost = "seconds_per_motion" if var == "batch" else "wall_s"
        ax.plot(xs, [r[cost] for r in sweep["rows"]], "o-", color="tab:blue")
        ax.set_xlabel(labels[var])
        ax.set_ylabel("seconds per motion" if var == "batch" else "seconds", color="tab:blue")
        if var == "batch":
            ax.set_xscale("log", base=2)
        ax.set_title(f"exponent {sweep['exponent']:.2f}", fontsize=9)
        ax2 = ax.twinx()
        ax2.plot(xs, [r[mem_key] for r in sweep["rows"]], "s--", color="tab:red")
        ax2.set_ylabel("peak GPU memory (MB)" if mem_key == "peak_gpu_mb" else "working memory (MB)", color="tab:red")
    fig.suptitle(f"MAS on {result['device']} ({result['where']}), model {result['model']}", fontsize=10)
    fig.tight_layout()
    atomic_write(png, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
