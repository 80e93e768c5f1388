"""The ``mas`` command line: prepare data, train, generate, benchmark, list models.

Every user-facing problem is a MasError, printed as one line (``mas: error: ...``) with
exit status 2; progress bars go to stderr. Each command imports what it needs when it runs, so
that ``mas --help`` and a mistyped command answer at once, without loading torch.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from mas_engine.catalogue import FRAMES, OUTPUTS, PACE_MEASURES, PACES, PREDICTIONS, SCHEDULES, TRAVELS
from mas_engine.errors import Cancelled, MasError


def _positive_int(s: str) -> int:
    v = int(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s}")
    return v


def _nonnegative_int(s: str) -> int:
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {s}")
    return v


def _positive_float(s: str) -> float:
    v = float(s)
    if not v > 0 or v != v:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {s}")
    return v


def _time_scales(s: str) -> list[float]:
    """Playback speeds, separated by commas, each from 0.25 to 4."""
    try:
        v = [float(x) for x in s.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be numbers separated by commas (1,1.5), got {s}") from None
    if not all(0.25 <= k <= 4 for k in v) or len(set(v)) != len(v):
        raise argparse.ArgumentTypeError(f"each speed must be from 0.25 to 4 and given once, got {s}")
    return v


def _numbers(s: str) -> float | list[float]:
    """One number, or several separated by commas (one a pace class)."""
    try:
        v = [float(x) for x in s.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, or numbers separated by commas, got {s}") from None
    return v[0] if len(v) == 1 else v


def _share(s: str) -> float:
    v = float(s)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be a share from 0 to 1, got {s}")
    return v


def _smooth_frames(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of frames, got {s!r}") from None
    if not 0 <= v <= 30:
        raise argparse.ArgumentTypeError(f"must be 0 (no smoothing) to 30 frames, got {s} (1.5 suits 30 fps)")
    return v


def _nonnegative_float(s: str) -> float:
    v = float(s)
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of 0 or more, got {s}")
    return v


_STOP = threading.Event()      # set by SIGTERM: commands that can stop between batches do so
_GRACEFUL = []                 # non-empty while such a command runs


def _pace(text: str):
    """--pace: 'data', 'training', 'any' or a class number (checked against the model before work starts)."""
    if text in PACES:
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not 'data', 'training', 'any' or a class number") from None


def cmd_generate(a) -> None:
    from .generate import generate_to_files

    _GRACEFUL.append(True)
    generate_to_files(cancel=_STOP.is_set, model=a.model, num=a.num, seconds=a.seconds, seed=a.seed, views=a.views, steps=a.steps,
                      device=a.device, out=a.out, batch_size=a.batch_size, noise_3d=not a.no_3d_noise,
                      rigid_bones=not a.no_rigid_bones, elevation_deg=a.elevation, distance_m=a.distance, preview=a.preview, formats=a.format,
                      rig=a.rig, overwrite=a.overwrite, loop=a.loop,
                      loop_travel=a.loop_travel, start_from=a.start_from, continue_from=a.continue_from,
                      end_at=a.end_at, keys=a.keys, path=a.path, floor=a.floor,
                      foot_lock=a.foot_lock, pace=a.pace, pace_guidance=a.pace_guidance,
                      view_noise_share=a.view_noise_share, noiseless_share=a.noiseless_share, travel=a.travel)


def cmd_retarget(a) -> None:
    from retarget.retarget import check_rig, retarget, write_track
    from mas_engine.motion_io import load_motion

    suffix = Path(a.out).suffix.lower()
    if suffix not in (".bvh", ".npz", ".fbx", ".glb"):
        raise MasError(f"output {a.out}: use a .bvh, .npz, .fbx or .glb file name")
    if suffix in (".fbx", ".glb"):
        from .generate import blender_files

        blender_files()
    if os.path.lexists(a.out) and not a.overwrite:
        raise MasError(f"{a.out} exists; pass --overwrite to replace it, or choose another name")
    motion = load_motion(a.motion)
    check_rig(a.rig)
    track, report = retarget(motion, rig=a.rig, in_place=a.in_place, foot_lock=not a.no_foot_lock,
                             smpl_model=a.smpl_model)
    if suffix in (".fbx", ".glb"):
        blender_files().write_track_file(a.out, track, overwrite=a.overwrite)
    else:
        write_track(a.out, track, overwrite=a.overwrite)
    line = f"wrote {a.out}: {len(track.armature.bones)} bones, {len(track.root)} frames; keypoint error " \
           f"{1000 * report['marker_error_m']:.1f} mm"
    if "skating_before" in report:
        line += f"; foot skating {100 * report['skating_before']:.1f}% -> {100 * report['skating_after']:.1f}%"
    print(line)


def cmd_prepare(a) -> None:
    from mas_engine.dataset import MonocularConfig
    from mas_engine.prepare import prepare_2d, prepare_capture

    cfg = MonocularConfig(root_motion=not a.in_place, seed=a.seed, max_frames=a.max_frames, min_frames=a.min_frames,
                          stride_seconds=a.stride, full_share=a.full_share,
                          smooth_frames=a.smooth, time_scales=tuple(a.time_scales))
    if a.from_2d:
        if list(a.time_scales) != [1.0]:
            raise MasError("--time-scales plays 3D capture faster; 2D keypoints and videos are used as they are "
                           "(leave out --time-scales)")
        layout, body_parts = _layout_arg(a.layout)
        prepare_2d(a.folder, a.out, a.from_2d, layout, a.fps, cfg, body_parts or None, a.size)
    else:
        prepare_capture(a.folder, a.out, kind=a.kind, names_file=a.names, cfg=cfg, workers=a.workers)


def _layout_arg(name: str):
    """A built-in layout's name or a layout file (JSON/TOML) -> (layout, source names)."""
    from rigs.keypoints import LAYOUTS, layout_from_file

    if name in LAYOUTS:
        return LAYOUTS[name], {}
    if not name.lower().endswith((".json", ".toml")):
        raise MasError(f"unknown layout {name!r}: built-in layouts are {', '.join(LAYOUTS)}, or give a .json/.toml layout file")
    try:
        return layout_from_file(name)
    except ValueError as e:
        raise MasError(str(e)) from None


def cmd_train(a) -> None:
    from mas_engine.model import ModelConfig
    from mas_engine.train import TrainConfig, train

    from mas_engine.catalogue import check_config

    mc = check_config(ModelConfig(width=a.width, layers=a.layers, heads=a.heads, ff_width=a.ff_width,
                                  max_frames=a.max_frames, schedule=a.schedule, output=a.output,
                                  prediction=a.prediction, frame=a.frame,
                                  standardise=a.standardise, output_norm=not a.no_output_norm,
                                  skip_radius=a.skip_radius, self_condition=a.self_condition,
                                  pace_classes=a.pace_classes, pace_measure=a.pace_measure), "mas train")
    tc = TrainConfig(steps=a.steps, batch_size=a.batch_size, lr=a.lr, save_every=a.save_every, seed=a.seed,
                     mirror=not a.no_mirror, bf16=a.bf16, still_weight=a.still_weight,
                     noise_weighting=a.noise_weighting, velocity_weight=a.velocity_weight,
                     contact_weight=a.contact_weight,
                     motion_check=a.motion_check, teacher=a.distill_guidance, teacher_guidance=a.teacher_guidance,
                     teacher_away_from=a.teacher_away_from, teacher_guided_below=a.teacher_guided_below)
    summary = train(a.data, a.out, mc, tc, device=a.device, resume=not a.restart, init=a.init)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"done: {summary['steps']} steps in {summary['seconds']:.0f} s; checkpoint {Path(a.out) / 'model'}.json")


def cmd_models(a) -> None:
    from mas_engine.catalogue import shipped_models
    from mas_engine.checkpoint import load_checkpoint

    shipped = shipped_models()
    if not shipped:
        print("no shipped models are installed")
    for name in shipped:
        m = load_checkpoint(name)
        size = sum(p.stat().st_size for p in (shipped[name], shipped[name].with_suffix(".safetensors")))
        print(f"{name}: layout {m.layout.name} ({m.layout.num_joints} joints), {m.fps:g} fps, up to "
              f"{m.config.max_frames / m.fps:g} s, {m.model.num_parameters() / 1e6:.2f} M parameters, "
              f"{size / 1e6:.1f} MB. {m.card.get('licence', '')}")


def cmd_export(a) -> None:
    from mas_engine.catalogue import MODELS_DIR
    from mas_engine.checkpoint import export_model

    card = export_model(a.checkpoint, a.name, a.dest or MODELS_DIR, a.note, overwrite=a.overwrite, floor_prior=a.floor_prior,
                        view_noise_share=a.view_noise_share, noiseless_share=a.noiseless_share,
                        pace_shares=a.pace_shares, travel=a.travel)
    size = card.with_suffix(".safetensors").stat().st_size
    print(f"wrote {card} and its weights ({size / 1e6:.1f} MB, float16)")


def cmd_evaluate(a) -> None:
    from mas_engine.eval_2d import ROWS_2D, evaluate_2d

    rows = ROWS_2D if a.rows == "all" else tuple(r.strip() for r in a.rows.split(","))
    out = a.out or f"docs/eval2d_{Path(a.model).stem}{'_side' if a.side else ''}{'_quick' if a.quick else ''}"
    evaluate_2d(model=a.model, capture=a.capture, names_file=a.names, num=a.num, reps=a.reps, quick=a.quick,
                rows=rows, side=a.side, evaluator=a.evaluator, seconds=a.seconds, device=a.device, seed=a.seed, out=out,
                pace=a.pace)


def cmd_evaluate_3d(a) -> None:
    from mas_engine.eval_3d import evaluate_3d

    evaluate_3d(model=a.model, capture=a.capture, names_file=a.names, num=a.num, seconds=a.seconds,
                rows=a.rows.split(","), seed=a.seed, device=a.device, json_out=a.json,
                training_clips=not a.no_training_clips)


def cmd_bench(a) -> None:
    from mas_engine.bench import run_bench, run_scaling

    if a.scaling:
        run_scaling(model=a.model, device=a.device, png=a.png, json_out=a.json)
        return
    run_bench(model=a.model, device=a.device, seconds=a.seconds, views=a.views, steps=a.steps,
              batch=a.batch, gpu_batch=a.gpu_batch, json_out=a.json, reference=not a.no_reference)


def cmd_bench_retarget(a) -> None:
    from retarget.bench import run_bench

    run_bench(a.motions, rig=a.rig, frames=a.frames, smpl_model=a.smpl_model)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mas", description="MAS: 3D motion from a 2D motion diffusion model "
                                "by multi-view ancestral sampling.")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate 3D motions (.npz, frames x joints x 3, metres, Z up)")
    g.add_argument("--model", default="human", help="a shipped model name (see 'mas models') or a checkpoint path")
    g.add_argument("-n", "--num", type=_positive_int, default=1,
                   help="number of motions (seeds seed, seed+1, ...); write -n under torchrun, whose own options take --num")
    g.add_argument("--seconds", type=_positive_float, default=4.0,
                   help="length of each motion (up to 600; beyond the model's own length it is made in overlapping windows)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--views", type=_positive_int, default=5, help="MAS views (at least 2)")
    g.add_argument("--steps", type=_positive_int, default=None, help="diffusion steps (default: all the model has)")
    g.add_argument("--device", default="auto", help="auto, cpu or cuda")
    g.add_argument("--out", default="motions", help="output folder")
    g.add_argument("--batch-size", type=_positive_int, default=None, help="motions per model call")
    g.add_argument("--elevation", type=float, default=None, help="view elevation in degrees (default: the model's)")
    g.add_argument("--distance", type=_positive_float, default=None, help="view distance in metres (default: the model's)")
    g.add_argument("--no-3d-noise", action="store_true", help="ablation: independent noise per view")
    g.add_argument("--no-rigid-bones", action="store_true",
                   help="the paper's MAS: no bone-length prior after each triangulation (bones may stretch)")
    g.add_argument("--floor", action="store_const", const=True, default=None,
                   help="floor prior: after each triangulation the lowest foot on one floor (no floating or "
                        "sinking; gliding shows as foot skating); default: the model card's (on for the shipped human and quadruped, off for ball)")
    g.add_argument("--no-floor", dest="floor", action="store_const", const=False, help="no floor prior")
    g.add_argument("--travel", choices=TRAVELS, default=None,
                   help="where the body's travel comes from: 'model' (as the model makes it), 'feet' (only as far as "
                        "its feet step), 'blend' (the feet's where the body moves slower than 0.6 m/s, the model's "
                        "above 1.2 m/s); default: the model card's (blend for the shipped human, model for the others)")
    g.add_argument("--no-foot-lock", dest="foot_lock", action="store_false",
                   help="do not hold the standing feet where they stand (by default they are, the legs following "
                        "by IK: skating falls by half or more; see docs/results.md)")
    g.add_argument("--pace", type=_pace, default="data",
                   help="how much the motions move, for a model trained with pace classes: 'data' (the seeds take "
                        "the classes in turn, seed 0 the liveliest, each as often as the model card's pace shares "
                        "say, else as in the training data; the default), 0 (the stillest) .. C-1 for every motion, "
                        "or 'any' (the model not told)")
    g.add_argument("--pace-guidance", type=float, default=None,
                   help="classifier-free guidance on the pace class (a model trained with pace classes): each class "
                        "more itself, at twice the model's time; 1: none (default: the model card's, 2 unless its "
                        "guidance was distilled into its weights)")
    g.add_argument("--view-noise-share", type=_share, default=None,
                   help="the share of the noise levels, the lowest, whose noise each view draws on its own instead of "
                        "projecting one 3D noise: less tremor (default: the model card's, 0.1 for the shipped human; 0: "
                        "the paper's one 3D noise throughout)")
    g.add_argument("--noiseless-share", type=_share, default=None,
                   help="the share of the noise levels, the lowest, whose steps add no fresh noise: still motions "
                        "stand still instead of trembling (default: the model card's, 0.12 for the shipped human; 0: "
                        "every step adds its noise, as the paper's sampler)")
    g.add_argument("--preview", action="store_true", help="also write a stick-figure GIF per motion")
    g.add_argument("--format", default="npz", choices=["npz", "bvh", "both", "fbx", "glb"],
                   help="joint positions (.npz), a rotation track on --rig (.bvh), both, or the rig's character "
                        "with its animation as FBX or glTF (.glb; through Blender's bpy module)")
    g.add_argument("--rig", default="human", help="rig for --format bvh/fbx/glb: human, horse or a BVH file of your armature")
    g.add_argument("--overwrite", action="store_true", help="replace motion files of the same name in --out "
                                                            "(default: skip those seeds and say so)")
    g.add_argument("--loop", action="store_true", help="a seamless loop: the last frame flows into the first "
                                                       "(the root returns to where it started)")
    g.add_argument("--loop-travel", action="store_true",
                   help="a seamless loop that may travel steadily, a walk cycle that repeats while moving on: "
                        "the frame after the last is the first moved on by the travel of one period "
                        "(written to the motion file as loop_travel, metres)")
    g.add_argument("--start-from", default=None, metavar="MOTION.npz",
                   help="begin where this motion ends (its last pose and velocity)")
    g.add_argument("--continue", dest="continue_from", default=None, metavar="MOTION.npz",
                   help="like --start-from, and write that motion followed by --seconds of new motion")
    g.add_argument("--end-at", default=None, metavar="POSE.npz", help="end in the first pose of this motion or pose file")
    g.add_argument("--keys", default=None, metavar="KEYS.npz",
                   help="keyframes: the motion format (joints frames x joints x 3, metres, Z up; joint_names) "
                        "with NaN where free, or a 'mask' (frames x joints): the motion passes through them")
    g.add_argument("--path", default=None, metavar="'x,y x,y ...'",
                   help="the root's path on the floor in metres, walked at constant speed over the motion")
    g.set_defaults(func=cmd_generate)

    rt = sub.add_parser("retarget", help="joint positions (.npz) -> rotations of a rig (.bvh or .npz)")
    rt.add_argument("motion", help="a motion file from 'mas generate'")
    rt.add_argument("--rig", default="human",
                    help="human, horse, smpl (needs --smpl-model), or a BVH file of your armature (Mixamo-style bone names)")
    rt.add_argument("--smpl-model", default=None, help="SMPL .npz model file for --rig smpl (or set MAS_SMPL_MODEL)")
    rt.add_argument("--out", required=True, help="OUT.bvh, OUT.npz (rotation track), or OUT.fbx / OUT.glb (the rig "
                                                 "with its animation, through Blender's bpy module)")
    rt.add_argument("--in-place", action="store_true", help="remove the horizontal root trajectory")
    rt.add_argument("--no-foot-lock", action="store_true", help="do not pin the feet during ground contact")
    rt.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    rt.set_defaults(func=cmd_retarget)

    r = sub.add_parser("prepare", help="build a 2D training set from 3D capture or from 2D keypoint files")
    r.add_argument("folder", help="folder of capture files, or of 2D keypoint files (with --from)")
    r.add_argument("--out", required=True, help="output .npz")
    r.add_argument("--kind", default="bandai", help="capture kind: bandai (human16), dog (horse17) or spl (coco17_ball)")
    r.add_argument("--names", default=None, help="text file naming the clips to use, one a line")
    r.add_argument("--in-place", action="store_true", help="remove the root trajectory (motions in place)")
    r.add_argument("--min-frames", type=_positive_int, default=40)
    r.add_argument("--max-frames", type=_positive_int, default=120)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--stride", type=_positive_float, default=1.0,
                   help="seconds between window starts in a clip (each window gets its own camera; smaller: more windows)")
    r.add_argument("--full-share", type=_share, default=0.0,
                   help="share of the windows drawn at --max-frames instead of a uniform length (0.25: a third of "
                        "the windows reach the last 10 frame positions, which a 4 s motion uses; default 0)")
    r.add_argument("--smooth", type=_smooth_frames, default=0.0, metavar="FRAMES",
                   help="low-pass the detections over time by a Gaussian of this many frames, as a pose pipeline "
                        "smooths its keypoints (default 0: as detected; 1.5 keeps a standing person's windows "
                        "nearly still, which a detector's 4 mm tremor alone does not)")
    r.add_argument("--time-scales", type=_time_scales, default=(1.0,), metavar="K,K...",
                   help="3D capture: each clip also played K times faster, its windows added (1,1.5: every clip as "
                        "captured and at 1.5x its pace; default 1: as captured), for a set with little fast motion")
    r.add_argument("--workers", type=_positive_int, default=None)
    r.add_argument("--from", dest="from_2d", choices=("coco", "openpose", "deeplabcut", "video"), default=None,
                   help="the folder holds 2D keypoints from a pose estimator in this format, or video files "
                        "(read with MediaPipe Pose: pip install mediapipe==0.10.21), not 3D capture")
    r.add_argument("--layout", default="coco17", help="2D data: coco17 (COCO and OpenPose files) or a layout file "
                                                       "(.json/.toml, for DeepLabCut; see the README)")
    r.add_argument("--fps", type=float, default=None,
                   help="2D data: the videos' frame rate (default: 30 for keypoint files, each file's own for videos)")
    r.add_argument("--size", type=float, default=0.5,
                   help="2D data: the subject's typical spread in metres (RMS distance of its keypoints from their "
                        "centre; 0.5 for a standing adult), which sets the scale of generated motions")
    r.set_defaults(func=cmd_prepare)

    t = sub.add_parser("train", help="train (or resume) a 2D motion diffusion model")
    t.add_argument("data", help="2D data set (.npz from 'mas prepare')")
    t.add_argument("--out", required=True, help="run folder (checkpoints, log; resumes if it has a state)")
    t.add_argument("--steps", type=_positive_int, default=20000)
    t.add_argument("--batch-size", type=_positive_int, default=64)
    t.add_argument("--lr", type=_positive_float, default=2e-4)
    t.add_argument("--save-every", type=_positive_int, default=1000)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--width", type=_positive_int, default=256)
    t.add_argument("--layers", type=_positive_int, default=4)
    t.add_argument("--heads", type=_positive_int, default=4)
    t.add_argument("--ff-width", type=_positive_int, default=512)
    t.add_argument("--max-frames", type=_positive_int, default=120)
    t.add_argument("--schedule", default="cosine", choices=SCHEDULES)
    t.add_argument("--output", default="frames", choices=OUTPUTS,
                   help="frames: each token gives its two frames (their half-frame-rate alternation is filtered "
                        "out afterwards); upsampled: one value a token, the frames interpolated between tokens")
    t.add_argument("--prediction", default="x0", choices=PREDICTIONS,
                   help="what the network predicts: x0 (the clean motion) or v (sqrt(ab) eps - sqrt(1 - ab) x0: "
                        "a nearly clean input passes through; the loss is then v's squared error)")
    t.add_argument("--frame", default="image", choices=FRAMES,
                   help="what the network reads and writes: image (every joint where it is in the image) or root "
                        "(every joint relative to the root in its frame, the root where it is)")
    t.add_argument("--standardise", action="store_true",
                   help="the network reads and writes every coordinate z-scored by the training data's mean and std "
                        "(kept with the weights); the input at unit variance at every noise level")
    t.add_argument("--no-output-norm", action="store_true",
                   help="no LayerNorm before the output layer: the input reaches the output linearly through the "
                        "residual stream, and a nearly clean motion is learned back faster")
    t.add_argument("--skip-radius", type=int, default=0, metavar="R",
                   help="a linear skip: x0 = x_t filtered over 2R + 1 frames by a learned filter of each noise step "
                        "plus the network's output scaled to what the filter leaves, fit when the run starts; the "
                        "loss weighs each level by 1 / that scale squared (0: none; 7 tried)")
    t.add_argument("--self-condition", action="store_true",
                   help="the network also reads its previous x0 estimate (self-conditioning; about 1.2x the time "
                        "a training step; with --init, its input starts at zero, so the model starts as the source)")
    t.add_argument("--pace-classes", type=int, default=0, metavar="C",
                   help="the network also reads how much the motion moves, one of C classes (quantiles of the "
                        "training windows' pace); sampling gives the seeds the classes in turn (0: none; "
                        "4 tried; with --init, its input starts at zero)")
    t.add_argument("--pace-measure", default="speed", choices=PACE_MEASURES,
                   help="what the pace classes bin: speed (the mean speed of all joints over 0.2 s) or reach (how "
                        "far the most moving joint goes in 1 s: one arm's long sweep is much, a tremor little)")
    t.add_argument("--no-mirror", action="store_true", help="no mirror augmentation")
    t.add_argument("--restart", action="store_true", help="start over even if the folder has a training state")
    t.add_argument("--init", default=None, help="start from this checkpoint's weights (a shipped model or a path; "
                                                "same model settings, or more --layers: the new layers start as the "
                                                "identity), not from random weights")
    t.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the forward pass (about 1.5x faster "
                                                       "on CPUs with AVX-512 bf16; see docs/results.md)")
    t.add_argument("--still-weight", type=_positive_float, default=1.0,
                   help="draw the stillest 40%% of the windows this often against the others (below 1: moving "
                        "windows are drawn more; 1: all alike)")
    t.add_argument("--noise-weighting", default="auto",
                   choices=["auto", "uniform", "alpha_bar", "min_snr", "v", "skip"],
                   help="how much each noise level's x0 error counts: alike (uniform), alpha_bar (the P2 "
                        "weighting: the noisiest levels, whose error is mostly irreducible, count little), "
                        "min_snr (Min-SNR-5: the least noisy levels count most), v (1 / (1 - alpha_bar) capped at "
                        "50: v's squared error) or skip (1 / c_t^2 of a --skip-radius model); auto: skip for a model "
                        "with a linear skip, else uniform for an x0 model, v for a v model")
    t.add_argument("--velocity-weight", type=_nonnegative_float, default=0.0,
                   help="add this times the frame-to-frame velocity error to the loss (0: positions only)")
    t.add_argument("--contact-weight", type=_nonnegative_float, default=0.0,
                   help="add this times MDM's foot-contact loss: where a foot of the data stands, the predicted "
                        "foot must not move (0: off)")
    t.add_argument("--motion-check", type=_nonnegative_int, default=64,
                   help="at each checkpoint, draw this many plain 2D samples and log how alive they are (share "
                        "nearly still, travelling, feet planted while travelling) next to the data's (0: off)")
    t.add_argument("--distill-guidance", metavar="TEACHER", default=None,
                   help="guidance distillation: learn TEACHER's pace-guided x0 (a model with pace classes; start "
                        "with --init TEACHER) instead of the data's, so that the model samples unguided, in half "
                        "the time; its card says so")
    t.add_argument("--teacher-guidance", type=_numbers, default=2.0,
                   help="the teacher's pace guidance to distil: one number (default 2), or one a pace class "
                        "separated by commas, stillest first (e.g. 1.6,2,4,1.6)")
    t.add_argument("--teacher-away-from", type=lambda v: [x.strip() for x in v.split(",")], default=None,
                   help="what each class's guidance pulls away from, one a pace class, stillest first: 'any' (the "
                        "model not told a class; the default) or another class, as a negative prompt (e.g. "
                        "any,0,1,any: the calm class away from the stillest, so that it gestures)")
    t.add_argument("--teacher-guided-below", type=_numbers, default=None,
                   help="guide each class only at the noise steps below this one, one a pace class, stillest "
                        "first (e.g. 100,50,100,100: the second class only at the quieter half; default: every step)")
    t.add_argument("--device", default="auto")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("export", help="turn a training checkpoint into a shipped model (float16)")
    e.add_argument("checkpoint", help="e.g. runs/human/model.json")
    e.add_argument("--name", required=True, help="the model's name (e.g. human)")
    e.add_argument("--dest", default=None, help="folder (default: the package's models folder)")
    e.add_argument("--note", default=None, help="a line for the model card")
    e.add_argument("--overwrite", action="store_true", help="replace a model of that name in --dest")
    e.add_argument("--floor-prior", action="store_const", const=True, default=None,
                   help="MAS uses the floor prior with this model by default (mas generate --no-floor turns it off)")
    e.add_argument("--no-floor-prior", dest="floor_prior", action="store_const", const=False,
                   help="MAS does not use the floor prior with this model by default")
    e.add_argument("--view-noise-share", type=_share, default=None,
                   help="the share of the noise levels, the lowest, whose noise MAS draws for each view on its own by "
                        "default with this model (0.1 for the shipped human: its motion trembles less; default: as "
                        "the checkpoint's card says, else 0)")
    e.add_argument("--noiseless-share", type=_share, default=None,
                   help="the share of the noise levels, the lowest, whose steps add no fresh noise by default with this "
                        "model (0.12 for the shipped human: its still motions stand still; default: as the checkpoint's "
                        "card says, else 0)")
    e.add_argument("--travel", choices=TRAVELS, default=None,
                   help="where the body's travel comes from by default with this model (mas generate --travel; "
                        "'blend' for the shipped human; default: as the checkpoint's card says, else 'model')")
    e.add_argument("--pace-shares", type=_numbers, default=None,
                   help="how often MAS draws each pace class for 'by seed' motions, one share a class, stillest first, "
                        "summing to 1 (the shipped human: 0.22,0.22,0.2,0.36, so that about a third of its motions "
                        "walk, as in held-out capture; default: as the checkpoint's card says, else each class "
                        "equally)")
    e.set_defaults(func=cmd_export)

    e2 = sub.add_parser("evaluate", help="the paper's 2D protocol: FID, diversity, precision, recall of one-view "
                                          "projections against held-out real 2D (a table, JSON and Markdown)")
    e2.add_argument("capture", help="folder of the model's capture (as for evaluate-3d); its held-out clips are used")
    e2.add_argument("--model", default="human")
    e2.add_argument("--names", default=None, help="text file naming the clips to consider")
    e2.add_argument("--num", type=_positive_int, default=1000, help="samples per row and repetition")
    e2.add_argument("--reps", type=_positive_int, default=10, help="repetitions (mean and 95%% interval)")
    e2.add_argument("--quick", action="store_true", help="at most 64 samples x 3 repetitions, a shorter evaluator training")
    e2.add_argument("--rows", default="all", help="all, or a comma-separated list of: ground truth, 2D model, "
                                                  "MAS 5 views, MAS 5 views (rigid bones), MAS 2 views, MAS without 3D noise, score distillation")
    e2.add_argument("--side", action="store_true", help="only side views (azimuth 45 to 135 degrees from the facing)")
    e2.add_argument("--evaluator", default=None, help="evaluator checkpoint (trained and saved there if missing)")
    e2.add_argument("--seconds", type=_positive_float, default=4.0)
    e2.add_argument("--seed", type=int, default=0)
    e2.add_argument("--device", default="auto")
    e2.add_argument("--pace", type=_pace, default="data",
                    help="which pace classes the generated rows draw (a model with pace classes; as mas generate's): "
                         "'data' (the card's shares, as the product samples; the default) or 'training' (as the "
                         "training windows have them: the 2D model's own distribution)")
    e2.add_argument("--out", default=None, help="output stem for .json and .md (default docs/eval2d_MODEL)")
    e2.set_defaults(func=cmd_evaluate)

    ev = sub.add_parser("evaluate-3d", help="generated 3D motions against held-out real 3D capture (a table)")
    ev.add_argument("capture", help="folder of the model's capture (Bandai BVH for human16, dog BVH for horse17, "
                                    "SPL JSON for coco17_ball); the held-out clips of the split are used")
    ev.add_argument("--names", default=None, help="text file naming the clips to consider")
    ev.add_argument("--model", default="human")
    ev.add_argument("--num", type=_positive_int, default=128, help="motions per row")
    ev.add_argument("--seconds", type=_positive_float, default=4.0)
    ev.add_argument("--rows", default="mas5,mas5rigid,mas5lock,mas2,no3dnoise",
                    help="comma-separated: mas5 (the paper's MAS: no bone, floor or foot prior), mas5rigid (rigid "
                         "bones, the model's floor prior), mas5lock (the default: + the foot lock), mas2, "
                         "no3dnoise, mas5floor (+ the floor prior), mas5feet (+ travel from the feet), mas5floorfeet, "
                         "mas5lockany (mas5lock with a pace model not told its pace), mas5lockg1 (its pace told, not guided), "
                         "mas5lockhalf (guided at the noisier half of the levels only), mas5lockmodel (the model's own travel, not "
                         "the card's), mas5lock3d (one 3D noise at "
                         "every level, whatever the model card says), mas5locknoisy (every step adds its noise, "
                         "whatever the model card says)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--device", default="auto")
    ev.add_argument("--json", default=None)
    ev.add_argument("--no-training-clips", action="store_true",
                    help="leave out the row of the training clips' own windows (what the model learnt from, "
                         "measured against the held-out ones; reading them takes seconds to a minute)")
    ev.set_defaults(func=cmd_evaluate_3d)

    m = sub.add_parser("models", help="list the shipped models")
    m.set_defaults(func=cmd_models)

    b = sub.add_parser("bench", help="time generation and print a table")
    b.add_argument("--model", default="human")
    b.add_argument("--device", default="auto")
    b.add_argument("--seconds", type=_positive_float, default=4.0)
    b.add_argument("--views", type=_positive_int, default=5)
    b.add_argument("--steps", type=_positive_int, default=None)
    b.add_argument("--batch", type=_positive_int, default=8, help="batch size for the CPU batch row")
    b.add_argument("--gpu-batch", type=_positive_int, default=256)
    b.add_argument("--json", default=None, help="also write the results as JSON here")
    b.add_argument("--no-reference", action="store_true", help="skip the reference-style (Adam) triangulation row")
    b.add_argument("--scaling", action="store_true",
                   help="instead: time and memory against motion length (1-20 s), views (2-16), batch size and steps")
    b.add_argument("--png", default=None, help="with --scaling: plot the four curves into this PNG")
    b.set_defaults(func=cmd_bench)

    br = sub.add_parser("bench-retarget", help="time and measure retargeting on motions, as a table")
    br.add_argument("motions", nargs="+", help="motion .npz files and/or capture clips (Bandai or dog .bvh, SPL .json)")
    br.add_argument("--rig", default="human")
    br.add_argument("--frames", type=_positive_int, default=180, help="frames of each motion to use")
    br.add_argument("--smpl-model", default=None)
    br.set_defaults(func=cmd_bench_retarget)
    return p


def _interrupt(signum, frame):
    """A polite kill (SIGTERM): generation stops after the file in flight (every finished file stays,
    none is left half-written); other commands unwind like Ctrl-C, removing the file in flight."""
    if _GRACEFUL and not _STOP.is_set():
        _STOP.set()
        return
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        args.func(args)
    except Cancelled:
        print("mas: interrupted; the files finished before it are kept", file=sys.stderr)
        return 130
    except MasError as e:
        print(f"mas: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mas: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
