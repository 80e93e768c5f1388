"""Long motions, loops and constraints, measured (docs/results.md, 'Any length'):

    python docs/bench_long.py [--model human] [--num 16] [--json docs/long_human.json]

1. time and peak memory of one 4 s and one 60 s motion;
2. seams of 30 s motions: the largest acceleration within 0.25 s of each place where windows meet
   (blended windows, and solo ones at high noise) against the same around frames more than 0.5 s
   from any such place (``metrics.seam_ratio``; 1 = no seam);
3. the motion statistics of 30 s motions cut into 4 s windows (first, last, all) next to 4 s motions;
4. loops: the step and the velocity change from the last frame to the first against the 95th
   percentiles inside (``metrics.loop_closure``);
5. constraints: the error of constrained joints at their frames, the seam ratio around keys, and
   stillness against unconstrained motions.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mas_engine import constraints as C  # noqa: E402
from mas_engine.checkpoint import load_checkpoint  # noqa: E402
from mas_engine.eval_3d import motion_summary  # noqa: E402
from mas_engine.metrics import STILL_SPEED, acceleration, cut_windows, loop_closure, mean_speed, seam_ratio  # noqa: E402
from mas_engine.sampler import MasSettings, sample_mas, window_joins  # noqa: E402


def timed(loaded, seeds, frames, settings=None, constraints=None):
    t = time.perf_counter()
    res = sample_mas(loaded, seeds, frames, settings or MasSettings(), "cpu", constraints=constraints)
    return res.joints, time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="human")
    ap.add_argument("--num", type=int, default=16)
    ap.add_argument("--seed", type=int, default=5000)
    ap.add_argument("--json", default=None)
    ap.add_argument("--overlap", type=float, default=MasSettings().window_overlap_s, help="seconds windows overlap")
    ap.add_argument("--window", type=int, default=None,
                    help="frames of the longest window of a long motion (default: MasSettings' own)")
    ap.add_argument("--only", default="speed,long,loops,constraints", help="which parts to run")
    a = ap.parse_args(argv)
    m = load_checkpoint(a.model)
    fps, layout = m.fps, m.layout
    W = min(a.window or MasSettings().window_frames or m.config.max_frames, m.config.max_frames)
    seeds = list(range(a.seed, a.seed + a.num))
    limbs = [layout.index(n) for n in layout.joints if any(k in n for k in ("hip", "knee", "ankle", "shoulder", "elbow", "wrist"))]
    out = {"model": m.name, "num": a.num, "overlap_s": a.overlap}

    parts = a.only.split(",")
    # 1. speed and memory (after a warm-up of each length, as mas bench does)
    if "speed" in parts:
        speed(m, fps, a, out)
    if "long" in parts:
        long_motions(m, fps, W, layout, seeds, limbs, a, out)
    if "loops" in parts:
        loops(m, fps, seeds, out, limbs)
    if "constraints" in parts:
        constrained(m, fps, layout, seeds, limbs, out)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


def speed(m, fps, a, out):
    timed(m, [0], int(4 * fps), MasSettings(steps=2))
    timed(m, [0], int(60 * fps), MasSettings(steps=2))
    _, t4 = timed(m, [0], int(4 * fps))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _, t60 = timed(m, [0], int(60 * fps), MasSettings(window_overlap_s=a.overlap))
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["speed"] = {"4s_s": t4, "60s_s": t60, "ratio": t60 / t4, "peak_rss_mb_after_60s": rss1, "peak_rss_mb_before": rss0}
    print(f"4 s: {t4:.2f} s; 60 s: {t60:.2f} s ({t60 / t4:.1f}x); peak RSS {rss0:.0f} -> {rss1:.0f} MB")


def long_motions(m, fps, W, layout, seeds, limbs, a, out):
    """2, 3. 30 s motions: seams and motion statistics per window."""
    F30 = int(30 * fps)
    settings = MasSettings(window_overlap_s=a.overlap, window_frames=W)
    long, t30 = timed(m, seeds, F30, settings)
    joins = window_joins(m, F30, settings)                   # where blended windows meet, and where solo ones did
    half_s = int(round(0.5 * fps))                           # reference frames: more than 0.5 s from any seam
    far = [f for f in range(half_s, F30 - half_s) if min(abs(f - j) for j in joins) > half_s]
    ratios = [seam_ratio(x, joins, far, fps, span_s=0.5) for x in long]
    short, _ = timed(m, seeds, int(4 * fps))
    frames4 = int(4 * fps)
    out["overlap_s"] = a.overlap
    stats = {"4 s motions": motion_summary(short, layout, fps),
             "30 s motions, all 4 s windows": motion_summary(long, layout, fps),
             "30 s motions, first window": motion_summary(long[:, :frames4], layout, fps),
             "30 s motions, last window": motion_summary(long[:, -frames4:], layout, fps)}
    per_window = [[mean_speed(w[:, limbs], fps) for w in cut_windows(x, frames4)] for x in long]
    root_span = [float(np.ptp(x[:, layout.root, :2], axis=0).max()) for x in long]
    out["seams"] = {"joins": joins, "ratio_median": float(np.median(ratios)), "ratio_max": float(np.max(ratios)),
                    "ratios": ratios, "seconds_per_30s_motion": t30 / a.num}
    out["long_stats"] = stats
    out["limb_speed_by_window"] = np.mean(per_window, 0).tolist()
    out["still_share_by_window"] = (np.array(per_window) < STILL_SPEED).mean(0).tolist()
    out["root_span_30s_m"] = {"p50": float(np.median(root_span)), "max": float(np.max(root_span))}
    print(f"30 s: seam ratio median {np.median(ratios):.2f}, max {np.max(ratios):.2f} over {a.num} motions "
          f"({len(joins)} joins each); {t30 / a.num:.1f} s a motion")
    print("limb speed by 4 s window (mean over motions):", " ".join(f"{v:.2f}" for v in out["limb_speed_by_window"]))
    print("| set | nearly still | limb speed p25 / p50 / p75 / p90 | root travel p50 / p90 | floor p95 | travelling |")
    print("|---|---:|---:|---:|---:|---:|")
    for k, s in stats.items():
        q = s["limb_speed"]
        print(f"| {k} | {100 * s['still_share']:.0f}% | {q['p25']:.2f} / {q['p50']:.2f} / {q['p75']:.2f} / {q['p90']:.2f} | "
              f"{s['root_travel']['p50']:.2f} / {s['root_travel']['p90']:.2f} | {s['floor_range']['p95']:.2f} | "
              f"{100 * s['travelling_share']:.0f}% |")


def loops(m, fps, seeds, out, limbs):
    """4. Loops: the seam against the frame-to-frame changes inside, and how much they move."""
    result = {}
    for sec in (2, 4, 8):
        F = int(sec * fps) + int(sec * fps) % 2
        xs, _ = timed(m, seeds, F, MasSettings(loop=True))
        c = [loop_closure(x) for x in xs]
        ok = np.mean([(v["step"] <= v["step_p95"]) and (v["velocity_change"] <= v["velocity_change_p95"]) for v in c])
        inside = float(np.mean([v["inside_within_p95"] for v in c]))
        speed = np.array([mean_speed(x[:, limbs], fps) for x in xs])
        still = float(np.mean(speed < STILL_SPEED))
        result[f"{sec}s"] = {"closures": c, "share_within_p95": float(ok), "inside_frames_within_p95": inside,
                            "step_over_p95_median": float(np.median([v["step"] / max(v["step_p95"], 1e-9) for v in c])),
                            "dv_over_p95_median": float(np.median([v["velocity_change"] / max(v["velocity_change_p95"], 1e-9) for v in c])),
                            "limb_speed_mean": float(speed.mean()), "still_share": still}
        print(f"loop {sec} s: seam within the inside's 95th percentiles in {100 * ok:.0f}% (inside frames: "
              f"{100 * inside:.0f}%) "
              f"(step / p95 median {result[f'{sec}s']['step_over_p95_median']:.2f}, "
              f"velocity change / p95 median {result[f'{sec}s']['dv_over_p95_median']:.2f}); "
              f"limb speed {speed.mean():.2f} m/s, nearly still {100 * still:.0f}%")
    out["loops"] = result


def constrained(m, fps, layout, seeds, limbs, out):
    """5. Constraints: start from the end of a generated motion, end at another's first pose, keys
    (two full poses), a root path. A pop near a key: the largest acceleration within 0.25 s of
    where a constraint starts or ends, over the median of the same at frames at least 0.5 s from
    any (``metrics.seam_ratio``; 1 = no pop)."""
    F = int(4 * fps)
    short, _ = timed(m, seeds, F)
    src = {"joints": short[0], "joint_names": np.array(layout.joints), "fps": fps}
    key = {"joints": np.full((F, layout.num_joints, 3), np.nan), "joint_names": np.array(layout.joints)}
    key["joints"][0], key["joints"][F // 2] = short[1][0], short[2][F // 3]
    F12 = int(12 * fps)
    end_pose = {"joints": short[3][:1], "joint_names": np.array(layout.joints)}
    kinds = {"start from a motion's end": (C.start_from(src, F, layout, fps), F),
             "end at a pose": (C.end_at(end_pose, F, layout, fps), F),
             "end at a pose, 12 s (in windows)": (C.end_at(end_pose, F12, layout, fps), F12),
             "in-between: two keyed poses": (C.keyframes(key, F, layout, fps), F),
             "root path (3 m, then 3 m left)": (C.root_path(np.array([[0, 0], [3, 0], [3, 3]]), F, layout, fps), F)}
    cons = {}
    for name, (c, frames) in kinds.items():
        xs, _ = timed(m, seeds, frames, constraints=c)
        err = np.concatenate([np.abs(x - c.targets)[c.mask].reshape(-1) for x in xs])
        keyed = set(np.nonzero(c.mask.any((1, 2)))[0].tolist())
        edges = [k for k in keyed if k - 1 not in keyed or k + 1 not in keyed]
        far = [f for f in range(frames) if all(abs(f - k) > fps / 2 for k in edges)]
        ok = bool(edges and far and len(keyed) < frames)
        ratio = float(np.median([seam_ratio(x, edges, far, fps, span_s=0.5) for x in xs])) if ok else float("nan")
        # the same without the accelerations wholly inside the given frames (a start's source's own)
        own = float(np.median([seam_ratio(x, edges, far, fps, span_s=0.5, given=sorted(keyed)) for x in xs])) \
            if ok else float("nan")
        speed = [mean_speed(x[:, limbs], fps) for x in xs]
        cons[name] = {"error_m": {"p50": float(np.median(err)), "p95": float(np.percentile(err, 95)), "max": float(err.max())},
                      "seam_ratio": ratio, "seam_ratio_generated_frames": own, "limb_speed_mean": float(np.mean(speed)),
                      "still_share": float(np.mean(np.array(speed) < STILL_SPEED))}
        print(f"{name}: error p50 {1000 * np.median(err):.1f} mm, p95 {1000 * np.percentile(err, 95):.1f} mm, max "
              f"{1000 * err.max():.1f} mm; seam ratio {ratio:.2f} ({own:.2f} without the given frames' own); limb speed {np.mean(speed):.2f} m/s, still "
              f"{100 * np.mean(np.array(speed) < STILL_SPEED):.0f}%")
    free = [mean_speed(x[:, limbs], fps) for x in short]
    cons["unconstrained"] = {"limb_speed_mean": float(np.mean(free)), "still_share": float(np.mean(np.array(free) < STILL_SPEED))}
    print(f"unconstrained: limb speed {np.mean(free):.2f} m/s, still {100 * np.mean(np.array(free) < STILL_SPEED):.0f}%")
    out["constraints"] = cons


if __name__ == "__main__":
    main()
