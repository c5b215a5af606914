"""Tests for tarlib.physics: the ray transform, FBP, the ODL wrapper and the noise models."""

import copy
import time

import numpy as np
import odl
import odl.applications.tomo as tomo
import pytest
import torch

from tarlib import physics as P

GEOMETRIES = {"G1": P.mnist_geometry, "G2": P.brain_geometry}


def rel(a, b) -> float:
    """Relative L2 distance of ``a`` from the reference ``b``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module", params=list(GEOMETRIES))
def setup(request):
    """(name, space, geometry, tarlib RayTransform) for G1 and G2, built once."""
    space, geometry = GEOMETRIES[request.param]()
    return request.param, space, geometry, P.RayTransform(space, geometry)


def test_forward_matches_astra_nonsquare():
    """A non-square image on an off-centre domain tells the two image axes apart."""
    space = odl.uniform_discr([-12, -6], [18, 14], (30, 20), dtype="float32")
    geometry = tomo.parallel_beam_geometry(space, num_angles=7, det_shape=41)
    x = phantom(space)
    reference = astra_ray_trafo(space, geometry)(space.element(x)).asarray()
    assert rel(P.RayTransform(space, geometry)(torch.from_numpy(x).double()[None, None])[0, 0], reference) <= 1e-4


@pytest.fixture(scope="module")
def small():
    """A tiny non-square geometry for gradcheck."""
    space = odl.uniform_discr([-3, -2], [3, 2], (6, 4), dtype="float32")
    return P.RayTransform(space, tomo.parallel_beam_geometry(space, num_angles=3, det_shape=7))


def phantom(space) -> np.ndarray:
    return odl.phantom.shepp_logan(space, modified=True).asarray()


def astra_ray_trafo(space, geometry):
    pytest.importorskip("astra")
    return tomo.RayTransform(space, geometry, impl="astra_cpu")


# ---------------------------------------------------------------------------
# RayTransform
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("image", ["random", "shepp-logan"])
def test_forward_matches_astra(setup, image):
    name, space, geometry, A = setup
    R = astra_ray_trafo(space, geometry)
    x = np.random.default_rng(0).random(space.shape).astype("float32") if image == "random" else phantom(space)
    reference = R(space.element(x)).asarray()
    ours = A(torch.from_numpy(x).double()[None, None])[0, 0].numpy()
    assert ours.shape == reference.shape == (len(geometry.angles), geometry.det_partition.shape[0])
    assert rel(ours, reference) <= 1e-4, f"{name}/{image}: {rel(ours, reference):.2e}"


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_adjoint_is_transpose(setup, dtype, tol):
    _, _, _, A = setup
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 2, *A.domain_shape, generator=g, dtype=torch.float64).to(dtype)
    y = torch.randn(3, 2, *A.range_shape, generator=g, dtype=torch.float64).to(dtype)
    Ax, Aty = A(x), A.adjoint(y)
    assert Ax.dtype == Aty.dtype == dtype
    assert Ax.shape == y.shape and Aty.shape == x.shape
    lhs, rhs = (Ax.double() * y.double()).sum(), (x.double() * Aty.double()).sum()
    assert abs(lhs - rhs) / (Ax.double().norm() * y.double().norm()) <= tol


def test_odl_weighted_adjoint_relation():
    """ODL's adjoint is (w_Y / w_X)·Aᵀ with the spaces' weighting constants (see RayTransform doc)."""
    for space in (P.mnist_geometry()[0], odl.uniform_discr([-1, -1], [1, 1], (28, 28), dtype="float32")):
        geometry = tomo.parallel_beam_geometry(space, num_angles=5, det_shape=25)
        R, A = astra_ray_trafo(space, geometry), P.RayTransform(space, geometry)
        y = np.random.default_rng(2).random(R.range.shape).astype("float32")
        ratio = R.range.weighting.const / R.domain.weighting.const
        ours = ratio * A.adjoint(torch.from_numpy(y).double()[None, None])[0, 0].numpy()
        assert rel(ours, R.adjoint(R.range.element(y)).asarray()) <= 1e-4
    assert ratio == pytest.approx(geometry.partition.cell_volume / space.cell_volume)  # weighted space


def test_gradcheck(small):
    x = torch.randn(1, 1, *small.domain_shape, dtype=torch.float64, requires_grad=True)
    y = torch.randn(1, 1, *small.range_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(small, (x,))
    assert torch.autograd.gradcheck(small.adjoint, (y,))
    assert torch.autograd.gradgradcheck(small, (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(small.adjoint, (y,), fast_mode=True)


def test_norm_and_normalize():
    space, geometry = P.mnist_geometry()
    A = P.RayTransform(space, geometry)
    dense = A.matrix.to_dense()
    assert A.norm() == pytest.approx(float(torch.linalg.matrix_norm(dense, ord=2)), rel=1e-8)
    An = P.RayTransform(space, geometry, normalize=True)
    assert An.norm() == pytest.approx(1.0, rel=1e-8)
    assert An.scale == pytest.approx(1 / A.norm())
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    assert torch.allclose(An(x), A(x) * An.scale)


def test_dtype_device_and_state(setup):
    _, _, _, A0 = setup
    A = copy.deepcopy(A0)
    assert A.state_dict() == {}
    assert A.to("cpu", torch.float64) is A
    x = torch.rand(2, 1, *A.domain_shape, dtype=torch.float64)
    y64 = A(x)
    y32 = A(x.float())  # served from the cached float32 copy
    assert y32.dtype == torch.float32 and rel(y32, y64) < 1e-6
    A.to(torch.float32)
    assert A.matrix.dtype == torch.float32 and A.matrix.crow_indices().dtype == torch.int32
    assert A.matrix.layout == torch.sparse_csr
    for M in (A.matrix, A._matrices(torch.float32)[1]):  # sorted, in-range indices (what cuSPARSE expects)
        torch.sparse_csr_tensor(M.crow_indices(), M.col_indices(), M.values(), M.shape, check_invariants=True)
    assert rel(A(x), y64) < 1e-6  # float64 input on a float32 module
    with pytest.raises(ValueError, match="operator is on cpu"):
        A(torch.empty(1, 1, *A.domain_shape, device="meta"))


def test_build_time():
    space, geometry = P.brain_geometry()
    start = time.perf_counter()
    P.RayTransform(space, geometry)
    assert time.perf_counter() - start < 3.0  # about 0.2 s on an idle 2-core machine


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda A: A(torch.zeros(1, 28, 28)), ValueError, r"\[B, C, 28, 28\], got \[1, 28, 28\]"),
        (lambda A: A(torch.zeros(1, 1, 27, 28)), ValueError, r"\[B, C, 28, 28\], got \[1, 1, 27, 28\]"),
        (lambda A: A(torch.zeros(1, 1, 28, 28, dtype=torch.int64)), TypeError, "float32 or float64, got torch.int64"),
        (lambda A: A(np.zeros((1, 1, 28, 28))), TypeError, "torch.Tensor"),
        (lambda A: A.adjoint(torch.zeros(1, 1, 28, 28)), ValueError, r"\[B, C, 5, 25\]"),
        (lambda A: P.fbp(A, torch.zeros(1, 1, 5, 25), filter="shepp-logan"), ValueError, "ram-lak"),
        (lambda A: P.fbp(A, torch.zeros(1, 1, 5, 25), frequency_scaling=0), ValueError, r"\(0, 1\]"),
        (lambda A: P.fbp(A, torch.zeros(1, 1, 25, 5)), ValueError, r"\[B, C, 5, 25\]"),
    ],
)
def test_bad_input_raises(call, error, match):
    A = P.RayTransform(*P.mnist_geometry())
    with pytest.raises(error, match=match):
        call(A)


def test_unsupported_geometry_points_to_odl_operator():
    space, _ = P.mnist_geometry()
    fan = tomo.FanBeamGeometry(odl.uniform_partition(0, 2 * np.pi, 8), odl.uniform_partition(-30, 30, 40),
                               src_radius=40, det_radius=40)
    with pytest.raises(ValueError, match="FanBeamGeometry.*OdlOperator"):
        P.RayTransform(space, fan)
    space3d = odl.uniform_discr([-4] * 3, [4] * 3, (8, 8, 8))
    with pytest.raises(ValueError, match="2D ODL space.*OdlOperator"):
        P.RayTransform(space3d, tomo.parallel_beam_geometry(space3d, num_angles=4))


# ---------------------------------------------------------------------------
# FBP
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("filter, frequency_scaling", [("ram-lak", 1.0), ("hann", 1.0), ("hann", 0.6)])
def test_fbp_matches_odl(setup, filter, frequency_scaling):
    name, space, geometry, A = setup
    R = astra_ray_trafo(space, geometry)
    y = R(space.element(phantom(space)))
    odl_name = {"ram-lak": "Ram-Lak", "hann": "Hann"}[filter]
    reference = tomo.fbp_op(R, filter_type=odl_name, frequency_scaling=frequency_scaling)(y).asarray()
    ours = P.fbp(A, torch.from_numpy(y.asarray()).double()[None, None], filter, frequency_scaling)[0, 0]
    # the issue asks for ≤ 5%; the filter is ODL's exactly, so we agree to about 1e-4
    assert rel(ours.numpy(), reference) <= 1e-3, f"{name}: {rel(ours.numpy(), reference):.2e}"


def test_fbp_batched_normalized_differentiable(small):
    space, geometry = P.mnist_geometry()
    A, An = P.RayTransform(space, geometry), P.RayTransform(space, geometry, normalize=True)
    x = torch.from_numpy(phantom(space)).double()[None, None].repeat(2, 3, 1, 1)
    x_fbp = P.fbp(A, A(x), "hann")
    assert x_fbp.shape == x.shape and torch.allclose(x_fbp[0, 0], x_fbp[1, 2])
    assert torch.allclose(P.fbp(An, An(x), "hann"), x_fbp)
    y = torch.randn(1, 1, *small.range_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: P.fbp(small, t, "hann", 0.8), (y,), fast_mode=True)


# ---------------------------------------------------------------------------
# OdlOperator
# ---------------------------------------------------------------------------


def test_odl_operator_matches_ray_transform():
    space, geometry = P.mnist_geometry()
    A, O = P.RayTransform(space, geometry), P.OdlOperator(astra_ray_trafo(space, geometry))
    x = torch.rand(2, 3, 28, 28, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 3, 5, 25, dtype=torch.float64)
    Ox = O(x)
    assert Ox.shape == (2, 3, 5, 25) and Ox.dtype == torch.float64
    assert rel(Ox.detach(), A(x).detach()) <= 1e-4
    assert rel(O.adjoint(y), A.adjoint(y)) <= 1e-4
    (Ox * y).sum().backward()
    assert rel(x.grad, A.adjoint(y)) <= 1e-4
    with pytest.raises(ValueError, match=r"\[B, C, 28, 28\]"):
        O(torch.zeros(1, 28, 28))
    with pytest.raises(TypeError, match="odl.Operator"):
        P.OdlOperator(A)


# ---------------------------------------------------------------------------
# Noise models and the data model
# ---------------------------------------------------------------------------


def digit_like(B: int = 4) -> torch.Tensor:
    """Blobs with values in [0, 1] and line integrals up to about 12, like MNIST digits."""
    t = torch.linspace(-14, 14, 28, dtype=torch.float64)
    r2 = t[:, None] ** 2 + t[None, :] ** 2
    return torch.stack([torch.exp(-r2 / (2 * s**2)) for s in torch.linspace(2.0, 5.0, B)])[:, None]


def test_poisson_sample_mean():
    M = P.mnist_data_model()
    x = digit_like(1)
    n = 4000
    g = torch.Generator().manual_seed(0)
    y = M(x.expand(n, -1, -1, -1), generator=g)
    assert y.shape == (n, 1, 5, 25) and y.dtype == torch.float64
    assert torch.equal(y, y.round()) and (y >= 0).all()
    rate = M.noise.mean_counts(M.A(x))[0]
    z = (y.mean(0) - rate) / (rate / n).sqrt()
    assert z.abs().max() < 5  # 125 lines: |z| < 5 fails with probability ~1e-4
    assert torch.equal(M(x, generator=torch.Generator().manual_seed(3)), M(x, generator=torch.Generator().manual_seed(3)))


@pytest.mark.parametrize(
    "noise",
    [P.PoissonTransmission(), P.PoissonTransmission(log_data=True), P.GaussianNoise(),
     P.GaussianNoise(0.5, relative=False)],
    ids=["poisson", "poisson-log", "gauss-relative", "gauss-absolute"],
)
def test_grad_matches_autograd(noise):
    A = P.RayTransform(*P.mnist_geometry())
    M = P.DataModel(A, noise)
    x = digit_like()
    y = M(x, generator=torch.Generator().manual_seed(1))
    ax = A(x).requires_grad_(True)
    nll = noise.nll(ax, y)
    assert nll.shape == (4,) and torch.isfinite(nll).all()
    (autograd,) = torch.autograd.grad(nll.sum(), ax)
    assert torch.allclose(noise.grad(ax.detach(), y), autograd, rtol=1e-10, atol=1e-12)
    xr = x.clone().requires_grad_(True)
    (autograd_x,) = torch.autograd.grad(M.nll(xr, y).sum(), xr)
    assert torch.allclose(M.grad_nll(x, y), autograd_x, rtol=1e-10, atol=1e-12)


def test_poisson_zero_counts_are_finite():
    A = P.RayTransform(*P.mnist_geometry())
    ax = A(digit_like())
    zeros = torch.zeros_like(ax)
    for noise in (P.PoissonTransmission(), P.PoissonTransmission(log_data=True)):
        y = noise.log_transform(zeros) if noise.log_data else zeros
        assert torch.isfinite(y).all()
        assert torch.isfinite(noise.nll(ax, y)).all() and torch.isfinite(noise.grad(ax, y)).all()
    noise = P.PoissonTransmission(photons_per_line=1e-3, log_data=True)  # nearly every count is 0
    assert torch.isfinite(noise.sample(ax, generator=torch.Generator().manual_seed(0))).all()


def test_log_data_estimates_line_integrals():
    noise = P.PoissonTransmission(photons_per_line=1e6, log_data=True)
    ax = P.RayTransform(*P.mnist_geometry())(digit_like())
    y = noise.sample(ax, generator=torch.Generator().manual_seed(0))
    assert (y - ax).abs().max() < 0.2  # std 1/(μ·sqrt(counts)) ≤ 0.01 here


def test_gaussian_noise_level():
    A = P.RayTransform(*P.mnist_geometry())
    ax = A(digit_like())
    y = P.GaussianNoise(0.01).sample(ax, generator=torch.Generator().manual_seed(0))
    sigma = 0.01 * ax.abs().flatten(1).mean(1)
    measured = (y - ax).flatten(1).std(1)
    assert torch.allclose(measured, sigma, rtol=0.2)  # 125 samples per row: std within ~6%·3
    ax = ax[:1].expand(64, -1, -1, -1).contiguous()
    y_abs = P.GaussianNoise(0.5, relative=False).sample(ax)
    assert (y_abs - ax).std().item() == pytest.approx(0.5, rel=0.05)


def test_noise_parameter_errors():
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="photons_per_line must be a positive finite number"):
            P.PoissonTransmission(photons_per_line=bad)
        with pytest.raises(ValueError, match="mu must be a positive"):
            P.PoissonTransmission(mu=bad)
        with pytest.raises(ValueError, match="level must be a positive"):
            P.GaussianNoise(level=bad)
    with pytest.raises(ValueError, match=r"same shape, got \[1, 2\] and \[1, 3\]"):
        P.GaussianNoise().nll(torch.zeros(1, 2), torch.zeros(1, 3))
    with pytest.raises(TypeError, match="DataModel: A must be"):
        P.DataModel(torch.nn.Identity(), P.GaussianNoise())


def test_data_models_of_the_paper():
    M = P.mnist_data_model()
    assert isinstance(M.noise, P.PoissonTransmission) and M.noise.photons_per_line == 60
    assert M.A.domain_shape == (28, 28) and M.A.range_shape == (5, 25) and M.A.scale == 1.0
    B = P.brain_data_model()
    assert isinstance(B.noise, P.GaussianNoise) and B.noise.level == 0.001 and B.noise.relative
    assert B.A.range_shape == (30, 183) and B.A.norm() == pytest.approx(1.0, rel=1e-6)
    assert B.state_dict() == {} and copy.deepcopy(B).A.range_shape == (30, 183)
    # the parts are exchangeable: same data model with ODL's operator
    space, geometry = P.mnist_geometry()
    M_odl = P.DataModel(P.OdlOperator(astra_ray_trafo(space, geometry)), M.noise)
    x, y = digit_like(2).float(), M(digit_like(2).float())
    assert rel(M_odl.grad_nll(x, y), M.grad_nll(x, y)) < 1e-4
