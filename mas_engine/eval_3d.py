"""``mas evaluate-3d``: generated 3D motions against held-out real 3D capture.

The 2D diffusion model never sees 3D, but our capture has it (human: Bandai Namco; quadruped:
dog capture; human + ball: SPL free throws), so the 3D itself can be checked. Held out: the validation clips of the data split (``dataset.is_validation_clip``),
never used to build the 2D training set. For each sampler setting, N motions are generated
and compared with N real windows of the same length:
- 3D Frechet distance in a feature space that needs no learned model (limb extents and
  end-effector speeds, normalised by body height: mean and std over the motion), with the
  distance between two disjoint real sets as the floor;
- bone-length variation (coefficient of variation over frames, mean over bones; capture: 0),
- jitter (mean joint acceleration, m/s^2) and foot skating (share of frames with a foot near
  the floor sliding faster than 0.1 m/s), each next to the real data's value (over both real sets);
- the motion as a user sees it, in 4 s windows (``metrics.motion_statistics``): the share of
  nearly still windows, limb-speed quantiles, root travel, the floor (range of the lowest
  foot's height), stepping while travelling (bipeds) and leg speed (quadrupeds).
"""
from __future__ import annotations

import json
import time

import numpy as np

from rigs.keypoints import KeypointLayout

from .atomic import atomic_write
from .checkpoint import load_checkpoint
from .dataset import is_validation_clip
from .device import pick_device
from .errors import MasError
from .metrics import bone_length_variation, cut_windows, foot_skating, frechet_distance, jitter, motion_statistics
from .motion_io import resample
from .prepare import CAPTURE_KINDS, capture_files
from .sampler import MasSettings, sample_mas

# per layout: the capture kind that has its 3D, the joint that sets the height, and the
# distances (extents) and joints (speeds) that describe a motion
HUMAN_EXTENTS = [("left_wrist", "right_wrist"), ("left_ankle", "right_ankle"), ("left_wrist", "pelvis"),
                 ("right_wrist", "pelvis"), ("left_ankle", "pelvis"), ("right_ankle", "pelvis"), ("head", "pelvis"),
                 ("left_wrist", "head"), ("right_wrist", "head"), ("left_knee", "right_knee"), ("left_elbow", "right_elbow")]
COCO_EXTENTS = [(a.replace("pelvis", "left_hip").replace("head", "nose"), b.replace("pelvis", "left_hip").replace("head", "nose"))
                for a, b in HUMAN_EXTENTS]
HOOVES = ["left_front_hoof", "right_front_hoof", "left_back_hoof", "right_back_hoof"]
# the 12 limb joints whose mean speed says whether a person moves (the same names in human16 and COCO)
HUMAN_LIMBS = [f"{s}_{j}" for s in ("left", "right") for j in ("hip", "knee", "ankle", "shoulder", "elbow", "wrist")]
HORSE_LEGS = [[f"{s}_{j}" for j in joints] for s, joints in
              (("left_front", ("knee", "hoof")), ("right_front", ("knee", "hoof")),
               ("left_back", ("knee", "hoof")), ("right_back", ("knee", "hoof")))]
HORSE_BODY = ["left_front_shoulder", "right_front_shoulder", "left_back_hip", "right_back_hip"]
SPECS = {
    "human16": dict(kind="bandai", top="head", extents=HUMAN_EXTENTS,
                    speeds=["pelvis", "left_wrist", "right_wrist", "left_ankle", "right_ankle", "head"],
                    limbs=HUMAN_LIMBS, centre=["pelvis"]),
    "coco17_ball": dict(kind="spl", top="nose", extents=COCO_EXTENTS,
                        speeds=["left_hip", "left_wrist", "right_wrist", "left_ankle", "right_ankle", "nose"],
                        limbs=HUMAN_LIMBS, centre=["left_hip", "right_hip"]),
    "horse17": dict(kind="dog", top="neck", speeds=["neck", "tail", "nose"] + HOOVES,
                    limbs=HORSE_BODY + [j for leg in HORSE_LEGS for j in leg], centre=HORSE_BODY, legs=HORSE_LEGS,
                    extents=[("left_front_hoof", "right_back_hoof"), ("right_front_hoof", "left_back_hoof"),
                             ("left_front_hoof", "right_front_hoof"), ("left_back_hoof", "right_back_hoof"),
                             ("nose", "tail"), ("nose", "left_front_hoof"), ("neck", "left_front_hoof"),
                             ("neck", "right_front_hoof"), ("tail", "left_back_hoof"), ("tail", "right_back_hoof"),
                             ("nose", "neck")]),
}


def layout_spec(layout: KeypointLayout) -> dict:
    if layout.name not in SPECS:
        raise MasError(f"no 3D evaluation for layout {layout.name} (known: {', '.join(SPECS)}): it needs 3D capture")
    return SPECS[layout.name]


def features_3d(motion: np.ndarray, layout: KeypointLayout, fps: float) -> np.ndarray:
    """A scale-free description of a motion (frames x J x 3, metres, Z up): limb extents and joint
    speeds divided by the subject's height, their mean and std over the motion (human16: 34 numbers)."""
    spec, j = layout_spec(layout), layout.index
    height = np.median(motion[:, j(spec["top"]), 2] - motion[:, [j(f) for f in layout.feet], 2].min(1))
    ext = np.stack([np.linalg.norm(motion[:, j(a)] - motion[:, j(b)], axis=-1) for a, b in spec["extents"]], 1) / height
    vel = np.linalg.norm(np.diff(motion[:, [j(n) for n in spec["speeds"]]], axis=0), axis=-1) * fps / height
    return np.concatenate([ext.mean(0), ext.std(0), vel.mean(0), vel.std(0)])


def held_out_clips(folder, names_file, kind: str, fps: float, held_out: bool = True):
    """The validation clips of the split (never in a training set) of a capture kind, at ``fps``, or with
    ``held_out=False`` the training clips: (list of frames x J x 3 arrays in metres, Z up; the layout)."""

    reader, layout = CAPTURE_KINDS[kind][1], CAPTURE_KINDS[kind][2]
    clips = []
    for f in capture_files(folder, kind, names_file):
        if is_validation_clip(f.stem, 0.05) == held_out:
            joints, clip_fps, layout = reader(f)
            clips.append(resample(joints, clip_fps, fps))
    return clips, layout


def training_windows(folder, names_file, frames: int, fps: float, count: int, seed: int = 0, kind: str = "bandai"):
    """``count`` random windows (metres, Z up) of the training clips of the split, a clip drawn as often as
    it has windows (as training draws them): what the model was trained to reproduce, where the held-out
    clips are few (the dog's: 2 of 41, both livelier than the rest). None if no training clip is that long."""
    clips = [c for c in held_out_clips(folder, names_file, kind, fps, held_out=False)[0] if len(c) >= frames]
    if not clips:
        return None
    rng = np.random.default_rng(seed + 1)
    starts = np.array([len(c) - frames + 1 for c in clips], dtype=float)
    out = []
    for k in rng.choice(len(clips), count, p=starts / starts.sum()):
        s = int(rng.integers(0, len(clips[k]) - frames + 1))
        out.append(clips[k][s:s + frames])
    return np.stack(out)


def real_windows(folder, names_file, frames: int, fps: float, count: int, seed: int = 0, kind: str = "bandai"):
    """Two sets of ``count`` random windows (metres, Z up) from two disjoint halves of the held-out
    capture clips (the validation clips of the split), several windows per clip."""
    clips, layout = held_out_clips(folder, names_file, kind, fps)
    clips = [c for c in clips if len(c) >= frames]
    rng = np.random.default_rng(seed)
    if len(clips) < 2:
        raise MasError(f"fewer than 2 held-out clips of at least {frames} frames in {folder}")
    order = rng.permutation(len(clips))
    sets = []
    for half in (order[0::2], order[1::2]):
        out = []
        for k in range(count):
            c = clips[half[k % len(half)]]
            s = int(rng.integers(0, len(c) - frames + 1))
            out.append(c[s:s + frames])
        sets.append(np.stack(out))
    return sets[0], sets[1], layout, len(clips)


def summarise(motions: np.ndarray, layout: KeypointLayout, fps: float) -> dict:
    """Bone-length variation, jitter and foot skating, on the body (optional joints such as a ball,
    NaN in capture where unseen, are left out)."""
    layout_spec(layout)                     # a layout without 3D capture is refused here
    feet = [layout.index(f) for f in layout.feet]
    body = [j for j, n in enumerate(layout.joints) if n not in layout.optional]
    return {"bone_cv": float(np.mean([bone_length_variation(m, layout) for m in motions])),
            "jitter": float(np.mean([jitter(m[:, body], fps) for m in motions])),
            "skating": float(np.mean([foot_skating(m[:, feet], fps) for m in motions]))}


def motion_summary(motions: np.ndarray, layout: KeypointLayout, fps: float, window_s: float = 4.0) -> dict:
    """``metrics.motion_statistics`` of motions (N x frames x J x 3) cut into windows of ``window_s`` seconds."""
    spec, j = layout_spec(layout), layout.index
    frames = int(round(window_s * fps))
    windows = np.concatenate([cut_windows(m, frames) for m in motions])
    legs = [[j(n) for n in leg] for leg in spec["legs"]] if "legs" in spec else None
    return motion_statistics(windows, fps, [j(n) for n in spec["limbs"]], [j(n) for n in layout.feet],
                             [j(n) for n in spec["centre"]], legs)


def still_moves(m: dict) -> str:
    """How much a row's nearly still windows move, as a table cell ("-" without one, or in an older report)."""
    g, w = m.get("still_gesture", {}).get("p50", float("nan")), m.get("still_sway", {}).get("p50", float("nan"))
    if np.isnan(g):
        return "-"
    return f"{g:.2f} / {m['still_gesture']['p90']:.2f}, {w:.2f}"


def visible(m: dict) -> str:
    """The share of a row's windows that visibly move, as a table cell ("-" in an older report)."""
    return f"{100 * m['visible_share']:.0f}%" if "visible_share" in m else "-"


def motion_table(results: dict) -> list[str]:
    """The motion statistics of each row as Markdown lines."""
    first = next(iter(results.values()))["motion"]
    biped, legs = "step_lift" in first, "leg_speed" in first
    head = ("| row | nearly still | limb speed p25 / p50 / p75 / p90 (m/s) | root travel p50 / p90 (m/s) | "
            "lowest foot's range p50 / p90 / p95 (m) | within 5 cm | nearly still: gesture p50 / p90, sway p50 (m) | "
            "visibly moves")
    head += " | travelling | step lift p10 / p50 (m) | stepping" if biped else ""
    head += " | leg speed p25 / p50 / p75 / p90 (m/s)" if legs else ""
    lines = [head + " |", "|---" + "|---:" * (head.count("|") - 1) + "|"]
    q = lambda d, ks: " / ".join(f"{d[k]:.2f}" for k in ks)  # noqa: E731
    for name, r in results.items():
        m = r["motion"]
        line = (f"| {name} | {100 * m['still_share']:.0f}% | {q(m['limb_speed'], ('p25', 'p50', 'p75', 'p90'))} | "
                f"{q(m['root_travel'], ('p50', 'p90'))} | {q(m['floor_range'], ('p50', 'p90', 'p95'))} | "
                f"{100 * m['floor_flat_share']:.0f}% | {still_moves(m)} | {visible(m)}")
        if biped:
            line += (f" | {100 * m['travelling_share']:.0f}% | {q(m['step_lift'], ('p10', 'p50'))} | "
                     f"{100 * m['stepping_share']:.0f}%")
        if legs:
            line += f" | {q(m['leg_speed'], ('p25', 'p50', 'p75', 'p90'))}"
        lines.append(line + " |")
    return lines


# the paper's MAS and its ablations (no bone prior, no floor prior, no foot lock, one 3D noise at every level, every step
# adding its noise, the model's own travel); rigid bones (and the model card's
# floor prior); the product's default mas5lock (rigid bones, the card's floor prior, the foot lock)
PAPER = dict(rigid_bones=False, floor=False, foot_lock=False, view_noise_share=0.0, noiseless_share=0.0,
             travel="model")
TRAINING_ROW = "real (training clips)"     # windows of the clips the model learnt from (no Frechet distance)
ROWS = {"mas5": dict(views=5, **PAPER), "mas2": dict(views=2, **PAPER),
        "no3dnoise": dict(views=5, noise_3d=False, **PAPER), "mas5rigid": dict(views=5, rigid_bones=True, foot_lock=False),
        "mas5lock": dict(views=5, rigid_bones=True, foot_lock=True),
        "mas5lockany": dict(views=5, rigid_bones=True, foot_lock=True, pace="any"),   # a pace model not told
        "mas5lockg1": dict(views=5, rigid_bones=True, foot_lock=True, pace_guidance=1.0),  # its pace not guided
        "mas5lockhalf": dict(views=5, rigid_bones=True, foot_lock=True, pace_guidance_from=0.5),  # guided at t >= 50
        "mas5lockmodel": dict(views=5, rigid_bones=True, foot_lock=True, travel="model"),  # the model's own travel
        "mas5lock3d": dict(views=5, rigid_bones=True, foot_lock=True, view_noise_share=0.0),  # one 3D noise throughout
        "mas5locknoisy": dict(views=5, rigid_bones=True, foot_lock=True, noiseless_share=0.0),  # every step adds noise
        "mas5floor": dict(views=5, rigid_bones=True, floor=True, foot_lock=False),
        "mas5feet": dict(views=5, rigid_bones=True, travel="feet", foot_lock=False),
        "mas5floorfeet": dict(views=5, rigid_bones=True, floor=True, travel="feet", foot_lock=False)}


def evaluate_3d(model="human", capture=None, names_file=None, num=128, seconds=4.0, rows=("mas5", "mas5rigid", "mas5lock", "mas2", "no3dnoise"),
                seed=0, device="auto", json_out=None, log=print, training_clips: bool = True) -> dict:

    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise MasError(f"unknown row(s) {', '.join(unknown)}; rows: {', '.join(ROWS)}")
    dev = pick_device(device)
    loaded = load_checkpoint(model, device=dev)
    frames = int(round(seconds * loaded.fps))
    real_a, real_b, layout, n_clips = real_windows(capture, names_file, frames, loaded.fps, num, seed,
                                                   layout_spec(loaded.layout)["kind"])
    feat = lambda ms: np.stack([features_3d(m, layout, loaded.fps) for m in ms])  # noqa: E731
    fa, fb = feat(real_a), feat(real_b)
    real = np.concatenate([real_a, real_b])
    # the Frechet distance compares A with B (the floor); bones, jitter and skating are over both, as the
    # motion statistics are: over B alone a few walking windows moved skating by 5 points between seeds
    results = {"real (held-out A vs B)": dict(summarise(real, layout, loaded.fps), fd=frechet_distance(fa, fb),
                                             motion=motion_summary(real, layout, loaded.fps))}
    trained_on = training_windows(capture, names_file, frames, loaded.fps, 2 * num, seed,
                                  layout_spec(loaded.layout)["kind"]) if training_clips else None
    if trained_on is not None:
        # no Frechet distance: the features divide by the subject's height, which a dog lying down (in the
        # training clips, not the held-out ones) hardly has, so a few windows would decide it (1,933 against 14.8)
        results[TRAINING_ROW] = dict(summarise(trained_on, layout, loaded.fps), fd=None,
                                     motion=motion_summary(trained_on, layout, loaded.fps))
    for name in rows:
        t0 = time.perf_counter()
        # evaluation seed s: motions s*num .. s*num + num - 1, so two evaluation seeds share no motion
        res = sample_mas(loaded, list(range(seed * num, seed * num + num)), frames, MasSettings(**ROWS[name]), dev)
        results[name] = dict(summarise(res.joints, layout, loaded.fps), fd=frechet_distance(fa, feat(res.joints)),
                             motion=motion_summary(res.joints, layout, loaded.fps), seconds=time.perf_counter() - t0)
    log(f"3D evaluation of {loaded.name!r}: {num} motions of {seconds:g} s per row, against {num} windows of "
        f"held-out capture (A; B: {num} more from other clips; {n_clips} validation clips of the split)")
    log("| row | 3D Frechet distance | bone-length variation | jitter (m/s^2) | foot skating |")
    log("|---|---:|---:|---:|---:|")
    for name, r in results.items():
        fd = "-" if r["fd"] is None else f"{r['fd']:.3f}"
        log(f"| {name} | {fd} | {100 * r['bone_cv']:.2f}% | {r['jitter']:.2f} | {100 * r['skating']:.1f}% |")
    log(f"\nMotion, in windows of 4 s (real: {len(real)} windows, A and B):")
    for line in motion_table(results):
        log(line)
    if json_out:
        atomic_write(json_out, lambda tmp: tmp.write_text(json.dumps(results, indent=1)))
    return results
