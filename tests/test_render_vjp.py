"""The renderer's vector-Jacobian product (any upstream gradient) against its NumPy reference and the fit's kernel."""

import numpy as np
import pytest

from plenopack import kernels as K
from plenopack.kernels import reference as ref
from tests.test_kernels import random_grid, random_rays


@pytest.mark.parametrize("sh_degree", [0, 2])
def test_vjp_matches_reference(sh_degree):
    g = random_grid(reso=8, sh_degree=sh_degree, seed=21)
    o, d = random_rays(200, seed=22)
    rng = np.random.default_rng(23)
    bg = rng.random((len(o), 3)).astype(np.float32)
    grad_rgb = rng.normal(size=(len(o), 3)).astype(np.float32)
    grad_acc = rng.normal(size=len(o)).astype(np.float32)
    gd, gs = np.zeros_like(g.density), np.zeros_like(g.sh)
    rgb, acc = K.render_rays_vjp(g.links, g.density, g.sh, sh_degree, o, d, bg, grad_rgb, grad_acc, gd, gs)
    rgb_f, _, acc_f = K.render_rays(g.links, g.density, g.sh, sh_degree, o, d, bg)
    np.testing.assert_allclose(rgb, rgb_f, atol=1e-6)
    np.testing.assert_allclose(acc, acc_f, atol=1e-6)
    gd_ref, gs_ref = ref.render_rays_vjp(g.links, g.density.astype(np.float64), g.sh.astype(np.float64), sh_degree,
                                         o, d, bg, grad_rgb, grad_acc)
    assert np.abs(gd_ref).max() > 0 and np.abs(gs_ref).max() > 0
    np.testing.assert_allclose(gd, gd_ref, atol=2e-5 * np.abs(gd_ref).max())
    np.testing.assert_allclose(gs, gs_ref, atol=2e-5 * np.abs(gs_ref).max())
    # the opacity term alone: d acc / d density is non-zero and matches too
    gd_acc = np.zeros_like(g.density)
    K.render_rays_vjp(g.links, g.density, g.sh, sh_degree, o, d, bg, np.zeros_like(grad_rgb), grad_acc, gd_acc,
                      np.zeros_like(g.sh))
    gd_acc_ref, _ = ref.render_rays_vjp(g.links, g.density.astype(np.float64), g.sh.astype(np.float64), sh_degree,
                                        o, d, bg, np.zeros_like(grad_rgb), grad_acc)
    assert np.abs(gd_acc_ref).max() > 0
    np.testing.assert_allclose(gd_acc, gd_acc_ref, atol=2e-5 * np.abs(gd_acc_ref).max())


def test_vjp_of_the_mse_gradient_is_the_fits_gradient():
    """With d L / d rgb = 2 (rgb - target) / (3 B) the VJP is render_rays_grad's MSE gradient (beta off)."""
    g = random_grid(reso=10, sh_degree=1, seed=24)
    o, d = random_rays(300, seed=25)
    rng = np.random.default_rng(26)
    target = rng.random((len(o), 3)).astype(np.float32)
    bg = np.array([1.0, 0.5, 0.0], np.float32)
    occ = K.build_occupancy(g.links, g.density, block=4)
    gd_fit, gs_fit = np.zeros_like(g.density), np.zeros_like(g.sh)
    rgb, _, _ = K.render_rays_grad(g.links, g.density, g.sh, 1, o, d, target, bg, gd_fit, gs_fit, occupancy=occ)
    gd, gs = np.zeros_like(g.density), np.zeros_like(g.sh)
    K.render_rays_vjp(g.links, g.density, g.sh, 1, o, d, bg, 2 * (rgb - target) / (3 * len(o)), None, gd, gs,
                      occupancy=occ)
    np.testing.assert_allclose(gd, gd_fit, rtol=1e-5, atol=1e-6 * np.abs(gd_fit).max())
    np.testing.assert_allclose(gs, gs_fit, rtol=1e-5, atol=1e-6 * np.abs(gs_fit).max())


def test_vjp_checks_its_arguments():
    g = random_grid(reso=6, sh_degree=0, seed=27)
    o, d = random_rays(10, seed=28)
    with pytest.raises(ValueError, match="grad_rgb"):
        K.render_rays_vjp(g.links, g.density, g.sh, 0, o, d, np.ones(3, np.float32), np.zeros((9, 3)), None,
                          np.zeros_like(g.density), np.zeros_like(g.sh))
    with pytest.raises(ValueError, match="grad_sh"):
        K.render_rays_vjp(g.links, g.density, g.sh, 0, o, d, np.ones(3, np.float32), np.zeros((10, 3)), None,
                          np.zeros_like(g.density), np.zeros(g.sh.shape, np.float64))
