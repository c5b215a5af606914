"""Losses, metrics, the training strategies of section 4, checkpoints and exact resume."""

from __future__ import annotations

import math
import os
import pickle
import signal

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from tarlib import data, losses, metrics, nets, physics, training

# ----------------------------------------------------------------------------- losses


def test_l2_loss_is_the_squared_l2_distance_per_image() -> None:
    x = torch.zeros(2, 1, 4, 4)
    x_hat = x.clone()
    x_hat[0, 0, 0, :2] = 1.0  # image 0: two pixels off by 1 → ‖x − x̂‖² = 2
    x_hat[1] = 0.5  # image 1: 16 pixels off by 0.5 → 4
    assert losses.l2_loss(x_hat, x).item() == pytest.approx(3.0)
    assert losses.l2_loss(x_hat, x, cell_volume=0.25).item() == pytest.approx(0.75)
    assert metrics.l2_error(x_hat, x).tolist() == pytest.approx([2.0, 4.0])


def test_cross_entropies() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    z = torch.tensor([0, 2])
    expected = (-torch.log_softmax(logits, 1)[[0, 1], z]).mean()
    assert losses.cross_entropy(logits, z).item() == pytest.approx(expected.item())
    seg_logits = torch.zeros(2, 2, 3, 3)  # uniform: −log ½ per pixel, 9 pixels
    masks = torch.zeros(2, 1, 3, 3, dtype=torch.long)
    assert losses.pixelwise_cross_entropy(seg_logits, masks).item() == pytest.approx(9 * math.log(2))
    with pytest.raises(ValueError, match="labels"):
        losses.cross_entropy(logits, z[:1])


@pytest.mark.parametrize("C", [-0.1, 1.5, float("nan")])
def test_joint_loss_rejects_C_outside_the_unit_interval(C: float) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        losses.JointLoss(C, losses.cross_entropy)


def test_joint_loss_rejects_non_numbers() -> None:
    with pytest.raises(TypeError):
        losses.JointLoss("0.5", losses.cross_entropy)


@pytest.fixture(scope="module")
def mnist_M() -> physics.DataModel:
    return physics.mnist_data_model()


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = data.load_mnist("test")
    return images[:96], labels[:96]


def _model(M: physics.DataModel, seed: int = 0) -> nets.TaskAdapted:
    torch.manual_seed(seed)
    return nets.TaskAdapted(nets.LearnedGradientDescent(M, n_iter=2, width=8), nets.Classifier())


def _batch(M, digits):
    x, z = digits[0][:8], digits[1][:8]
    return x, M(x, generator=torch.Generator().manual_seed(0)), z


def _grads(module: torch.nn.Module) -> list[torch.Tensor | None]:
    return [p.grad for p in module.parameters()]


def test_joint_loss_sends_gradients_to_both_networks(mnist_M, digits) -> None:
    model = _model(mnist_M)
    x, y, z = _batch(mnist_M, digits)
    total, parts = losses.JointLoss(0.5, losses.cross_entropy)(*model(y), x, z)
    assert total.item() == pytest.approx(0.5 * parts["task"].item() + 0.5 * parts["reconstruction"].item(), rel=1e-6)
    total.backward()
    for net in (model.R, model.T):
        assert all(g is not None and g.abs().sum() > 0 for g in _grads(net))


def test_joint_loss_with_C_1_gives_the_task_network_no_gradient(mnist_M, digits) -> None:
    model = _model(mnist_M)
    x, y, z = _batch(mnist_M, digits)
    total, parts = losses.JointLoss(1.0, losses.cross_entropy)(*model(y), x, z)
    assert set(parts) == {"reconstruction"} and total.item() == parts["reconstruction"].item()
    total.backward()
    assert all(g is None for g in _grads(model.T))
    assert all(g is not None for g in _grads(model.R))


def test_joint_loss_with_C_0_is_the_end_to_end_loss(mnist_M, digits) -> None:
    model = _model(mnist_M)
    x, y, z = _batch(mnist_M, digits)
    x_hat, logits = model(y)
    total, parts = losses.JointLoss(0.0, losses.cross_entropy)(x_hat, logits, x, z)
    assert set(parts) == {"task"}
    assert torch.equal(total, losses.cross_entropy(logits, z)), "eq. (16): ℓ_D of T(R(y)) only"


# ----------------------------------------------------------------------------- metrics


def test_psnr_ssim_against_known_values() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 32, 32, generator=gen)
    x_hat = (x + 0.1 * torch.randn(2, 1, 32, 32, generator=gen)).clamp(0, 1)
    mse = (x_hat - x).pow(2).flatten(1).mean(1)
    assert metrics.psnr(x_hat, x).tolist() == pytest.approx((10 * torch.log10(1 / mse)).tolist())
    assert metrics.ssim(x, x).tolist() == pytest.approx([1.0, 1.0])
    for i in range(2):
        reference = structural_similarity(
            x_hat[i, 0].double().numpy(), x[i, 0].double().numpy(),
            data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        )
        assert metrics.ssim(x_hat, x)[i].item() == pytest.approx(reference, abs=1e-5)


def test_dice_iou_accuracy() -> None:
    target = torch.zeros(2, 1, 4, 4, dtype=torch.long)
    target[0, 0, :2] = 1  # 8 pixels
    prediction = torch.zeros(2, 4, 4, dtype=torch.long)
    prediction[0, :1] = 1  # 4 pixels, all inside
    # sample 1: both empty → 1 by convention
    assert metrics.dice(prediction, target).tolist() == pytest.approx([2 * 4 / 12, 1.0])
    assert metrics.iou(prediction, target).tolist() == pytest.approx([4 / 8, 1.0])
    logits = torch.stack([1 - prediction, prediction], dim=1).float()  # arg max = prediction
    assert metrics.dice(logits, target).tolist() == pytest.approx([2 / 3, 1.0])
    assert metrics.accuracy(torch.tensor([[0.0, 1.0], [3.0, 1.0]]), torch.tensor([1, 1])).tolist() == [1.0, 0.0]


# ----------------------------------------------------------------------------- strategies


def _loader(M, digits, seed: int = 3) -> data.TaskLoader:
    return data.TaskLoader(*digits, M, batch_size=16, seed=seed)


def _changed(before: dict, module: torch.nn.Module, prefix: str) -> bool:
    return any(not torch.equal(before[prefix + k], v) for k, v in module.state_dict().items())


@pytest.mark.parametrize(
    "strategy, C, trains_R, trains_T",
    [
        ("pretrain_reconstruction", None, True, False),
        ("pretrain_task", None, False, True),
        ("sequential", None, False, True),
        ("end_to_end", None, True, True),
        ("joint", 0.5, True, True),
        ("joint", 1.0, True, False),
    ],
)
def test_strategies_train_the_right_networks(mnist_M, digits, strategy, C, trains_R, trains_T) -> None:
    model = _model(mnist_M)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = training.train(model, _loader(mnist_M, digits), strategy, C=C, steps=2, progress=False)
    assert out["finished"] and out["step"] == 2
    assert _changed(before, model.R, "R.") == trains_R
    assert _changed(before, model.T, "T.") == trains_T
    assert out["history"]["lr"][-1] == 0.0, "the cosine schedule decays to 0"


def test_train_rejects_bad_strategy_and_C(mnist_M, digits) -> None:
    model = _model(mnist_M)
    loader = _loader(mnist_M, digits)
    with pytest.raises(ValueError, match="strategy must be one of"):
        training.train(model, loader, "alternating", steps=1, progress=False)
    with pytest.raises(ValueError, match="needs C"):
        training.train(model, loader, "joint", steps=1, progress=False)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        training.train(model, loader, "joint", C=2.0, steps=1, progress=False)
    with pytest.raises(ValueError, match="C only applies"):
        training.train(model, loader, "sequential", C=0.5, steps=1, progress=False)
    with pytest.raises(ValueError, match="model.R is None"):
        training.train(nets.TaskAdapted(None, nets.Classifier()), loader, "joint", C=0.5, steps=1, progress=False)


def test_bfloat16_autocast_on_the_cpu_is_opt_in_and_close_to_float32(mnist_M, digits) -> None:
    """amp=True on a CPU: bfloat16 forward, float32 parameters, losses near (not equal to) float32's."""
    runs = {}
    for amp in (None, True):
        model = _model(mnist_M)
        out = training.train(model, _loader(mnist_M, digits), "joint", C=0.5, steps=3, progress=False, amp=amp)
        runs[amp] = out["history"]["loss"]
        assert all(p.dtype == torch.float32 for p in model.parameters())
    assert runs[None] != runs[True], "the default on a CPU is float32, not autocast"
    assert np.allclose(runs[None], runs[True], rtol=0.05)


def _same_parameters(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_kill_and_resume_gives_bitwise_the_same_parameters(mnist_M, digits, tmp_path) -> None:
    # 96 images / batch 16 = 6 batches per epoch: 10 steps cross an epoch boundary
    reference = _model(mnist_M)
    training.train(reference, _loader(mnist_M, digits), "joint", C=0.5, steps=10, progress=False)

    checkpoint = tmp_path / "run.pt"
    stopped = _model(mnist_M)
    out = training.train(
        stopped, _loader(mnist_M, digits), "joint", C=0.5, steps=10, progress=False,
        checkpoint=checkpoint, checkpoint_every=3, max_steps_this_call=7,
    )
    assert out["step"] == 7 and not out["finished"]
    assert not _same_parameters(reference, stopped)

    class Killed(Exception):
        pass

    def kill_at_step_9(step: int, logs: dict) -> None:
        if step == 9:
            raise Killed

    crashed = _model(mnist_M, seed=1)  # a different initialisation: everything must come from the file
    with pytest.raises(Killed):
        training.train(
            crashed, _loader(mnist_M, digits), "joint", C=0.5, steps=10, progress=False,
            checkpoint=checkpoint, checkpoint_every=3, callback=kill_at_step_9,
        )  # resumes at 7, checkpoints at 9, then dies
    assert training.load_checkpoint(checkpoint)["step"] == 9

    resumed = _model(mnist_M, seed=2)
    out = training.train(
        resumed, _loader(mnist_M, digits), "joint", C=0.5, steps=10, progress=False, checkpoint=checkpoint,
        checkpoint_every=3,
    )
    assert out["finished"] and len(out["history"]["loss"]) == 10
    assert _same_parameters(reference, resumed)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_after_the_step_with_a_checkpoint_and_resuming_is_exact(mnist_M, digits, tmp_path,
                                                                               signum) -> None:
    reference = _model(mnist_M)
    training.train(reference, _loader(mnist_M, digits), "joint", C=0.5, steps=8, progress=False)

    def signal_at_step_4(step: int, logs: dict) -> None:
        if step == 4:
            os.kill(os.getpid(), signum)

    checkpoint, handlers = tmp_path / "run.pt", (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    with pytest.raises(KeyboardInterrupt, match="after step 4"):
        training.train(_model(mnist_M), _loader(mnist_M, digits), "joint", C=0.5, steps=8, progress=False,
                       checkpoint=checkpoint, checkpoint_every=100, callback=signal_at_step_4)
    assert training.load_checkpoint(checkpoint)["step"] == 4  # written at the stop, not only every 100 steps
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    resumed = _model(mnist_M, seed=2)
    out = training.train(resumed, _loader(mnist_M, digits), "joint", C=0.5, steps=8, progress=False,
                         checkpoint=checkpoint, checkpoint_every=100)
    assert out["finished"] and _same_parameters(reference, resumed)


def test_resume_with_other_settings_is_refused(mnist_M, digits, tmp_path) -> None:
    checkpoint = tmp_path / "run.pt"
    def run(C: float) -> None:
        training.train(_model(mnist_M), _loader(mnist_M, digits), "joint", C=C, steps=2, progress=False,
                       checkpoint=checkpoint)

    run(0.5)
    with pytest.raises(ValueError, match="was written for"):
        run(0.1)


def test_checkpoint_with_a_pickled_object_is_refused(tmp_path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": np.random.default_rng(0)}, path)  # needs arbitrary unpickling
    with pytest.raises(ValueError, match="refusing to load") as info:
        training.load_checkpoint(path)
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)


def test_checkpoints_hold_only_tensors_and_plain_types(mnist_M, digits, tmp_path) -> None:
    checkpoint = tmp_path / "run.pt"
    model, loader = _model(mnist_M), _loader(mnist_M, digits)
    training.train(model, loader, "joint", C=0.5, steps=1, progress=False, checkpoint=checkpoint)
    state = torch.load(checkpoint, weights_only=True)  # raises if anything else were inside
    assert {"model", "optimizer", "schedule", "batches", "torch_rng", "step"} <= set(state)
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"], "the temporary file of the atomic write is gone"
    with pytest.raises(ValueError, match="training checkpoint, not a weights file"):
        training.load_weights(model.R, checkpoint)


def test_weights_files_round_trip(mnist_M, tmp_path) -> None:
    model = _model(mnist_M)
    training.save_weights(model.R, tmp_path / "R.pt")
    other = _model(mnist_M, seed=5)
    training.load_weights(other.R, tmp_path / "R.pt")
    assert all(torch.equal(p, q) for p, q in zip(model.R.parameters(), other.R.parameters()))
    with pytest.raises(RuntimeError):  # strict: the classifier's keys do not match
        training.load_weights(other.T, tmp_path / "R.pt")


def test_evaluate_reports_the_papers_metrics(mnist_M, digits) -> None:
    model = _model(mnist_M)
    batches = list(data.TaskLoader(*digits, mnist_M, batch_size=40, seed=0, shuffle=False, drop_last=False))
    result = training.evaluate(model, batches)
    assert set(result) == {"accuracy", "cross_entropy", "l2", "psnr", "ssim", "n"} and result["n"] == 96
    x = torch.cat([b[0] for b in batches])
    x_hat = torch.cat([model.R(b[1]) for b in batches])
    assert result["l2"] == pytest.approx(metrics.l2_error(x_hat, x).mean().item(), rel=1e-5)
    true = training.evaluate(model, batches, true_images=True)
    assert set(true) == {"accuracy", "cross_entropy", "n"}


def test_evaluate_in_chunks_gives_the_same_metrics_and_decisions(mnist_M, digits, monkeypatch) -> None:
    """evaluate() runs the networks on chunks of at most EVAL_CHUNK images (faster on a CPU); the chunking
    changes nothing a caller sees, with or without a reconstruction."""
    model = _model(mnist_M)
    batches = list(data.TaskLoader(*digits, mnist_M, batch_size=96, seed=0, shuffle=False, drop_last=False))
    whole, whole_predictions = training.evaluate(model, batches), []
    training.evaluate(model, batches, predictions=whole_predictions)
    monkeypatch.setattr(training, "EVAL_CHUNK", 7)
    chunked_predictions: list[torch.Tensor] = []
    chunked = training.evaluate(model, batches, predictions=chunked_predictions)
    assert chunked.keys() == whole.keys() and all(chunked[k] == pytest.approx(whole[k], rel=1e-5) for k in whole)
    assert torch.equal(torch.cat(chunked_predictions), torch.cat(whole_predictions))
    reads_y = nets.TaskAdapted(None, torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(10)))
    result = training.evaluate(reads_y, batches)  # x̂ is None: no reconstruction metrics
    assert set(result) == {"accuracy", "cross_entropy", "n"} and result["n"] == 96


def test_segmentation_training_and_evaluation() -> None:
    images, masks, _ = data.ellipse_phantoms(4, size=32, seed=0)
    A = physics.RayTransform(*_small_geometry())
    M = physics.DataModel(A, physics.GaussianNoise(0.01))
    torch.manual_seed(0)
    model = nets.TaskAdapted(nets.LearnedPrimalDual(A, n_iter=2, width=4), nets.UNet(1, 2, depth=2, width=4))
    loader = data.TaskLoader(images, masks, M, batch_size=2, seed=0)
    out = training.train(model, loader, "joint", C=0.5, steps=2, task="segmentation", progress=False)
    assert set(out["history"]) >= {"task", "reconstruction"} and not math.isnan(out["history"]["task"][-1])
    result = training.evaluate(model, list(loader), task="segmentation")
    assert set(result) == {"dice", "iou", "cross_entropy", "l2", "psnr", "ssim", "n"}
    assert 0.0 <= result["dice"] <= 1.0 and 0.0 <= result["iou"] <= result["dice"] + 1e-9


def _small_geometry():
    import odl
    import odl.applications.tomo as tomo

    space = odl.uniform_discr([-16, -16], [16, 16], (32, 32), dtype="float32")
    return space, tomo.parallel_beam_geometry(space, num_angles=8)


def test_per_network_learning_rates(mnist_M, digits) -> None:
    """lr={"R": …, "T": …}: each network is its own Adam group with its rate; one rate means both share it."""
    one = training.train(_model(mnist_M), _loader(mnist_M, digits), "joint", C=0.5, steps=2, lr=1e-3, progress=False)
    split = training.train(_model(mnist_M), _loader(mnist_M, digits), "joint", C=0.5, steps=2,
                           lr={"R": 1e-3, "T": 1e-3}, progress=False)
    assert one["history"]["loss"] == split["history"]["loss"], "equal rates as a mapping change nothing"
    slow_T = training.train(_model(mnist_M), _loader(mnist_M, digits), "joint", C=0.5, steps=2,
                            lr={"R": 1e-3, "T": 1e-12}, progress=False)
    assert slow_T["history"]["loss"][1] != one["history"]["loss"][1]
    # with T's rate ~0, T keeps its initialisation (Adam's first step moves a parameter by about lr)
    model, reference = _model(mnist_M), _model(mnist_M)
    training.train(model, _loader(mnist_M, digits), "joint", C=0.5, steps=2, lr={"R": 1e-3, "T": 1e-12}, progress=False)
    assert max((p - q).abs().max().item() for p, q in zip(model.T.parameters(), reference.T.parameters())) < 1e-10
    assert not _same_parameters(model.R, reference.R)
    for bad, match in (({"R": 1e-3}, "keys"), ({"R": 1e-3, "T": 1e-3, "S": 1.0}, "keys"), ({"R": 0.0, "T": 1e-3}, "> 0")):
        with pytest.raises(ValueError, match=match):
            training.train(_model(mnist_M), _loader(mnist_M, digits), "joint", C=0.5, steps=1, lr=bad, progress=False)
    # sequential trains T only: it needs only T's rate
    training.train(_model(mnist_M), _loader(mnist_M, digits), "sequential", steps=1, lr={"T": 1e-3}, progress=False)
