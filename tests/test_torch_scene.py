"""plenopack.torch: a scene file as PyTorch parameters, rendered and differentiated through the fused kernels."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the optional torch extra; `make test` installs it

import plenopack  # noqa: E402
from plenopack import kernels as K  # noqa: E402
from plenopack.cameras import pixel_rays  # noqa: E402
from plenopack.fileformat import write_plen  # noqa: E402
from plenopack.grid import Grid, SphereBackground  # noqa: E402
from plenopack.torch import TorchScene  # noqa: E402
from tests.test_kernels import random_grid, random_rays  # noqa: E402


@pytest.fixture(scope="module")
def msi_file(tmp_path_factory):
    """A small translucent random grid with a two-layer MSI background, stored losslessly."""
    g = random_grid(reso=8, sh_degree=1, seed=31)
    rng = np.random.default_rng(32)
    layers = rng.normal(size=(2, 6, 12, 4)).astype(np.float32)
    layers[..., 3] = np.abs(layers[..., 3])  # both layers partly opaque
    grid = Grid(g.links, np.abs(g.density) * 0.3, g.sh, 1,
                SphereBackground(layers, np.array([2.0, 4.0], np.float32), 0.4))
    path = tmp_path_factory.mktemp("torch") / "msi.plen"
    write_plen(path, grid, {"eval_background": [1, 1, 1]})  # default codec: float32, lossless
    return path


def test_parameters_and_forward_match_the_packed_scene(msi_file):
    scene = TorchScene.from_file(msi_file)
    names = dict(scene.named_parameters())
    assert set(names) == {"density", "sh", "background_layers"}
    packed = plenopack.open(msi_file)
    np.testing.assert_array_equal(names["density"].detach().numpy(), packed.grid.density)
    c2w = np.eye(4)
    c2w[:3, 3] = [0.0, 0.0, -1.5]
    k = (20.0, 20.0, 12.0, 8.0)
    rgb, acc = scene.render(c2w, k, 16, 24)
    expected = packed.render(c2w, k, 16, 24)  # the MSI composited behind the grid
    np.testing.assert_allclose(rgb.detach().numpy(), expected.rgb, atol=2e-6)
    np.testing.assert_allclose(acc.detach().numpy(), expected.acc, atol=2e-6)
    assert 0.05 < float(acc.detach().mean()) < 0.95


def directional_check(scene, param, loss_fn, eps, seed):
    """<grad, v> from autograd against the float32 central difference of the loss along a random v."""
    v = torch.from_numpy(np.random.default_rng(seed).normal(size=tuple(param.shape)).astype(np.float32))
    scene.zero_grad()
    loss_fn().backward()
    analytic = float((param.grad.double() * v.double()).sum())
    base = param.detach().clone()
    with torch.no_grad():
        param.copy_(base + eps * v)
        plus = float(loss_fn())
        param.copy_(base - eps * v)
        minus = float(loss_fn())
        param.copy_(base)
    return analytic, (plus - minus) / (2 * eps)


def test_gradients_match_finite_differences_for_any_loss(msi_file):
    """A loss on colour and opacity with arbitrary weights: d/d density, d/d sh, d/d MSI layers (float32)."""
    scene = TorchScene.from_file(msi_file)
    o, d = random_rays(400, seed=33)
    o, d = torch.from_numpy(o), torch.from_numpy(d)
    rng = np.random.default_rng(34)
    w_rgb = torch.from_numpy(rng.normal(size=(len(o), 3)).astype(np.float32))
    w_acc = torch.from_numpy(rng.normal(size=len(o)).astype(np.float32))

    def loss():
        rgb, acc = scene.render_rays(o, d)
        return (w_rgb.double() * rgb.double()).sum() + (w_acc.double() * acc.double() ** 2).sum()

    for param, eps in ((scene.density, 1e-2), (scene.sh, 1e-3), (scene.background_layers, 1e-3)):
        analytic, numeric = directional_check(scene, param, loss, eps, seed=35)
        assert abs(analytic) > 1e-2
        assert analytic == pytest.approx(numeric, rel=5e-3)


def test_mse_gradients_equal_the_fits_own(tiny_fit, lego_small):
    """An MSE loss through TorchScene gives exactly the gradients the fit's fused kernel accumulates."""
    grid = tiny_fit.grid
    scene = TorchScene(grid, background=(1.0, 1.0, 1.0))
    o, d = pixel_rays(lego_small.c2w[0], lego_small.intrinsics[0], 40, 40)
    target = lego_small.images[0].reshape(-1, 3)
    rgb, _ = scene.render_rays(torch.from_numpy(o), torch.from_numpy(d))
    torch.mean((rgb - torch.from_numpy(target)) ** 2).backward()
    gd, gs = np.zeros_like(grid.density), np.zeros_like(grid.sh)
    occ = K.build_occupancy(grid.links, grid.density, block=4)
    _, _, mse = K.render_rays_grad(grid.links, grid.density, grid.sh, grid.sh_degree, o, d, target,
                                   np.ones(3, np.float32), gd, gs, occupancy=occ)
    assert np.abs(gd).max() > 0
    np.testing.assert_allclose(scene.density.grad.numpy(), gd, rtol=1e-5, atol=1e-6 * np.abs(gd).max())
    np.testing.assert_allclose(scene.sh.grad.numpy(), gs, rtol=1e-5, atol=1e-6 * np.abs(gs).max())


def test_background_colour_gradient_and_training_steps(tiny_fit, lego_small):
    """A learnable background colour gets (1 - acc) * d L / d rgb; a few Adam steps lower a photometric loss."""
    scene = TorchScene(tiny_fit.grid)
    o, d = pixel_rays(lego_small.c2w[1], lego_small.intrinsics[1], 40, 40)
    o, d = torch.from_numpy(o), torch.from_numpy(d)
    colour = torch.tensor([0.2, 0.3, 0.4], requires_grad=True)
    rgb, acc = scene.render_rays(o, d, background=colour)
    rgb.sum().backward()
    np.testing.assert_allclose(colour.grad.numpy(), np.full(3, float((1 - acc.detach()).sum())), rtol=1e-5)

    target = torch.from_numpy(lego_small.images[1].reshape(-1, 3))
    optimiser = torch.optim.Adam(scene.parameters(), lr=0.05)
    losses = []
    for _ in range(15):
        optimiser.zero_grad()
        rgb, _ = scene.render_rays(o, d)
        loss = torch.mean((rgb - target) ** 2)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    trained = scene.to_grid()  # back to a Grid, as write_plen takes it
    assert trained.num_voxels == tiny_fit.grid.num_voxels
    assert not np.array_equal(trained.density, tiny_fit.grid.density)
