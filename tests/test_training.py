import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mas_engine.checkpoint import export_model, load_checkpoint, save_checkpoint
from mas_engine.dataset import MonocularConfig, build_monocular_set, save_monocular_set
from mas_engine.errors import MasError
from mas_engine.model import ModelConfig, MotionDenoiser
from mas_engine.train import TrainConfig, train
from rigs.keypoints import HUMAN16, KeypointLayout
from conftest import tiny_card, walking_figure

ROOT = Path(__file__).resolve().parents[1]
TINY = ModelConfig(max_frames=48, width=48, layers=2, heads=2, ff_width=96, diffusion_steps=50)


@pytest.fixture(scope="module")
def walk_set(tmp_path_factory):
    clips = [(f"walk{i}", walking_figure(120, heading=0.7 * i, speed=0.8 + 0.1 * i), 30.0) for i in range(12)]
    built = build_monocular_set(clips, HUMAN16, MonocularConfig(min_frames=32, max_frames=48, val_fraction=0.2))
    path = tmp_path_factory.mktemp("data") / "walks.npz"
    save_monocular_set(path, built)
    return path


def read_log(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_tiny_model_learns_a_synthetic_2d_set_and_resumes(walk_set, tmp_path):
    run = tmp_path / "run"
    cfg = TrainConfig(steps=300, batch_size=16, lr=1e-3, warmup_steps=20, save_every=150, ema_decay=0.99)
    torch.set_num_threads(2)
    summary = train(walk_set, run, TINY, cfg, device="cpu", log=lambda *a: None)
    log = read_log(run)
    assert [e["step"] for e in log] == [150, 300]
    # the first steps' loss vs the last: the model has learned the walks
    first = log[0]["loss"]
    assert log[-1]["loss"] < 0.5 * first and log[-1]["val_loss_ema"] < 0.5 * first
    assert set(log[-1]["limb_return"]) == {"0", "20"}          # t = 60 is past its 50 steps
    assert summary["steps"] == 300
    model = load_checkpoint(run / "model")
    assert model.layout.name == "human16" and model.config.width == 48
    # resume: a longer run continues from step 300, not from scratch
    train(walk_set, run, TINY, TrainConfig(**{**cfg.__dict__, "steps": 330, "save_every": 30}),
          device="cpu", log=lambda *a: None)
    assert [e["step"] for e in read_log(run)] == [150, 300, 330]
    state = json.loads((run / "train_state.json").read_text())
    assert state["step"] == 330


def test_data_parallel_training_with_torchrun_on_cpu(walk_set, tmp_path):
    run = tmp_path / "ddp"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mas_cli", "train", str(walk_set), "--out", str(run), "--steps", "6", "--save-every", "3",
           "--batch-size", "4", "--width", "32", "--layers", "1", "--heads", "2", "--ff-width", "32",
           "--max-frames", "48", "--device", "cpu"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 process(es)" in r.stdout + r.stderr
    assert [e["step"] for e in read_log(run)] == [3, 6]   # written once, by rank 0
    load_checkpoint(run / "model")


def test_checkpoint_round_trip_and_clear_errors(tmp_path, tiny_checkpoint):
    m = load_checkpoint(tiny_checkpoint)
    x = torch.randn(2, 20, 16, 2)
    t = torch.tensor([3, 7])
    # float16 storage is cast back to float32 and gives (nearly) the same outputs
    save_checkpoint(tmp_path / "half", m.model, tiny_card(), dtype=torch.float16)
    half = load_checkpoint(tmp_path / "half.json")
    assert (tmp_path / "half.safetensors").stat().st_size < 0.6 * Path(str(tiny_checkpoint) + ".safetensors").stat().st_size
    torch.testing.assert_close(half.model(x, t), m.model(x, t), atol=2e-2, rtol=0)

    with pytest.raises(MasError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing")
    with pytest.raises(MasError, match="unknown model 'nosuchmodel'"):
        load_checkpoint("nosuchmodel")
    horse = KeypointLayout("horse17", tuple(f"j{i}" for i in range(17)), (-1,) + tuple(range(16)))
    with pytest.raises(MasError, match="is for keypoint layout human16"):
        load_checkpoint(tiny_checkpoint, layout=horse)
    # weights that do not fit the card
    card = json.loads(Path(str(tiny_checkpoint) + ".json").read_text())
    card["model"]["width"] = 64
    (tmp_path / "bad.json").write_text(json.dumps(card))
    (tmp_path / "bad.safetensors").write_bytes(Path(str(tiny_checkpoint) + ".safetensors").read_bytes())
    with pytest.raises(MasError, match="do not fit"):
        load_checkpoint(tmp_path / "bad")
    # a card that is not a MAS card, and a weights file that is not safetensors
    (tmp_path / "odd.json").write_text("{}")
    (tmp_path / "odd.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(MasError, match="not a MAS checkpoint card"):
        load_checkpoint(tmp_path / "odd")
    (tmp_path / "odd.json").write_text(Path(str(tiny_checkpoint) + ".json").read_text())
    with pytest.raises(MasError, match="cannot read weights"):
        load_checkpoint(tmp_path / "odd")


def test_training_refuses_data_longer_than_the_model(walk_set, tmp_path):
    with pytest.raises(MasError, match="max_frames"):
        train(walk_set, tmp_path / "r", ModelConfig(max_frames=16, width=16, layers=1, heads=2, ff_width=16),
              TrainConfig(steps=1), device="cpu", log=lambda *a: None)


def test_padding_does_not_change_the_valid_frames():
    torch.manual_seed(0)
    model = MotionDenoiser(TINY).eval()
    x = torch.randn(1, 30, 16, 2)
    t = torch.tensor([5])
    alone = model(x, t)
    padded = model(torch.cat([x, torch.randn(1, 10, 16, 2)], 1), t, torch.tensor([30]))
    torch.testing.assert_close(padded[:, :30], alone, atol=1e-5, rtol=0)


def test_an_upsampled_output_cannot_alternate_and_warm_starts_from_a_frames_model(tmp_path):
    from dataclasses import replace
    from mas_engine.train import warm_start
    torch.manual_seed(0)
    frames = MotionDenoiser(TINY).eval()
    up = MotionDenoiser(replace(TINY, output="upsampled")).eval()
    up.load_state_dict(frames.state_dict())                          # the same weights
    x, t = torch.randn(4, 40, 16, 2), torch.tensor([3, 20, 50, 90])
    a, b = frames(x, t), up(x, t)
    nyquist = lambda y: (y * (-1.0) ** torch.arange(y.shape[1])[None, :, None, None]).sum(1).abs().mean()  # noqa: E731
    assert nyquist(b) < 0.1 * nyquist(a)                              # no half-frame-rate alternation
    centres = a.reshape(4, 20, 2, 32).mean(2)                         # a token's value: its frames' mean
    assert torch.allclose(b[:, 2:-2:2].reshape(4, 18, 32), 0.75 * centres[:, 1:-1] + 0.25 * centres[:, :-2], atol=1e-5)
    assert TINY.alternates and not replace(TINY, output="upsampled").alternates
    save_checkpoint(tmp_path / "frames", frames, tiny_card())
    warm_start(up, tmp_path / "frames.json")                          # same weights, other output: allowed
    with pytest.raises(MasError, match="another architecture"):
        warm_start(MotionDenoiser(replace(TINY, width=64, output="upsampled")), tmp_path / "frames.json")


def test_a_model_grown_deeper_starts_as_its_source_and_then_learns(walk_set, tmp_path):
    from dataclasses import replace
    from mas_engine.train import warm_start
    torch.manual_seed(0)
    src = MotionDenoiser(TINY)
    for p in src.parameters():           # not the zero output layer of a fresh model: the check would be empty
        torch.nn.init.normal_(p, std=0.05)
    save_checkpoint(tmp_path / "shallow", src.eval(), tiny_card())
    deep = MotionDenoiser(replace(TINY, layers=4))
    warm_start(deep, tmp_path / "shallow.json")
    x, t = torch.randn(3, 40, 16, 2), torch.tensor([0, 20, 49])
    assert torch.allclose(deep.eval()(x, t), src(x, t), atol=1e-5)          # the new layers add nothing yet
    assert deep.num_parameters() > src.num_parameters()
    save_checkpoint(tmp_path / "deep", deep, tiny_card())
    with pytest.raises(MasError, match="layers 4 .here 2."):                 # shrinking is refused
        warm_start(MotionDenoiser(TINY), tmp_path / "deep.json")
    run = tmp_path / "run"
    train(walk_set, run, replace(TINY, layers=4), TrainConfig(steps=40, batch_size=8, save_every=40, lr=1e-3,
                                                            motion_check=0), device="cpu", log=lambda *a: None,
          init=tmp_path / "shallow.json")
    grown = load_checkpoint(run / "model.json").model
    top = grown.encoder.layers[3].linear2.weight
    assert top.abs().max() > 0                                                 # the new layers learnt


def test_a_v_model_returns_x0_passes_a_clean_input_through_and_learns(walk_set, tmp_path):
    """prediction="v": the model returns x0 = sqrt(ab) x_t - sqrt(1 - ab) v; warm-started from an x0 model
    its output layer starts at zero (x0 = sqrt(ab) x_t: a nearly clean input comes back nearly as it
    went in); its loss is v's squared error (capped at SNR + 1 = 50), and a tiny one learns the walks."""
    from dataclasses import replace
    from mas_engine.diffusion import alpha_bar_schedule
    from mas_engine.train import noise_level_weights, warm_start

    torch.manual_seed(0)
    vcfg = replace(TINY, prediction="v")
    save_checkpoint(tmp_path / "x0", MotionDenoiser(TINY).eval(), tiny_card())
    v = MotionDenoiser(vcfg).eval()
    warm_start(v, tmp_path / "x0.json")
    ab = alpha_bar_schedule("cosine", 50).float()
    x, t = torch.randn(3, 40, 16, 2), torch.tensor([0, 25, 49])
    with torch.no_grad():
        assert torch.allclose(v(x, t), ab[t].sqrt()[:, None, None, None] * x)
        v.output.bias.fill_(1.0)                                        # v = 1 everywhere
        expected = ab[t].sqrt()[:, None, None, None] * x - (1 - ab[t]).sqrt()[:, None, None, None]
        assert torch.allclose(v(x, t), expected, atol=1e-6)
        v.output.bias.zero_()
    w = noise_level_weights(ab, "v")
    raw = (1 / (1 - ab)).clamp(max=50)
    assert torch.allclose(w, raw / raw.mean()) and (w[1:] <= w[:-1] + 1e-6).all() and w[0] > 10 * w[-1]
    run = tmp_path / "run"
    cfg = TrainConfig(steps=200, batch_size=16, lr=1e-3, warmup_steps=20, save_every=100, ema_decay=0.99,
                      motion_check=0)
    torch.set_num_threads(2)
    train(walk_set, run, vcfg, cfg, device="cpu", log=lambda *a: None)
    # the x0 error on the validation walks (uniform over levels, as for every run), against the untrained
    # model's (x0 = sqrt(ab) x_t)
    from mas_engine.dataset import MotionData2D
    from mas_engine.train import validation_loss
    untrained = validation_loss(v.eval(), ab, MotionData2D.load(walk_set, "val"), "cpu")
    assert read_log(run)[-1]["val_loss_ema"] < 0.5 * untrained
    assert load_checkpoint(run / "model").config.prediction == "v"
    with pytest.raises(MasError, match="prediction"):
        from mas_engine.catalogue import check_config
        check_config(replace(TINY, prediction="eps"), "test")


def test_a_root_frame_model_sees_joints_relative_to_the_root_and_learns(walk_set, tmp_path):
    """frame="root": the network reads each joint relative to the root joint in its frame (the root where
    it is), an exact, invertible change of coordinates, so a translated motion gives the same limb
    inputs; the model still returns image coordinates, warm-starts from an image-frame model, learns
    the walks, and a bad frame is refused."""
    from dataclasses import replace

    from mas_engine.catalogue import check_config
    from mas_engine.dataset import MotionData2D
    from mas_engine.diffusion import alpha_bar_schedule
    from mas_engine.train import validation_loss, warm_start

    torch.manual_seed(0)
    rcfg = replace(TINY, frame="root", root=3)
    m = MotionDenoiser(rcfg).eval()
    x = torch.randn(2, 12, 16, 2)
    y = m.to_root_frame(x)
    assert torch.allclose(m.from_root_frame(y), x, atol=1e-6)
    assert torch.equal(y[:, :, 3], x[:, :, 3])                                # the root where it is
    assert torch.allclose(y[:, :, 7], x[:, :, 7] - x[:, :, 3])                # a joint relative to it
    moved = m.to_root_frame(x + torch.tensor([5.0, -2.0]))                     # the whole motion 5 units away
    assert torch.allclose(moved[:, :, 7], y[:, :, 7], atol=1e-5)
    with torch.no_grad():                                                     # a zero network gives zero
        m.output.weight.zero_()
        m.output.bias.zero_()
        m.output.bias.view(2, 16, 2)[:, 3] = 1.0                              # the root at (1, 1)..
        out = m(x, torch.tensor([0, 5]))
    assert torch.allclose(out, torch.ones_like(out))                          # ..and every joint with it
    save_checkpoint(tmp_path / "img", MotionDenoiser(TINY).eval(), tiny_card())
    warm_start(MotionDenoiser(rcfg), tmp_path / "img.json")                   # same weights' shapes
    run = tmp_path / "run"
    cfg = TrainConfig(steps=200, batch_size=16, lr=1e-3, warmup_steps=20, save_every=100, ema_decay=0.99,
                      motion_check=0)
    torch.set_num_threads(2)
    train(walk_set, run, replace(TINY, frame="root"), cfg, device="cpu", log=lambda *a: None)
    trained = load_checkpoint(run / "model")
    assert trained.config.frame == "root" and trained.config.root == trained.layout.root
    ab = alpha_bar_schedule("cosine", 50).float()
    untrained = validation_loss(MotionDenoiser(replace(TINY, frame="root")).eval(), ab,
                                MotionData2D.load(walk_set, "val"), "cpu")
    assert read_log(run)[-1]["val_loss_ema"] < 0.5 * untrained
    with pytest.raises(MasError, match="frame"):
        check_config(replace(TINY, frame="world"), "test")
    with pytest.raises(MasError, match="root"):
        check_config(replace(TINY, root=16), "test")


def test_a_standardised_model_reads_z_scores_keeps_its_statistics_and_learns(walk_set, tmp_path):
    """standardise: the network reads and writes each coordinate of its frame z-scored by the training
    data's statistics (fit from the data, saved with the weights), its input at unit variance at every
    noise level; a zero network gives the data's mean pose; a damaged std is refused on load."""
    from dataclasses import replace

    from safetensors.torch import load_file, save_file

    from mas_engine.catalogue import check_config
    from mas_engine.dataset import MotionData2D
    from mas_engine.diffusion import alpha_bar_schedule, q_sample
    from mas_engine.train import validation_loss, warm_start

    torch.manual_seed(0)
    scfg = replace(TINY, frame="root", root=3, standardise=True)
    m = MotionDenoiser(scfg).eval()
    mean, std = torch.randn(16, 2), torch.rand(16, 2) + 0.1                # the network frame's statistics
    y = mean + std * torch.randn(400, 40, 16, 2)
    y[:, 30:] = 1e3                                                           # frames past each window's length
    pose = m.from_root_frame(y)
    m.fit_standardisation(pose, torch.full((400,), 30))
    assert torch.allclose(m.feature_mean, mean, atol=0.02) and torch.allclose(m.feature_std, std, rtol=0.03)
    seen = []
    m.input.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    ab = alpha_bar_schedule("cosine", 50).float()
    x0 = pose[:, :30]
    for t in (0, 25, 49):                                                     # unit variance at every level
        m(q_sample(x0, ab[torch.full((400,), t)], torch.randn(x0.shape)), torch.full((400,), t))
        z = seen[-1].reshape(400, 15, 2, 16, 2)
        assert abs(float(z.mean())) < 0.05 and 0.9 < float(z.var()) < 1.1, t
    with torch.no_grad():                                                     # a zero network: the mean pose
        m.output.weight.zero_()
        m.output.bias.zero_()
        assert torch.allclose(m.to_root_frame(m(x0[:2], torch.tensor([0, 9]))), m.feature_mean.expand(2, 30, 16, 2),
                              atol=1e-5)
    save_checkpoint(tmp_path / "std", m, tiny_card())                         # the statistics travel with it
    back = load_checkpoint(tmp_path / "std")
    assert torch.equal(back.model.feature_std, m.feature_std)
    weights = load_file(str(tmp_path / "std.safetensors"))
    weights["feature_std"][0, 0] = 0.0
    save_file(weights, str(tmp_path / "std.safetensors"))
    with pytest.raises(MasError, match="damaged"):
        load_checkpoint(tmp_path / "std")
    save_checkpoint(tmp_path / "img", MotionDenoiser(TINY).eval(), tiny_card())
    warm = MotionDenoiser(scfg)
    warm.fit_standardisation(pose, torch.full((400,), 30))
    warm_start(warm, tmp_path / "img.json")                                   # keeps its own statistics
    assert torch.equal(warm.feature_std, m.feature_std)
    run = tmp_path / "run"
    cfg = TrainConfig(steps=200, batch_size=16, lr=1e-3, warmup_steps=20, save_every=100, ema_decay=0.99,
                      motion_check=0)
    torch.set_num_threads(2)
    train(walk_set, run, replace(TINY, frame="root", standardise=True), cfg, device="cpu", log=lambda *a: None)
    trained = load_checkpoint(run / "model")
    data = MotionData2D.load(walk_set, "train")
    fresh = MotionDenoiser(trained.config)
    fresh.fit_standardisation(data.pose, data.length)
    assert torch.allclose(trained.model.feature_std, fresh.feature_std)    # fit on the training windows
    untrained = validation_loss(fresh.eval(), ab, MotionData2D.load(walk_set, "val"), "cpu")
    assert read_log(run)[-1]["val_loss_ema"] < 0.5 * untrained
    with pytest.raises(MasError, match="standardise"):
        check_config(replace(TINY, standardise="yes"), "test")


def test_without_the_output_norm_the_input_reaches_the_output_linearly(tmp_path):
    """output_norm=False: no LayerNorm between the residual stream and the output layer, so with the
    blocks' own outputs at zero the model is an affine map of its input (with the norm it is not);
    such a model saves and loads, and a non-boolean setting is refused."""
    from dataclasses import replace

    from mas_engine.catalogue import check_config

    torch.manual_seed(0)
    x1, x2, t = torch.randn(2, 12, 16, 2), torch.randn(2, 12, 16, 2), torch.tensor([0, 7])

    def affine_gap(cfg):
        m = MotionDenoiser(cfg).eval()
        with torch.no_grad():
            for layer in m.encoder.layers:                 # the blocks add nothing to the residual stream
                for p in (*layer.self_attn.out_proj.parameters(), *layer.linear2.parameters()):
                    p.zero_()
            zero = m(torch.zeros_like(x1), t)
            return float((m(x1 + x2, t) - m(x1, t) - m(x2, t) + zero).abs().max()), m

    gap, m = affine_gap(replace(TINY, output_norm=False))
    assert gap < 1e-4 and "norm.weight" not in m.state_dict()
    assert affine_gap(TINY)[0] > 0.1
    save_checkpoint(tmp_path / "nonorm", m, tiny_card())
    back = load_checkpoint(tmp_path / "nonorm")
    assert back.config.output_norm is False and torch.allclose(back.model(x1, t), m(x1, t), atol=1e-5)
    with pytest.raises(MasError, match="output_norm"):
        check_config(replace(TINY, output_norm=1), "test")


def test_limb_return_is_the_share_of_the_limbs_motion_a_denoiser_gives_back(walk_set):
    """limb_return on cases with known answers: a denoiser that gives back its input returns all of the
    limbs' motion at t = 0 (sqrt(alpha_bar) of it at any t: the noise is uncorrelated with it), one that
    halves each joint's offset from the root returns half, and one that returns a still pose none."""
    from mas_engine.dataset import MotionData2D
    from mas_engine.diffusion import alpha_bar_schedule
    from mas_engine.train import limb_return

    data = MotionData2D.load(walk_set, "val")
    ab = alpha_bar_schedule("cosine", 50).float()
    r = data.layout.root

    class Fake(torch.nn.Module):
        def __init__(self, f):
            super().__init__()
            self.f = f

        def forward(self, x, t):
            return self.f(x, t)

    unscale = lambda x, t: x / ab[t].sqrt()[:, None, None, None]
    given_back = limb_return(Fake(lambda x, t: x), ab, data, "cpu", steps=(0, 25), frames=30)
    assert given_back["0"] == pytest.approx(1.0, abs=0.03)
    assert given_back["25"] == pytest.approx(float(ab[25].sqrt()), abs=0.1)
    halved = limb_return(Fake(lambda x, t: (lambda y: y[:, :, r:r + 1] + 0.5 * (y - y[:, :, r:r + 1]))(unscale(x, t))),
                         ab, data, "cpu", steps=(0,), frames=30)
    assert halved["0"] == pytest.approx(0.5, abs=0.03)
    still = limb_return(Fake(lambda x, t: torch.zeros_like(x)), ab, data, "cpu", steps=(0,), frames=30)
    assert still["0"] == 0.0


def test_still_windows_can_be_drawn_less_often():
    """Windows that barely move (here: constant poses) are the stillest by speed, and with a weight
    of 1/4 the batches hold about 4 moving windows for each still one (half of each in the set)."""
    import numpy as np

    from mas_engine.dataset import MotionData2D

    rng = np.random.default_rng(0)
    pose = np.ones((40, 30, 16, 3))
    pose[..., :2] = rng.normal(size=(40, 1, 16, 2))                          # 40 still windows...
    t = np.arange(30)[:, None, None] / 30.0
    pose[20:, :, :, 0] += np.sin(2 * np.pi * t[..., 0])                       # ...the last 20 move
    data = MotionData2D(pose, np.full(40, 30), {"layout": HUMAN16.to_dict(), "scale": 0.5, "fps": 30.0})
    speed = data.speed()
    assert speed[:20].max() < 1e-5 and speed[20:].min() > 0.5                 # metres a second
    w = data.still_weights(0.5, 0.25)
    assert torch.equal(w, torch.tensor([0.25] * 20 + [1.0] * 20))
    g = torch.Generator().manual_seed(0)
    batches = data.batches(8, g, mirror=False, weights=w)
    moving = []
    for _ in range(200):
        x, _, _ = next(batches)
        moving += ((x[:, 1:] - x[:, :-1]).abs().amax((1, 2, 3)) > 1e-4).tolist()
    assert 0.75 < np.mean(moving) < 0.85, np.mean(moving)                    # 1 / (1 + 0.25) = 0.8


def test_noise_level_weights_and_velocity_loss():
    """alpha_bar and min_snr weightings: mean 1, largest at the least noise and falling; the velocity loss
    ignores a constant offset, sees alternation and gliding feet, and respects the mask."""
    from mas_engine.diffusion import alpha_bar_schedule
    from mas_engine.train import masked_velocity_loss, masked_x0_loss, noise_level_weights

    ab = alpha_bar_schedule("cosine", 100).float()
    assert torch.equal(noise_level_weights(ab, "uniform"), torch.ones(100))
    w = noise_level_weights(ab, "alpha_bar")
    assert abs(float(w.mean()) - 1) < 1e-5 and (w[1:] <= w[:-1]).all() and w[-1] < 0.01 * w[0]
    m = noise_level_weights(ab, "min_snr")                           # Min-SNR-5: min(SNR, 5), mean 1
    snr = ab / (1 - ab)
    assert abs(float(m.mean()) - 1) < 1e-5 and (m[1:] <= m[:-1] + 1e-6).all()
    capped = snr >= 5
    assert torch.allclose(m[capped], m[0].expand(int(capped.sum())))  # the least noisy levels alike, capped
    torch.testing.assert_close(m[~capped] / m[0], snr[~capped] / 5)   # the rest in proportion to their SNR
    with pytest.raises(MasError, match="noise weighting"):
        noise_level_weights(ab, "snr")

    x0 = torch.zeros(2, 10, 3, 2)
    x0[:, :, :, 0] = torch.arange(10.0)[:, None] * 0.1                 # every joint moves 0.1 a frame
    conf = torch.ones(2, 10, 3)
    assert float(masked_velocity_loss(x0 + 0.5, x0, conf)) < 1e-12     # offset: positions wrong, velocity right
    assert float(masked_x0_loss(x0 + 0.5, x0, conf)) == pytest.approx(0.25)
    alternating = x0.clone()
    alternating[:, 1::2] += 0.05                                      # both coordinates +-0.05 a frame
    assert float(masked_velocity_loss(alternating, x0, conf)) == pytest.approx(0.05 ** 2, rel=1e-4)
    masked = conf.clone()
    masked[:, 1::2] = 0                                               # no two confident frames in a row
    assert float(masked_velocity_loss(alternating, x0, masked)) == 0.0
    # per-window weights: the second window counted twice as much
    pred = x0.clone()
    pred[1] += 0.1
    assert float(masked_x0_loss(pred, x0, conf, torch.tensor([1.0, 2.0]))) == pytest.approx(
        2 * float(masked_x0_loss(pred, x0, conf)))


def test_weighted_training_learns_and_is_recorded(walk_set, tmp_path):
    """The alpha_bar weighting with a velocity term still trains a tiny model, and the run's card says so."""
    run = tmp_path / "run"
    cfg = TrainConfig(steps=150, batch_size=16, lr=1e-3, warmup_steps=20, save_every=75, ema_decay=0.99,
                      noise_weighting="alpha_bar", velocity_weight=5.0)
    torch.set_num_threads(2)
    train(walk_set, run, TINY, cfg, device="cpu", log=lambda *a: None)
    log = read_log(run)
    assert log[-1]["loss"] < 0.6 * log[0]["loss"]
    card = json.loads((run / "model.json").read_text())["training"]["train"]
    assert card["noise_weighting"] == "alpha_bar" and card["velocity_weight"] == 5.0
    # every checkpoint logs how alive the model's own 2D samples are, next to the data's (walks: they travel)
    check = log[-1]["motion_2d"]
    assert check["samples"]["windows"] == 64 and 0 <= check["samples"]["still_share"] <= 1
    assert check["data"]["still_share"] == 0.0 and check["data"]["travelling_share"] > 0.5


def test_foot_contact_loss_sees_a_glide_where_the_data_stands():
    """Known answers: data whose foot 0 stands and foot 1 swings; a prediction whose feet both glide
    at 0.1 a frame costs 0.1^2 / 2 (only the standing foot counts; per coordinate, as the x0 loss),
    one that stands costs 0, and an
    unconfident standing foot is not counted."""
    from mas_engine.train import masked_contact_loss

    F = 12
    x0 = torch.zeros(1, F, 3, 2)
    x0[0, :, 2, 0] = torch.arange(F) * 0.2                    # joint 2 (foot 1) swings; joint 1 (foot 0) stands
    conf = torch.ones(1, F, 3)
    glide = x0.clone()
    glide[0, :, 1:, 0] += torch.arange(F)[:, None] * 0.1
    assert float(masked_contact_loss(glide, x0, conf, [1, 2], still=0.01)) == pytest.approx(0.1 ** 2 / 2)
    assert float(masked_contact_loss(x0, x0, conf, [1, 2], still=0.01)) == 0.0
    conf[0, :, 1] = 0.0
    assert float(masked_contact_loss(glide, x0, conf, [1, 2], still=0.01)) == 0.0


def test_contact_weight_trains_and_is_recorded(walk_set, tmp_path):
    run = tmp_path / "run"
    torch.set_num_threads(2)
    train(walk_set, run, TINY, TrainConfig(steps=60, batch_size=16, lr=1e-3, warmup_steps=10, save_every=60,
                                           contact_weight=5.0, motion_check=0), device="cpu", log=lambda *a: None)
    assert json.loads((run / "model.json").read_text())["training"]["train"]["contact_weight"] == 5.0
    assert math.isfinite(read_log(run)[-1]["loss"])


def test_a_linear_skip_filters_the_input_over_time_is_fit_to_the_data_and_warm_starts(walk_set, tmp_path):
    """skip_radius = r: x0 = h_t * x_t + c_t network. The taps repeat each window's first and last valid
    frame beyond its ends (padding is never read). Fit on the walks, the filter alone gives back their limbs
    at t = 0 where a fresh network gives back none, with a far smaller x0 error, and c_t is what it leaves;
    a warm start from a model without a skip keeps the body and zeroes the output layer (the filter alone);
    a short run's network then adds to the filter; it saves and loads, and an absurd radius is refused."""
    from dataclasses import replace

    from mas_engine.catalogue import check_config
    from mas_engine.dataset import MotionData2D
    from mas_engine.diffusion import alpha_bar_schedule
    from mas_engine.train import fit_linear_skip, limb_return, noise_level_weights, validation_loss, warm_start

    torch.manual_seed(0)
    cfg = replace(TINY, skip_radius=2)
    m = MotionDenoiser(cfg).eval()
    # a ramp over 6 valid frames, then NaN padding: the taps of frame f are x_f, x_{f-1} + x_{f+1}, x_{f-2} + x_{f+2}
    x = torch.arange(6.0)[None, :, None, None].expand(1, 6, 16, 2)
    x = torch.cat([x, torch.full((1, 2, 16, 2), float("nan"))], 1)
    taps = m.skip_taps(x, torch.tensor([6]))[0, :6, 0, 0]
    assert taps.tolist() == [[0, 1, 2], [1, 2, 3], [2, 4, 4], [3, 6, 6], [4, 8, 7], [5, 9, 8]]
    y = torch.randn(2, 8, 16, 2)
    with torch.no_grad():                                  # h = the identity, c = 0: x0 = x_t
        m.skip_out.zero_()
        m.skip_filter.zero_()
        m.skip_filter[:, 0] = 1.0
        assert torch.equal(m(y, torch.tensor([0, 9])), y)

    val, train_set = MotionData2D.load(walk_set, "val"), MotionData2D.load(walk_set, "train")
    ab = alpha_bar_schedule("cosine", 50).float()
    save_checkpoint(tmp_path / "plain", MotionDenoiser(TINY).eval(), tiny_card())
    plain = load_checkpoint(tmp_path / "plain").model
    warm = MotionDenoiser(cfg).eval()
    assert not warm_start(warm, tmp_path / "plain.json")                 # no skip came with it: fit one
    assert torch.equal(warm.input.weight, plain.input.weight) and not warm.output.weight.any()
    before = limb_return(plain, ab, val, "cpu", steps=(0,), frames=30)["0"]
    before_loss = validation_loss(plain, ab, val, "cpu", batches=2)
    fit_linear_skip(warm, ab, train_set, "cpu", num=32)
    filter_loss = validation_loss(warm, ab, val, "cpu", batches=2)
    assert abs(before) < 0.2 and limb_return(warm, ab, val, "cpu", steps=(0,), frames=30)["0"] > 0.6
    assert filter_loss < 0.5 * before_loss
    assert 0 < float(warm.skip_out[0]) < float(warm.skip_out[-1]) < 2       # less is left at low noise
    w = noise_level_weights(ab, "skip", warm.skip_out)
    assert torch.allclose(w, warm.skip_out ** -2 / (warm.skip_out ** -2).mean())

    run = tmp_path / "run"
    torch.set_num_threads(2)
    train(walk_set, run, cfg, TrainConfig(steps=150, batch_size=16, lr=1e-3, warmup_steps=20, save_every=150,
                                          ema_decay=0.99, motion_check=0), device="cpu", log=lambda *a: None,
          init=tmp_path / "plain.json")
    back = load_checkpoint(run / "model")
    assert back.config.skip_radius == 2 and back.model.output.weight.any()
    assert read_log(run)[-1]["val_loss_ema"] < filter_loss
    # a run from a skip model keeps its trained skip and network as they are (a refit would undo the
    # filter's training and leave the network's output scaled for another c_t)
    again = MotionDenoiser(cfg).eval()
    assert warm_start(again, run / "model.json")
    assert torch.equal(again.skip_filter, back.model.skip_filter) and torch.equal(again.output.weight, back.model.output.weight)
    with pytest.raises(MasError, match="skip_radius"):
        check_config(replace(TINY, skip_radius=-1), "test")


def test_a_self_conditioned_model_starts_as_its_source_learns_to_read_its_estimate_and_samples_with_it(walk_set, tmp_path):
    """self_condition: warm-started, its own input layer is zero (the model is its source, whatever it
    reads); training teaches that layer (half the windows read the network's own x0); and sampling gives
    it the x0 of the step before, in one piece and in windows (each window's frames of it, in its frame)."""
    from dataclasses import replace
    from mas_engine.sampler import MasSettings, mas_denoiser
    from mas_engine.train import warm_start
    torch.manual_seed(0)
    src = MotionDenoiser(TINY)
    for p in src.parameters():
        torch.nn.init.normal_(p, std=0.05)
    save_checkpoint(tmp_path / "plain", src.eval(), tiny_card())
    sc = MotionDenoiser(replace(TINY, self_condition=True)).eval()
    warm_start(sc, tmp_path / "plain.json")
    x, t = torch.randn(3, 40, 16, 2), torch.tensor([0, 20, 49])
    with torch.no_grad():
        assert torch.equal(sc(x, t, x0_prev=torch.randn_like(x)), src(x, t))
    run = tmp_path / "run"
    train(walk_set, run, replace(TINY, self_condition=True), TrainConfig(steps=30, batch_size=8, save_every=30,
          lr=1e-3, motion_check=0), device="cpu", log=lambda *a: None, init=tmp_path / "plain.json")
    m = load_checkpoint(run / "model.json")
    assert m.config.self_condition and m.model.self_cond.weight.abs().max() > 0
    with torch.no_grad():                            # now what it reads changes what it says
        assert not torch.allclose(m.model(x, t, x0_prev=x), m.model(x, t))

    for frames in (48, 3 * 48):                      # in one piece, and in windows
        seen = []
        real = m.model.forward
        m.model.forward = lambda x, t, length=None, x0_prev=None: seen.append(x0_prev) or real(x, t, length, x0_prev)
        denoise = mas_denoiser(m, frames, MasSettings())
        xt = torch.randn(2, frames, 16, 2)
        with torch.no_grad():
            first = denoise(xt, 5)                   # the chain's first step: nothing to read
            denoise(xt, 4, first)
        m.model.forward = real
        calls = len(seen) // 2
        assert all(p is None for p in seen[:calls]) and all(p is not None for p in seen[calls:])
        if frames == 48:                              # the previous x0, as given
            assert torch.equal(seen[1], first)
        else:                  # each window's frames of it, moved with the window (the first window starts at 0)
            prev = torch.cat(seen[calls:])
            assert prev.shape[1] < frames
            offset = prev[0] - first[0, :prev.shape[1]]
            assert torch.allclose(offset, offset[:1, :1].expand_as(offset), atol=1e-5)


def test_window_pace_of_known_motions_and_pace_classes_that_split_the_data_evenly():
    """window_pace: a still motion 0, a constant-speed one its speed, whatever the lag; padding never read.
    fit_pace: each class holds as many windows; pace_class bins new motions by those edges."""
    from mas_engine.model import window_pace
    from dataclasses import replace
    still = torch.ones(2, 30, 16, 2)
    assert torch.equal(window_pace(still), torch.zeros(2))
    walk = torch.zeros(1, 30, 16, 2)
    walk[..., 0] = 0.02 * torch.arange(30.0)[:, None]             # 0.02 a frame along u
    for lag in (1, 6, 40):
        assert torch.allclose(window_pace(walk, lag=lag), torch.tensor([0.02]))
    padded = walk.clone()
    padded[:, 20:] = 99.0                                         # past its 20 valid frames
    assert torch.allclose(window_pace(padded, torch.tensor([20])), torch.tensor([0.02]))
    m = MotionDenoiser(replace(TINY, pace_classes=4))
    speeds = torch.linspace(0.0, 0.03, 400)
    pose = speeds[:, None, None, None] * torch.arange(30.0)[None, :, None, None] * torch.tensor([1.0, 0.0])
    pose = pose.expand(-1, -1, 16, -1).contiguous()
    m.fit_pace(pose, torch.full((400,), 30))
    counts = torch.bincount(m.pace_class(pose), minlength=4)
    assert counts.tolist() == [100, 100, 100, 100]
    assert m.pace_class(pose[:1]).item() == 0 and m.pace_class(pose[-1:]).item() == 3


def test_window_reach_tells_one_long_sweep_from_a_tremor_and_bins_by_it():
    """window_reach: still 0; one joint that sweeps 0.015 a frame (its joint-mean speed a sixteenth of that)
    reaches 0.015, as far as a body that travels at that speed; a whole body trembling 2 cm at 4 Hz reaches
    at most 4 cm in 30 frames, less than the sweep, though window_pace finds it faster than the sweep; padding
    never read; a window shorter than the lag measures over its length. A model with pace_measure "reach"
    bins by it, so the sweep is in a livelier class than the tremor."""
    from mas_engine.catalogue import check_config
    from mas_engine.model import window_pace, window_reach
    from dataclasses import replace
    assert torch.equal(window_reach(torch.ones(2, 60, 16, 2)), torch.zeros(2))
    sweep = torch.zeros(1, 60, 16, 2)
    sweep[0, :, 12, 0] = 0.015 * torch.arange(60.0)                  # the left wrist alone
    travel = torch.zeros(1, 60, 16, 2)
    travel[..., 0] = 0.015 * torch.arange(60.0)[:, None]             # everything, the root too
    tremor = torch.zeros(1, 60, 16, 2)
    tremor[0, :, 1:, 0] = 0.02 * torch.sin(torch.arange(60.0) * 2 * torch.pi / 8)[:, None]
    assert torch.allclose(window_reach(sweep), torch.tensor([0.015]))
    assert torch.allclose(window_reach(travel), torch.tensor([0.015]))
    assert torch.allclose(window_pace(sweep), torch.tensor([0.015 / 16]))
    assert window_reach(tremor).item() <= 0.04 / 30 < 0.015
    assert window_pace(tremor).item() > window_pace(sweep).item()
    padded = sweep.clone()
    padded[:, 40:] = 99.0
    assert torch.allclose(window_reach(padded, torch.tensor([40])), torch.tensor([0.015]))
    assert torch.allclose(window_reach(sweep, torch.tensor([12])), torch.tensor([0.015]))   # lag 11
    m = MotionDenoiser(replace(TINY, pace_classes=2, pace_measure="reach"))
    m.fit_pace(torch.cat([tremor, sweep, tremor, sweep]), torch.full((4,), 60))
    assert m.pace_class(torch.cat([tremor, sweep])).tolist() == [0, 1]
    with pytest.raises(MasError, match="pace measure"):
        check_config(replace(TINY, pace_measure="wobble"), "test")


def test_a_pace_model_starts_as_its_source_and_learns_to_follow_its_class(tmp_path):
    """pace_classes: warm-started, its embedding is zero (any class gives the source's output); trained on
    still and walking figures, 2D samples told the stillest class move less than those told the liveliest,
    and "data" gives the seeds the classes in turn."""
    from dataclasses import replace
    from mas_engine.model import window_pace
    from mas_engine.sampler import pace_classes, sample_2d_batch
    from mas_engine.train import warm_start
    torch.manual_seed(0)
    src = MotionDenoiser(TINY)
    save_checkpoint(tmp_path / "plain", src.eval(), tiny_card())
    paced = MotionDenoiser(replace(TINY, pace_classes=2)).eval()
    warm_start(paced, tmp_path / "plain.json")
    x, t = torch.randn(3, 40, 16, 2), torch.tensor([0, 20, 49])
    with torch.no_grad():
        assert torch.equal(paced(x, t, pace=torch.tensor([0, 1, 2])), src(x, t))

    walks = [walking_figure(120, heading=0.7 * i, speed=0.8 + 0.1 * i) for i in range(6)]
    clips = [(f"walk{i}", w, 30.0) for i, w in enumerate(walks)]
    clips += [(f"stand{i}", np.repeat(w[:1], 120, 0), 30.0) for i, w in enumerate(walks)]
    built = build_monocular_set(clips, HUMAN16, MonocularConfig(min_frames=32, max_frames=48, val_fraction=0.0))
    save_monocular_set(tmp_path / "mixed.npz", built)
    run = tmp_path / "run"
    torch.set_num_threads(2)
    train(tmp_path / "mixed.npz", run, replace(TINY, pace_classes=2), TrainConfig(
        steps=400, batch_size=16, lr=1e-3, warmup_steps=20, save_every=400, ema_decay=0.99, motion_check=0),
        device="cpu", log=lambda *a: None)
    m = load_checkpoint(run / "model.json")
    seeds = list(range(8))
    with torch.no_grad():
        slow = window_pace(sample_2d_batch(m, seeds, 48, 25, "cpu", pace=0))
        fast = window_pace(sample_2d_batch(m, seeds, 48, 25, "cpu", pace=1))
    # the same noise, only the class differs: every seed moves less when told the stillest class (a model
    # that does not read its class gives both alike), and much less on the whole
    assert (slow < fast).all() and slow.mean() < 0.8 * fast.mean(), (slow, fast)
    assert pace_classes(m, [0, 1, 2, 7, 10], "data", "cpu").tolist() == [1, 0, 1, 0, 1]   # in turn, the liveliest first
    # a card's pace shares: 400 consecutive seeds hold each class within 2 motions of its share, seed 0 the
    # liveliest; the exported card keeps them, and shares of the wrong count or sum are refused before writing
    export_model(run / "model.json", "shared", tmp_path, pace_shares=[0.7, 0.3])
    shared = load_checkpoint(tmp_path / "shared.json")
    assert shared.pace_shares == pytest.approx([0.7, 0.3]) and m.pace_shares is None
    drawn = pace_classes(shared, range(1000, 1400), "data", "cpu")
    assert abs(int((drawn == 1).sum()) - 120) <= 2 and pace_classes(shared, [0], "data", "cpu").tolist() == [1]
    # "training" ignores the card's shares: the classes in turn, as the training windows have them
    assert pace_classes(shared, [0, 1, 2, 7, 10], "training", "cpu").tolist() == [1, 0, 1, 0, 1]
    for bad in ([0.5, 0.3], [1.0], [1.2, -0.2], [float("nan"), 1.0]):
        with pytest.raises(MasError, match="shares from 0 to 1 that sum to 1"):
            export_model(run / "model.json", "bad", tmp_path, pace_shares=bad)
    assert not (tmp_path / "bad.json").exists()
    card = json.loads((tmp_path / "shared.json").read_text())
    card["mas_sampling"]["pace_shares"] = [0.9, 0.3]
    (tmp_path / "shared.json").write_text(json.dumps(card))
    with pytest.raises(MasError, match="mas_sampling.pace_shares"):
        load_checkpoint(tmp_path / "shared.json")

    # guidance distillation: a student started from the model learns its guided x0 in one call, and its card
    # tells the sampler not to guide again
    from mas_engine.diffusion import alpha_bar_schedule, q_sample
    from mas_engine.sampler import pace_guided
    student = tmp_path / "student"
    train(tmp_path / "mixed.npz", student, replace(TINY, pace_classes=2), TrainConfig(
        steps=300, batch_size=16, lr=3e-4, warmup_steps=20, save_every=300, ema_decay=0.99, motion_check=0,
        teacher=str(run / "model.json"), teacher_guidance=5.0, teacher_away_from=["any", "0"]), device="cpu",
        log=lambda *a: None, init=run / "model.json")     # class 0 guided away from "any", class 1 from class 0
    d = load_checkpoint(student / "model.json")
    assert m.pace_guidance == 2.0 and d.pace_guidance == 1.0
    assert torch.equal(d.model.pace_edges, m.model.pace_edges)
    from mas_engine.dataset import MotionData2D
    data = MotionData2D.load(tmp_path / "mixed.npz")
    g = torch.Generator().manual_seed(3)
    x0, length = torch.as_tensor(data.pose[:32, :48, :, :2]), torch.as_tensor(data.length[:32])
    t = torch.randint(0, TINY.diffusion_steps, (32,), generator=g)
    x_t = q_sample(x0, alpha_bar_schedule(TINY.schedule, TINY.diffusion_steps).float()[t], torch.randn(x0.shape, generator=g))
    with torch.no_grad():
        pace = m.model.pace_class(x0, length)                              # each window's own, as training tells
        guided = pace_guided(m.model, 2, 5.0, away_from=["any", "0"])(x_t, t, length, None, pace)
        apart = (m.model(x_t, t, length, pace=pace) - guided).pow(2).mean()
        learnt = (d.model(x_t, t, length, pace=pace) - guided).pow(2).mean()
    assert learnt < 0.5 * apart, (learnt, apart)
    # a teacher guided only at the quieter half for class 1 (--teacher-guided-below): guided rows there, itself above
    from mas_engine.train import guided_teacher
    half = TINY.diffusion_steps // 2
    with torch.no_grad():
        teacher = guided_teacher(str(run / "model.json"), [d.model], "cpu", 5.0, ["any", "0"], [TINY.diffusion_steps, half])
        out = teacher(x_t, t, length, None, pace)
        quiet = (pace == 1) & (t >= half)
        assert bool(quiet.any()) and bool(((pace == 1) & (t < half)).any())
        assert torch.allclose(out[quiet], m.model(x_t, t, length, pace=pace)[quiet], atol=1e-5)
        assert torch.allclose(out[~quiet], guided[~quiet], atol=1e-5)
    with pytest.raises(MasError, match="teacher-guided-below"):
        guided_teacher(str(run / "model.json"), [d.model], "cpu", 5.0, None, [0, half])
