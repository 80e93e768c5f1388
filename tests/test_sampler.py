import threading

import numpy as np
import pytest
import torch
from torch import nn

from mas_engine.checkpoint import LoadedModel, load_checkpoint
from mas_engine.errors import Cancelled, MasError
from mas_engine.model import ModelConfig
from mas_engine.priors import rigid_bones
from mas_engine.sampler import MasSettings, MultiViewConsistency, mas_cameras, sample_2d_batch, sample_mas, sample_mas_batch
from rigs.keypoints import HUMAN16
from conftest import gliding_figure, tiny_card, walking_figure


class OracleDenoiser(nn.Module):
    """A perfect x0 predictor for one known 3D motion: returns its projection into each view."""

    def __init__(self, X, cams, cfg):
        super().__init__()
        self.cfg = cfg
        self.views = cams.project(X).permute(2, 0, 1, 3)   # V, L, J, 2
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x_t, t, length=None):
        B = x_t.shape[0] // self.views.shape[0]
        return self.views.repeat(B, 1, 1, 1)


def test_mas_with_a_perfect_denoiser_returns_the_true_3d_motion():
    card = tiny_card(scale=0.5)
    cfg = ModelConfig(max_frames=40, diffusion_steps=30)
    X = torch.from_numpy(walking_figure(40)).float() / 0.5
    X = X - X[:, :1].mean(0)
    settings = MasSettings(views=4, rigid_bones=False)     # the figure is not rigid: the paper's MAS
    stub = LoadedModel("oracle", nn.Identity(), card)
    cams = mas_cameras(stub, settings, "cpu")
    loaded = LoadedModel("oracle", OracleDenoiser(X, cams, cfg), card)
    out, _ = sample_mas_batch(loaded, [0, 1], 40, settings, torch.device("cpu"))
    torch.testing.assert_close(out, X.expand(2, -1, -1, -1), atol=1e-4, rtol=0)


def test_final_3d_is_consistent_with_every_view(tiny_checkpoint):
    loaded = load_checkpoint(tiny_checkpoint)
    settings = MasSettings(views=5)
    seen = []

    class Recording(MultiViewConsistency):
        def __call__(self, x0):
            seen.append(super().__call__(x0))
            return seen[-1]

    import mas_engine.sampler as sampler
    real, sampler.MultiViewConsistency = sampler.MultiViewConsistency, Recording
    try:
        X, _ = sample_mas_batch(loaded, [3], 24, settings, torch.device("cpu"))
    finally:
        sampler.MultiViewConsistency = real
    cams = mas_cameras(loaded, settings, "cpu")
    reproj = cams.project(X).permute(0, 3, 1, 2, 4)
    torch.testing.assert_close(seen[-1], reproj)         # the last step's views are the 3D motion's projections
    assert seen[-1].shape == (1, 5, 24, 16, 2)


def test_same_seed_same_motion_and_seeds_are_independent_of_the_batch(tiny_checkpoint):
    loaded = load_checkpoint(tiny_checkpoint)
    a = sample_mas(loaded, [5], 30)
    b = sample_mas(loaded, [5], 30)
    np.testing.assert_array_equal(a.joints, b.joints)
    batch = sample_mas(loaded, [4, 5, 6], 30)
    np.testing.assert_allclose(batch.joints[1], a.joints[0], atol=1e-4)
    assert np.abs(batch.joints[0] - batch.joints[1]).max() > 1e-2
    assert a.joints.dtype == np.float32 and np.isfinite(a.joints).all()


def test_output_is_metres_on_the_floor(tiny_checkpoint):
    loaded = load_checkpoint(tiny_checkpoint)
    r = sample_mas(loaded, [0, 1], 20, MasSettings(views=3, steps=5))
    lowest = r.joints[..., 2].min(axis=2)                 # motions x frames
    assert np.allclose(np.percentile(lowest, 5, axis=1), loaded.layout.floor_offset, atol=1e-5)
    assert r.fps == 30.0 and r.joints.shape == (2, 20, 16, 3)


def test_ablations_and_progress_and_cancel(tiny_checkpoint):
    loaded = load_checkpoint(tiny_checkpoint)
    calls = []
    r = sample_mas(loaded, [0], 16, MasSettings(views=2, steps=7, noise_3d=False),
                   progress=lambda d, n: calls.append((d, n)))
    assert calls == [(i, 7) for i in range(1, 8)]
    with_3d = sample_mas(loaded, [0], 16, MasSettings(views=2, steps=7))
    assert not np.allclose(r.joints, with_3d.joints)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        sample_mas(loaded, [0], 16, MasSettings(steps=7), cancel=stop.is_set)
    two_d = sample_2d_batch(loaded, [1, 2], 16, 5, torch.device("cpu"))
    assert two_d.shape == (2, 16, 16, 2) and torch.isfinite(two_d).all()


def test_bad_requests_are_clear(tiny_checkpoint):
    loaded = load_checkpoint(tiny_checkpoint)
    with pytest.raises(MasError, match="longer than model"):
        sample_mas(loaded, [0], int(601 * loaded.fps))        # beyond 10 minutes
    with pytest.raises(MasError, match="at least 2 views"):
        sample_mas(loaded, [0], 20, MasSettings(views=1))
    with pytest.raises(MasError, match="steps must be between"):
        sample_mas(loaded, [0], 20, MasSettings(steps=1000))
    with pytest.raises(MasError, match="window coupling"):
        sample_mas(loaded, [0], 20, MasSettings(window_coupling=1.5))
    with pytest.raises(MasError, match="loop coupling"):
        sample_mas(loaded, [0], 20, MasSettings(loop=True, loop_coupling=-0.1))


def test_remove_alternation_stops_only_the_half_frame_rate_pattern():
    from mas_engine.postprocess import remove_alternation

    t = np.arange(120) / 30.0
    slow = np.stack([np.sin(2 * np.pi * f * t) for f in (0.5, 2.0, 5.0)], 1)[:, :, None]   # frames x 3 x 1
    alternating = 0.05 * (-1.0) ** np.arange(120)
    out = remove_alternation(slow + alternating[:, None, None])
    inner = slice(10, -10)
    assert np.abs(out[inner] - slow[inner]).max() < 0.01          # the pattern is gone, the motion stays
    assert np.abs(remove_alternation(slow)[inner] - slow[inner]).max() < 0.01
    assert remove_alternation(slow[:3]).shape == (3, 3, 1)


def test_the_pull_onto_constraints_keeps_the_models_alternation():
    # a smooth walk plus a two-frames-per-token alternation, seen by 4 views; frames 10-12 fixed (edges are
    # reflected, so the alternation is estimated best inside the motion)
    from mas_engine.cameras import Cameras
    from mas_engine.postprocess import alternation

    F = 30
    f = torch.arange(F, dtype=torch.float64)
    smooth = torch.stack([0.03 * f[:, None] + torch.tensor([0.0, 0.2, -0.2]), torch.zeros(F, 3),
                          torch.tensor([0.0, 0.5, 0.5]).expand(F, 3)], -1)[None]                  # 1 x F x 3 x 3
    alt = 0.01 * ((-1.0) ** f)[None, :, None, None]
    cams = Cameras.ring(4, 0.2, 6.0, dtype=torch.float64)
    views = cams.project(smooth + alt).permute(0, 3, 1, 2, 4)                                     # 1 x V x F x J x 2
    targets, mask = torch.zeros(F, 3, 3, dtype=torch.float64), torch.zeros(F, 3, 3, dtype=torch.float64)
    targets[10:13], mask[10:13] = smooth[0, 10:13], 1.0
    targets[10:13, 0, 0] += 0.06                                   # one joint 6 cm further: a pull to make
    for alternating in (True, False):
        mvc = MultiViewConsistency(cams, constraints=(targets, mask, 2.0), alternating=alternating)
        mvc(views)
        aligned = targets[10:13] - mvc.shift[0]
        off = mvc.X[0, 10:13] - aligned
        if alternating:      # the constrained frames carry the alternation of their neighbours, which the
            assert torch.allclose(off, alt[0, 10:13].expand_as(off), atol=1e-3)   # final band-stop removes
            assert torch.allclose((mvc.X - alternation(mvc.X))[0, 10:13], aligned, atol=1e-3)
        else:                # exactly on the targets: the alternation breaks there
            assert off.abs().max() < 1e-6


def test_rigid_bones_fixes_lengths_and_keeps_directions(tiny_checkpoint):
    X = torch.from_numpy(walking_figure(40)).double()[None]
    once = rigid_bones(X, HUMAN16.parents)
    torch.testing.assert_close(rigid_bones(once, HUMAN16.parents), once)            # a rigid motion stays as it is
    g = torch.Generator().manual_seed(0)
    wobbly = X + 0.03 * torch.randn(X.shape, generator=g, dtype=X.dtype)
    out = rigid_bones(wobbly, HUMAN16.parents, keep={HUMAN16.index("nose")})
    for j, p in enumerate(HUMAN16.parents):
        if p < 0:
            torch.testing.assert_close(out[:, :, j], wobbly[:, :, j])                   # the root stays
            continue
        d_in, d_out = wobbly[:, :, j] - wobbly[:, :, p], out[:, :, j] - out[:, :, p]
        if j == HUMAN16.index("nose"):
            torch.testing.assert_close(out[:, :, j], wobbly[:, :, j])                   # kept as it is
            continue
        length = d_out.norm(dim=-1)
        assert float(length.std()) < 1e-9 and abs(float(length[0, 0] - d_in.norm(dim=-1).median())) < 1e-9
        torch.testing.assert_close(d_out / length[..., None], d_in / d_in.norm(dim=-1, keepdim=True))
    # a layout that does not list parents first (COCO's root is a hip): still rigid
    from rigs.keypoints import COCO17
    Y = torch.randn(1, 10, 17, 3, generator=g, dtype=torch.float64)
    R = rigid_bones(Y, COCO17.parents)
    lengths = torch.stack([(R[:, :, j] - R[:, :, p]).norm(dim=-1) for j, p in enumerate(COCO17.parents) if p >= 0], -1)
    assert float(lengths.std(1).max()) < 1e-9
    # in MAS: every step's 3D motion is rigid, so the result is too
    loaded = load_checkpoint(tiny_checkpoint)
    X3, _ = sample_mas_batch(loaded, [5], 24, MasSettings(views=4, rigid_bones=True), torch.device("cpu"))
    bones = torch.stack([(X3[:, :, j] - X3[:, :, p]).norm(dim=-1) for j, p in enumerate(HUMAN16.parents) if p >= 0], -1)
    assert float((bones.std(1) / bones.mean(1)).max()) < 1e-5


def stepping_in_place(frames=120, fps=30.0, speed=1.2, cycle=1.0, stance=0.6):
    """A human16 motion walking in place, as a model trained in place makes it (frames x 16 x 3,
    m, Z up): the pelvis stays at the origin, each ankle on the floor moves back at ``speed``
    for ``stance`` of the gait cycle, then swings forward, lifted; the feet half a cycle apart."""
    from rigs.keypoints import HUMAN16

    X = np.zeros((frames, 16, 3))
    X[:, :, 2] = 1.0
    X[:, 0] = (0, 0, 0.95)
    t = np.arange(frames) / fps
    reach = speed * stance * cycle / 2
    for name, y, offset in (("left_ankle", 0.1, 0.0), ("right_ankle", -0.1, 0.5)):
        ph = (t / cycle + offset) % 1.0
        s = np.clip((ph - stance) / (1 - stance), 0, 1)          # 0 in stance, 0 -> 1 in swing
        x = np.where(ph < stance, reach - speed * ph * cycle, -reach + 2 * reach * (0.5 - 0.5 * np.cos(np.pi * s)))
        X[:, HUMAN16.index(name)] = np.stack([x, np.full(frames, y), 0.1 + 0.1 * np.sin(np.pi * s)], -1)
    return X


def test_travel_from_feet_recovers_a_walk_and_leaves_standing_still():
    """A walk made in place gets the travel its feet imply: the speed it was made with, and a
    standing foot does not slide; a motion whose feet do not move stays where it is."""
    from mas_engine.postprocess import travel_from_feet
    from rigs.keypoints import HUMAN16

    feet = [HUMAN16.index("left_ankle"), HUMAN16.index("right_ankle")]
    X = stepping_in_place(speed=1.2)
    Y = travel_from_feet(X, feet)
    speed = np.linalg.norm(Y[-1, 0, :2] - Y[0, 0, :2]) / ((len(Y) - 1) / 30.0)
    assert speed == pytest.approx(1.2, rel=0.05)
    assert np.allclose(Y[..., 2], X[..., 2]) and np.allclose(Y - Y[:, :1], X - X[:, :1])   # only moved
    # a foot in the middle of its stance, the other in the air: it stays put
    for k, f in enumerate(feet):
        low = X[:, f, 2] < 0.1005
        other_up = X[:, feet[1 - k], 2] > 0.15
        standing = np.flatnonzero(low[1:] & low[:-1] & other_up[1:])
        slide = np.linalg.norm(np.diff(Y[:, f, :2], axis=0), axis=-1)[standing]
        assert len(standing) > 10 and slide.max() < 2e-3                                 # metres a frame
    still = np.repeat(X[:1], 60, axis=0)
    assert np.array_equal(travel_from_feet(still, feet), still)


def test_finish_motions_takes_the_travel_from_the_feet_when_asked():
    """A glide (the whole body sliding at 1 m/s) loses its travel with travel="feet"; a model
    trained in place always gets the travel of its feet; a loop is left as it was made."""
    from types import SimpleNamespace

    from mas_engine.postprocess import finish_motions
    from rigs.keypoints import HUMAN16

    def loaded(root_motion):
        return SimpleNamespace(scale=1.0, config=SimpleNamespace(frames_per_token=1, alternates=False), layout=HUMAN16,
                               root_motion=root_motion)

    glide = np.repeat(stepping_in_place(60)[:1], 60, axis=0)
    glide[..., 0] += np.arange(60)[:, None] / 30.0                       # 1 m/s, feet never standing still
    travel = lambda X: float(np.linalg.norm(X[0, -1, 0, :2] - X[0, 0, 0, :2]))   # noqa: E731
    assert travel(finish_motions(loaded(True), glide[None])) == pytest.approx(59 / 30, rel=1e-4)
    assert travel(finish_motions(loaded(True), glide[None], travel="feet")) < 1e-6
    walk = stepping_in_place(120, speed=1.2)[None]
    assert travel(finish_motions(loaded(False), walk)) == pytest.approx(1.2 * 119 / 30, rel=0.05)
    assert travel(finish_motions(loaded(False), walk, loop=True)) < 1e-6


def test_blended_travel_holds_a_slow_glide_and_keeps_a_fast_one():
    """travel="blend": a body gliding at 0.3 m/s over feet that never step stays where it stood; one
    gliding at 1.5 m/s keeps its travel; at 0.9 m/s (half-way between 0.6 and 1.2) half of it; a walk
    made in place gets its feet's travel; only the horizontal place changes."""
    from mas_engine.postprocess import travel_from_feet_when_slow
    from rigs.keypoints import HUMAN16

    feet = [HUMAN16.index("left_ankle"), HUMAN16.index("right_ankle")]
    stand = np.repeat(stepping_in_place(90)[:1], 90, axis=0)

    def travel(speed):
        glide = stand.copy()
        glide[..., 0] += speed * np.arange(90)[:, None] / 30.0
        Y = travel_from_feet_when_slow(glide, feet, 0, 30.0)
        assert np.allclose(Y[..., 2], glide[..., 2]) and np.allclose(Y - Y[:, :1], glide - glide[:, :1])
        return float(np.linalg.norm(Y[-1, 0, :2] - Y[0, 0, :2]))

    assert travel(0.3) < 1e-9
    assert travel(1.5) == pytest.approx(1.5 * 89 / 30, rel=1e-9)
    assert travel(0.9) == pytest.approx(0.5 * 0.9 * 89 / 30, rel=1e-6)
    walk = stepping_in_place(120, speed=0.5)                 # in place: no travel of its own, the feet's comes in
    Y = travel_from_feet_when_slow(walk, feet, 0, 30.0)
    assert np.linalg.norm(Y[-1, 0, :2] - Y[0, 0, :2]) / (119 / 30) == pytest.approx(0.5, rel=0.05)


def test_the_model_card_chooses_the_travel(tiny_checkpoint, tmp_path):
    """A card's mas_sampling.travel is the default of MasSettings.travel; a card naming none travels as the
    model makes it; an unknown travel is refused when the model loads."""
    import json

    from mas_engine.checkpoint import export_model
    from mas_engine.errors import MasError

    assert load_checkpoint(tiny_checkpoint).travel == "model"
    card = export_model(tiny_checkpoint, "blended", tmp_path, travel="blend")
    assert load_checkpoint(card).travel == "blend"
    with pytest.raises(MasError, match="travel"):
        export_model(tiny_checkpoint, "other", tmp_path, travel="glide")
    data = json.loads(card.read_text())
    data["mas_sampling"]["travel"] = "glide"
    card.write_text(json.dumps(data))
    with pytest.raises(MasError, match="mas_sampling.travel 'glide'"):
        load_checkpoint(card)


def test_two_bone_ik_reaches_what_the_leg_can_and_keeps_its_bones():
    """A reachable target is reached exactly, the hip stays and both bones keep their lengths; a
    target out of reach keeps its height and the leg comes as far as it reaches, nearly straight."""
    from mas_engine.postprocess import two_bone_ik

    rng = np.random.default_rng(0)
    hip = rng.normal(size=(64, 3))
    knee = hip + rng.normal(size=(64, 3)) * 0.3
    foot = knee + rng.normal(size=(64, 3)) * 0.3
    l1, l2 = np.linalg.norm(knee - hip, axis=-1), np.linalg.norm(foot - knee, axis=-1)
    u = rng.normal(size=(64, 3))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    near = hip + u * (np.abs(l1 - l2) + 0.2 * (l1 + l2 - np.abs(l1 - l2)))[:, None]      # inside the reach
    k, f = two_bone_ik(hip, knee, foot, near)
    assert np.allclose(f, near, atol=1e-9)
    assert np.allclose(np.linalg.norm(k - hip, axis=-1), l1) and np.allclose(np.linalg.norm(f - k, axis=-1), l2)
    far = hip + np.array([3.0, 0.0, 0.0]) * (l1 + l2)[:, None] + [0.0, 0.0, -0.1]
    k, f = two_bone_ik(hip, knee, foot, far)
    assert np.allclose(f[:, 2], far[:, 2])                                                # the height kept
    assert np.allclose(np.linalg.norm(f - hip, axis=-1), 0.999 * (l1 + l2))               # as far as it reaches
    assert np.allclose(np.linalg.norm(k - hip, axis=-1), l1) and np.allclose(np.linalg.norm(f - k, axis=-1), l2)


def test_a_standing_foot_is_held_where_it_stands_and_the_leg_follows():
    """A body gliding at 0.15 m/s with its feet: after lock_feet the standing feet do not move (within
    the leg's reach), the hips and the upper body are untouched, the bones keep their lengths and the
    knees bend to make up the difference; a lifted foot is left alone; frames a constraint fixes
    keep their leg; finish_motions locks when asked (MasSettings.foot_lock, on by default)."""
    from types import SimpleNamespace

    from mas_engine.metrics import foot_skating
    from mas_engine.postprocess import finish_motions, lock_feet, standing

    X = gliding_figure()
    feet = [HUMAN16.index("left_ankle"), HUMAN16.index("right_ankle")]
    assert standing(X, feet, 30.0)[:, 0].all() and not standing(X, feet, 30.0)[40:, 1].any()
    Y = lock_feet(X, feet, HUMAN16.parents, 30.0)
    assert foot_skating(X[:, feet], 30.0) > 0.5 and foot_skating(Y[:, feet], 30.0) < 0.05
    left = Y[:, feet[0], :2]
    assert np.abs(left - left.mean(0)).max() < 1e-6                    # stood in one place all along
    legs = {HUMAN16.index(f"{s}_{j}") for s in ("left", "right") for j in ("knee", "ankle")}
    others = [j for j in range(16) if j not in legs]
    assert np.array_equal(Y[:, others], X[:, others])
    length = lambda M: np.stack([np.linalg.norm(M[:, c] - M[:, p], axis=-1) for p, c in HUMAN16.bones], -1)  # noqa: E731
    assert np.allclose(length(Y), length(X), atol=1e-9)                 # every bone, every frame
    knee = HUMAN16.index("left_knee")
    assert np.abs(Y[:, knee] - X[:, knee]).max() > 0.01                  # the knee made up the difference
    assert np.allclose(Y[43:, feet[1]], X[43:, feet[1]])                 # the swing is its own (after the ease-out)
    fixed = np.zeros(X.shape[:2], bool)
    fixed[:10, feet[0]] = True
    Z = lock_feet(X, feet, HUMAN16.parents, 30.0, fixed=fixed)
    assert np.array_equal(Z[:10, feet[0]], X[:10, feet[0]]) and not np.allclose(Z[20:, feet[0]], X[20:, feet[0]])
    assert np.abs(Z[10:30, feet[0], :2] - X[9, feet[0], :2]).max() < 1e-6   # the stance goes on from where it was put
    # two keyed poses in one stance: the foot slides from one place to the other, never jumps
    fixed[:] = False
    fixed[[0, 30], feet[0]] = True
    Z = lock_feet(X, feet, HUMAN16.parents, 30.0, fixed=fixed)
    assert np.allclose(Z[[0, 30], feet[0]], X[[0, 30], feet[0]])
    assert np.abs(np.diff(Z[:31, feet[0], 0], n=2)).max() < 1e-6 and np.allclose(Z[30:, feet[0], :2], X[30, feet[0], :2])
    loaded = SimpleNamespace(scale=1.0, fps=30.0, layout=HUMAN16, root_motion=True,
                             config=SimpleNamespace(frames_per_token=1, alternates=False))
    assert foot_skating(finish_motions(loaded, X[None])[0][:, feet], 30.0) > 0.5
    assert foot_skating(finish_motions(loaded, X[None], foot_lock=True)[0][:, feet], 30.0) < 0.05
    assert MasSettings().foot_lock


def test_the_floor_prior_is_the_models_default_unless_asked(tiny_checkpoint, tmp_path):
    """MasSettings.floor None takes the model card's mas_sampling.floor (``mas export --floor-prior``): with
    it, every frame's lowest foot of the last 3D estimate stands on one floor; floor=False turns it off."""
    from mas_engine.checkpoint import export_model

    loaded = load_checkpoint(tiny_checkpoint)
    feet = [HUMAN16.index(n) for n in HUMAN16.feet]
    spread = lambda X: float(X[0, :, feet, 2].amin(-1).std())          # noqa: E731
    assert not loaded.floor_prior
    plain, _ = sample_mas_batch(loaded, [3], 24, MasSettings(steps=3, views=2), torch.device("cpu"))
    loaded = load_checkpoint(export_model(tiny_checkpoint.with_suffix(".json"), "floored", tmp_path, floor_prior=True))
    assert loaded.floor_prior
    floored, _ = sample_mas_batch(loaded, [3], 24, MasSettings(steps=3, views=2), torch.device("cpu"))
    off, _ = sample_mas_batch(loaded, [3], 24, MasSettings(steps=3, views=2, floor=False), torch.device("cpu"))
    assert spread(floored) < 1e-5 and spread(plain) > 1e-3 and spread(off) > 1e-3


def test_an_unknown_travel_is_refused_before_any_work(tiny_checkpoint):
    from mas_engine.sampler import check_request

    with pytest.raises(MasError, match="travel 'walk' is not known"):
        check_request(load_checkpoint(tiny_checkpoint), 24, MasSettings(travel="walk"))


def test_sampling_builds_no_autograd_graph(tiny_checkpoint):
    """MAS runs under torch.inference_mode: no graph is kept for the model's weights, so memory stays
    bounded on long motions."""
    m = load_checkpoint(tiny_checkpoint)
    X, _ = sample_mas_batch(m, [0], 48, MasSettings(steps=2, views=2), torch.device("cpu"))
    assert X.is_inference() and not X.requires_grad


def test_the_loop_gives_the_denoiser_the_previous_steps_consistent_x0():
    """ancestral_loop: the first step's denoiser reads nothing, every later one the x0 of the step before as
    the consistency block left it (MAS's: the triangulated motion projected back)."""
    from mas_engine.diffusion import Schedule
    from mas_engine.sampler import ancestral_loop
    schedule = Schedule.create("cosine", 10)
    given, made = [], []

    def denoise(x_t, t, x0_prev=None):
        given.append(x0_prev)
        return torch.full_like(x_t, float(t))

    def consistency(x0):
        made.append(x0 + 1.0)
        return made[-1]
    ancestral_loop(denoise, schedule, torch.zeros(2, 5, 3), lambda k: torch.zeros(2, 5, 3), consistency)
    assert given[0] is None and len(given) == 10
    assert all(g is m for g, m in zip(given[1:], made[:-1]))


def test_a_pace_model_gets_each_motions_class_in_every_view_and_window(tmp_path):
    """MasSettings.pace reaches the model: every row of a motion (its views, its windows, the reversed end)
    reads that motion's class; "any" reads class C; an unknown pace is refused before work starts."""
    from dataclasses import replace
    from mas_engine.checkpoint import save_checkpoint
    from mas_engine.model import MotionDenoiser
    from mas_engine.sampler import check_request, mas_denoiser, pace_classes
    cfg = ModelConfig(max_frames=48, width=32, layers=1, heads=2, ff_width=64, diffusion_steps=20, pace_classes=3)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "paced", MotionDenoiser(cfg).eval(), tiny_card())
    m = load_checkpoint(tmp_path / "paced.json")
    for frames in (48, 3 * 48):                      # in one piece, and in windows
        seen = []
        real = m.model.forward
        m.model.forward = lambda x, t, length=None, x0_prev=None, pace=None: seen.append((x.shape[0], pace)) or \
            real(x, t, length, x0_prev, pace)
        denoise = mas_denoiser(m, frames, MasSettings(pace_guidance=1.0), ends_in_pose=True, pace=torch.tensor([2, 0]))
        with torch.no_grad():
            denoise(torch.randn(2, 5, frames, 16, 2), 1)         # 2 motions x 5 views; t low: an end pose reversed too
        m.model.forward = real
        assert len(seen) >= 2
        for rows, pace in seen:
            assert pace.tolist() == [2] * (rows // 2) + [0] * (rows // 2)
    res = sample_mas(m, [0, 1], 48, MasSettings(pace="any", steps=3))
    again = sample_mas(m, [1], 48, MasSettings(pace="any", steps=3))
    assert np.allclose(res.joints[1], again.joints[0], atol=1e-5)
    assert pace_classes(m, [0, 1], "any", "cpu").tolist() == [3, 3]
    from mas_engine.sampler import pace_guided               # guidance: x0_any + g (x0_class - x0_any)
    x, t, cls = torch.randn(2, 48, 16, 2), torch.tensor([3, 9]), torch.tensor([0, 2])
    with torch.no_grad():
        m.model.pace_embed.weight.normal_()
        told, free = m.model(x, t, pace=cls), m.model(x, t)
        assert pace_guided(m.model, 3, 1.0) is m.model
        assert torch.allclose(pace_guided(m.model, 3, 2.5)(x, t, pace=cls), free + 2.5 * (told - free), atol=1e-5)
        assert torch.equal(pace_guided(m.model, 3, 2.5)(x, t), free)
        per_class = pace_guided(m.model, 3, [1.5, 1.0, 4.0])(x, t, pace=cls)    # classes 0 and 2: their own scales
        assert torch.allclose(per_class[0], free[0] + 1.5 * (told[0] - free[0]), atol=1e-5)
        assert torch.allclose(per_class[1], free[1] + 4.0 * (told[1] - free[1]), atol=1e-5)
        assert pace_guided(m.model, 3, [1.0, 1.0, 1.0]) is m.model
        assert torch.equal(pace_guided(m.model, 3, 2.5)(x, t, pace=torch.tensor([3, 3])), free)   # all "any"
        tl = torch.tensor([4, 4])                                       # guided only from step 5 up
        assert torch.equal(pace_guided(m.model, 3, 2.5, from_t=5)(x, tl, pace=cls), m.model(x, tl, pace=cls))
        th = torch.tensor([5, 5])
        told_h, free_h = m.model(x, th, pace=cls), m.model(x, th)
        assert torch.allclose(pace_guided(m.model, 3, 2.5, from_t=5)(x, th, pace=cls), free_h + 2.5 * (told_h - free_h),
                              atol=1e-5)
        # away from another class, as a negative prompt: x0_ref + g (x0_class - x0_ref), ref each class's own
        away = pace_guided(m.model, 3, [1.0, 3.0, 2.0], away_from=["any", "0", 1])(x, t, pace=cls)
        assert torch.allclose(away[0], told[0], atol=1e-5)                  # class 0 at scale 1: itself
        ref1 = m.model(x, t, pace=torch.tensor([1, 1]))
        assert torch.allclose(away[1], ref1[1] + 2.0 * (told[1] - ref1[1]), atol=1e-5)
        assert torch.equal(pace_guided(m.model, 3, 2.5, away_from=["any", 0, 1])(x, t), free)   # "any" stays
        assert torch.allclose(pace_guided(m.model, 3, 2.5, away_from=[None, "ANY", "any"])(x, t, pace=cls),
                              free + 2.5 * (told - free), atol=1e-5)
        # each class guided only below its own noise step, row by row (t = 3 and 9; classes 0 and 2)
        low = pace_guided(m.model, 3, 2.5, below=[10, 100, 5])(x, t, pace=cls)
        assert torch.allclose(low[0], free[0] + 2.5 * (told[0] - free[0]), atol=1e-5)   # 3 < 10: guided
        assert torch.allclose(low[1], told[1], atol=1e-5)                               # 9 >= 5: itself
        assert torch.allclose(pace_guided(m.model, 3, 2.5, below=[100, 100, 100])(x, t, pace=cls),
                              free + 2.5 * (told - free), atol=1e-5)
    with pytest.raises(MasError, match="2 classes"):
        pace_guided(m.model, 3, 2.0, below=[50, 50])
    for bad, why in (([0, 0, 1], "class 0"), (["any", 3, "any"], "class 1"), (["any", "x", "any"], "class 1"),
                     (["any", "any"], "2 classes")):
        with pytest.raises(MasError, match=why):
            pace_guided(m.model, 3, 2.0, away_from=bad)
    with pytest.raises(MasError, match="unguided share"):
        check_request(m, 48, MasSettings(pace_guidance_from=1.5))
    with pytest.raises(MasError, match="pace guidance"):
        check_request(m, 48, MasSettings(pace_guidance=float("nan")))
    for bad in (3, -1, "fast", True):
        with pytest.raises(MasError, match="pace"):
            check_request(m, 48, MasSettings(pace=bad))
    plain = replace(m.config, pace_classes=0)
    save_checkpoint(tmp_path / "plain", MotionDenoiser(plain).eval(), tiny_card())
    p = load_checkpoint(tmp_path / "plain.json")
    with pytest.raises(MasError, match="trained without pace classes"):
        check_request(p, 48, MasSettings(pace=0))
    check_request(p, 48, MasSettings(pace="any"))
    assert pace_classes(p, [0], "data", "cpu") is None


def test_the_last_steps_noise_drawn_per_view_is_still_one_motion_per_seed(tiny_checkpoint):
    from mas_engine.sampler import check_request
    m = load_checkpoint(tiny_checkpoint)
    settings = MasSettings(steps=4, view_noise_share=0.5)
    both = sample_mas(m, [3, 4], 48, settings)
    alone = sample_mas(m, [4], 48, settings)
    assert np.allclose(both.joints[1], alone.joints[0], atol=1e-5)          # a seed's motion, whatever the batch
    shared = sample_mas(m, [3], 48, MasSettings(steps=4, view_noise_share=0.0))
    assert not np.allclose(both.joints[0], shared.joints[0], atol=1e-4)     # the last steps' noise differs
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(MasError, match="view noise share"):
            check_request(m, 48, MasSettings(view_noise_share=bad))
    assert m.view_noise_share == 0.0                                        # a card without it: one 3D noise throughout
    assert np.allclose(sample_mas(m, [3], 48, MasSettings(steps=4)).joints, shared.joints)


def test_a_models_card_sets_its_view_noise_share(tiny_checkpoint, tmp_path):
    from mas_engine.checkpoint import export_model
    card = export_model(tiny_checkpoint, "viewnoise", tmp_path, view_noise_share=0.5)
    m = load_checkpoint(card)
    assert m.view_noise_share == 0.5
    default = sample_mas(m, [2], 48, MasSettings(steps=4)).joints
    assert np.allclose(default, sample_mas(m, [2], 48, MasSettings(steps=4, view_noise_share=0.5)).joints)
    assert not np.allclose(default, sample_mas(m, [2], 48, MasSettings(steps=4, view_noise_share=0.0)).joints, atol=1e-4)
    with pytest.raises(MasError, match="view noise share"):
        export_model(tiny_checkpoint, "bad", tmp_path, view_noise_share=2.0)


def test_noiseless_last_steps_let_a_still_motion_stand_still():
    """The shipped human told its stillest pace trembles at 0.16-0.21 m/s when every step adds its noise (the
    denoiser leaves part of it in); with the lowest levels' steps noiseless its limbs move at under 0.6x that,
    nearly still (under 0.1 m/s) on average. Not each motion: since human-away4 the stillest class is guided
    half-way to "any" so that it gestures, and one of these two moves at 0.11 m/s."""
    from mas_engine.eval_3d import HUMAN_LIMBS
    m = load_checkpoint("human")
    limbs = [m.layout.index(n) for n in HUMAN_LIMBS]
    speed = lambda j: np.linalg.norm(np.diff(j[:, :, limbs], axis=1), axis=-1).mean((1, 2)) * m.fps  # noqa: E731
    noisy = speed(sample_mas(m, [0, 1], 60, MasSettings(steps=20, pace=0, noiseless_share=0.0)).joints)
    quiet = speed(sample_mas(m, [0, 1], 60, MasSettings(steps=20, pace=0, noiseless_share=0.2)).joints)
    assert (noisy > 0.1).all() and quiet.mean() < 0.1 and (quiet < 0.6 * noisy).all()


def test_a_models_card_sets_its_noiseless_share(tiny_checkpoint, tmp_path):
    from mas_engine.checkpoint import export_model
    from mas_engine.sampler import check_request
    m = load_checkpoint(tiny_checkpoint)
    assert m.noiseless_share == 0.0                                         # a card without it: every step adds noise
    settings = MasSettings(steps=8, noiseless_share=0.5)
    both = sample_mas(m, [3, 4], 48, settings).joints
    assert np.allclose(sample_mas(m, [4], 48, settings).joints, both[1:], atol=1e-5)   # a seed's motion, whatever the batch
    assert not np.allclose(sample_mas(m, [3], 48, MasSettings(steps=8)).joints, both[:1], atol=1e-4)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(MasError, match="noiseless share"):
            check_request(m, 48, MasSettings(noiseless_share=bad))
    q = load_checkpoint(export_model(tiny_checkpoint, "quiet", tmp_path, noiseless_share=0.5))
    assert q.noiseless_share == 0.5
    default = sample_mas(q, [3], 48, MasSettings(steps=8)).joints                  # (float16 weights: its own motion)
    assert np.allclose(default, sample_mas(q, [3], 48, settings).joints)
    assert not np.allclose(default, sample_mas(q, [3], 48, MasSettings(steps=8, noiseless_share=0.0)).joints, atol=1e-4)
    with pytest.raises(MasError, match="noiseless share"):
        export_model(tiny_checkpoint, "bad", tmp_path, noiseless_share=2.0)
    # a constrained motion keeps every step noisy unless asked: noiseless steps keep the pull's kink
    from mas_engine.constraints import Constraints
    targets, mask = np.zeros((48, 16, 3)), np.zeros((48, 16, 3), bool)
    targets[-1], mask[-1] = default[0, -1], True                          # end in the pose it ends in anyway
    end = Constraints(targets, mask, 6.0)
    posed = lambda share: sample_mas(q, [3], 48, MasSettings(steps=8, noiseless_share=share), constraints=end).joints  # noqa: E731
    assert np.allclose(posed(None), posed(0.0)) and not np.allclose(posed(None), posed(0.5), atol=1e-4)
