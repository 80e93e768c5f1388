"""The guidance teacher's 2D samples of one pace class, guided away from a reference only where LO <= t < HI:
their FID against held-out 2D windows (256 samples, 1 repetition) and their 2D gesture (docs/results.md,
*Guided only at the quieter steps*). Paths are this machine's (the teacher human-pace, Bandai capture, the
evaluator); ``sampler.pace_guided`` is replaced for the run so that ``mas evaluate``'s 2D row samples so.

    python docs/guidance_interval.py CLASS SCALE REF LO HI LABEL     # e.g. 1 7 0 0 50 x7away_t50down
"""
import sys
import numpy as np
from mas_engine import sampler, eval_2d, metrics
from mas_engine.eval_3d import HUMAN_LIMBS

C, G, REF, LO, HI, LABEL = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
away = ["any"] * 4
away[C] = REF

orig = sampler.pace_guided


def patched(model, classes, scale, from_t=0, away_from=None, below=None):
    """Class C guided G x away from REF where LO <= t < HI; the card's own guidance is ignored."""
    return orig(model, classes, [G if c == C else 1.0 for c in range(classes)], from_t=LO, away_from=away,
                below=[HI] * classes)


sampler.pace_guided = patched

kept = {}
orig_rv = eval_2d.row_views


def rv(row, loaded, seeds, frames, dev, one_view, pace="data"):
    """eval_2d.row_views, keeping the sampled 2D windows for the gesture below."""
    uv = orig_rv(row, loaded, seeds, frames, dev, one_view, pace)
    kept["uv"], kept["layout"] = uv, loaded.layout
    return uv


eval_2d.row_views = rv

res = eval_2d.evaluate_2d("/work/data/models_try/human_pace.json", "/work/data/bandai", "../shared/data/bandai_train.txt",
                          num=256, reps=1, rows=["2D model"], evaluator="/work/data/runs/evaluator_human16", pace=C,
                          out=f"/work/data/eval/iv_{LABEL}", log=lambda *a: None)
lay = kept["layout"]
idx = [lay.index(n) for n in HUMAN_LIMBS]
root = [lay.index("pelvis")]
uv = kept["uv"]
g = np.array([metrics.gesture(w, idx, root) for w in uv])
row = res["rows"]["2D model"]
fid, rec, div = row["fid"][0], row["recall"][0], row["diversity"][0]
print(f"{LABEL}: FID {fid:.1f} recall {rec:.2f} diversity {div:.2f} 2D gesture p25/p50/p75 {np.percentile(g,25):.2f}/{np.percentile(g,50):.2f}/{np.percentile(g,75):.2f} over 0.3: {(g>=0.3).mean():.0%}", flush=True)
