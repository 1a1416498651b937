"""Fused kernels held against the NumPy reference and against finite differences."""

import numpy as np
import pytest

from plenopack import kernels as K
from plenopack.kernels import reference as ref
from plenopack.grid import Grid


def random_grid(reso=10, sh_degree=2, fill=0.6, seed=0):
    rng = np.random.default_rng(seed)
    coords = np.argwhere(rng.random((reso,) * 3) < fill)
    n = len(coords)
    density = (rng.random(n) * 12 - 2).astype(np.float32)  # some negative (ReLU'd) values
    sh = (rng.normal(size=(n, 3 * (sh_degree + 1) ** 2)) * 0.4).astype(np.float32)
    return Grid.from_coords(reso, coords, density, sh, sh_degree)


def random_rays(n=300, seed=1):
    rng = np.random.default_rng(seed)
    origins = rng.normal(size=(n, 3))
    origins = 2.5 * origins / np.linalg.norm(origins, axis=1, keepdims=True)
    targets = rng.uniform(-0.6, 0.6, size=(n, 3))
    dirs = targets - origins
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    inside = rng.uniform(-0.9, 0.9, size=(n // 4, 3))  # rays starting inside the cube
    origins[: n // 4] = inside
    return origins.astype(np.float32), dirs.astype(np.float32)


@pytest.mark.parametrize("sh_degree", [0, 1, 2, 3])
def test_forward_matches_reference(sh_degree):
    g = random_grid(sh_degree=sh_degree)
    o, d = random_rays()
    bg = np.array([1.0, 0.5, 0.0], np.float32)
    rgb, depth, acc = K.render_rays(g.links, g.density, g.sh, sh_degree, o, d, bg)
    rgb_r, depth_r, acc_r = ref.render_rays(g.links, g.density.astype(np.float64), g.sh.astype(np.float64),
                                           sh_degree, o, d, bg)
    np.testing.assert_allclose(rgb, rgb_r, atol=2e-4)
    np.testing.assert_allclose(acc, acc_r, atol=2e-4)
    np.testing.assert_allclose(depth, depth_r, atol=2e-3)
    assert acc.min() >= 0 and acc.max() <= 1


def test_forward_reuses_shared_corner_colours_along_and_against_every_axis():
    """Rays along +-x, +-y, +-z cross face after face: each cell takes the 4 corner colours it shares with the
    previous one (in the order a ray going up or down the axis meets them); held against the reference."""
    g = random_grid(reso=12, fill=0.9, seed=4)
    g.density[:] = np.abs(g.density) * 0.3  # thin: rays cross the whole grid
    rng = np.random.default_rng(5)
    origins, dirs = [], []
    for axis in range(3):
        for sign in (1.0, -1.0):
            o = rng.uniform(-0.8, 0.8, size=(40, 3))
            o[:, axis] = -1.5 * sign
            d = np.zeros((40, 3))
            d[:, axis] = sign
            d += rng.normal(size=(40, 3)) * np.array([1e-3 if a != axis else 0 for a in range(3)])  # a few skew
            origins.append(o)
            dirs.append(d / np.linalg.norm(d, axis=1, keepdims=True))
    o, d = np.concatenate(origins).astype(np.float32), np.concatenate(dirs).astype(np.float32)
    bg = np.array([0.2, 0.4, 0.6], np.float32)
    rgb, _, acc = K.render_rays(g.links, g.density, g.sh, 2, o, d, bg)
    rgb_r, _, acc_r = ref.render_rays(g.links, g.density.astype(np.float64), g.sh.astype(np.float64), 2, o, d, bg)
    assert acc.min() > 0.05 and acc.max() < 0.999  # every ray crossed cells with density and reached the far side
    np.testing.assert_allclose(rgb, rgb_r, atol=2e-4)
    np.testing.assert_allclose(acc, acc_r, atol=2e-4)


def test_occupancy_skipping_gives_same_result():
    rng = np.random.default_rng(3)
    coords = 10 + np.argwhere(rng.random((12,) * 3) < 0.3)  # one blob: lots of empty space to skip
    g = Grid.from_coords(32, coords, rng.random(len(coords)).astype(np.float32) * 40,
                         rng.normal(size=(len(coords), 27)).astype(np.float32) * 0.3, 2)
    occ = K.build_occupancy(g.links, g.density, block=4)
    assert 0 < occ.fraction_occupied < 1
    o, d = random_rays(500)
    a = K.render_rays(g.links, g.density, g.sh, 2, o, d, np.ones(3, np.float32))
    b = K.render_rays(g.links, g.density, g.sh, 2, o, d, np.ones(3, np.float32), occupancy=occ)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=1e-5)


def test_occupancy_covers_voxels_on_cell_borders():
    """A voxel that starts a cell is a trilinear corner of samples in the cell before it (and the last voxel
    one of samples clamped into the cell before the border): those cells must not be skipped."""
    rng = np.random.default_rng(4)
    coords = np.unique(rng.choice([0, 4, 8, 16, 23, 28, 31], size=(40, 3)), axis=0)
    g = Grid.from_coords(32, coords, np.full(len(coords), 200.0, np.float32),
                         rng.normal(size=(len(coords), 12)).astype(np.float32), 1)
    occ = K.build_occupancy(g.links, g.density, block=4)
    assert occ.fraction_occupied < 0.6
    o, d = random_rays(3000, seed=5)
    a = K.render_rays(g.links, g.density, g.sh, 1, o, d, np.zeros(3, np.float32))
    b = K.render_rays(g.links, g.density, g.sh, 1, o, d, np.zeros(3, np.float32), occupancy=occ)
    assert (a[2] > 0.01).sum() > 100
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=1e-5)


def test_empty_space_distance_is_the_chessboard_distance_to_a_marked_cell():
    rng = np.random.default_rng(6)
    cells = (rng.random((9, 9, 9)) < 0.01).astype(np.uint8)
    cells[0, 0, 0] = 1
    dist = K.occupancy.empty_space_distance(cells)
    marked = np.argwhere(cells)
    for idx in np.ndindex(cells.shape):
        assert dist[idx] == np.abs(marked - np.array(idx)).max(axis=1).min()
    assert (K.occupancy.empty_space_distance(np.zeros((3, 3, 3), np.uint8)) == K.occupancy.MAX_DISTANCE).all()


def test_leaps_over_empty_boxes_give_the_same_result():
    """Single voxels scattered far apart in a large grid, rays aimed near them from every side: rays leap over
    empty boxes many cells wide (distance > 1) and must stop leaping exactly where a marked cell begins."""
    rng = np.random.default_rng(7)
    reso = 64
    coords = np.unique(rng.integers(0, reso, size=(60, 3)), axis=0)
    g = Grid.from_coords(reso, coords, np.full(len(coords), 300.0, np.float32),
                         rng.normal(size=(len(coords), 12)).astype(np.float32) * 0.3, 1)
    occ = K.build_occupancy(g.links, g.density, block=1)  # cells of one voxel: a leap one cell too far shows
    assert occ.distance.max() > 3
    n = 6000
    origins = rng.normal(size=(n, 3))
    origins = 2.5 * origins / np.linalg.norm(origins, axis=1, keepdims=True)
    targets = (coords[rng.integers(0, len(coords), n)] + 0.5 + rng.uniform(-1.5, 1.5, (n, 3))) * 2 / reso - 1
    dirs = targets - origins
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    o, d = origins.astype(np.float32), dirs.astype(np.float32)
    a = K.render_rays(g.links, g.density, g.sh, 1, o, d, np.ones(3, np.float32))
    b = K.render_rays(g.links, g.density, g.sh, 1, o, d, np.ones(3, np.float32), occupancy=occ)
    assert (a[2] > 0.01).sum() > n // 4
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=1e-5)


def test_constant_slab_transmittance_is_analytic():
    reso, sigma = 16, 3.0
    g = Grid.dense(reso, 0, density=sigma)
    o = np.array([[0.0, 0.0, -3.0]], np.float32)
    d = np.array([[0.0, 0.0, 1.0]], np.float32)
    _, _, acc = K.render_rays(g.links, g.density, g.sh, 0, o, d, np.zeros(3, np.float32), stop_thresh=0.0)
    assert acc[0] == pytest.approx(1 - np.exp(-sigma * 2.0), rel=1e-5)  # path length through the cube is 2


def test_sh_colour_matches_convention():
    g = Grid.dense(8, 0, density=1e4)  # opaque: colour of the first sample
    g.sh[:, 0] = 0.2 / 0.28209479  # red channel DC -> 0.5 + 0.2
    o = np.array([[0.0, 0.0, -3.0]], np.float32)
    d = np.array([[0.0, 0.0, 1.0]], np.float32)
    rgb, _, _ = K.render_rays(g.links, g.density, g.sh, 0, o, d, np.zeros(3, np.float32))
    np.testing.assert_allclose(rgb[0], [0.7, 0.5, 0.5], atol=1e-4)


def test_gradient_matches_reference_and_finite_differences():
    g = random_grid(reso=8, sh_degree=1, seed=5)
    o, d = random_rays(200, seed=6)
    rng = np.random.default_rng(7)
    target = rng.random((len(o), 3)).astype(np.float32)
    bg = rng.random((len(o), 3)).astype(np.float32)
    gd = np.zeros_like(g.density)
    gs = np.zeros_like(g.sh)
    _, _, mse = K.render_rays_grad(g.links, g.density, g.sh, 1, o, d, target, bg, gd, gs)
    d64, s64 = g.density.astype(np.float64), g.sh.astype(np.float64)
    _, gd_ref, gs_ref = ref.render_rays_grad(g.links, d64, s64, 1, o, d, target, bg)
    assert mse == pytest.approx(ref.loss(g.links, d64, s64, 1, o, d, target, bg), rel=1e-4)
    np.testing.assert_allclose(gd, gd_ref, atol=2e-5 * np.abs(gd_ref).max())
    np.testing.assert_allclose(gs, gs_ref, atol=2e-5 * np.abs(gs_ref).max())
    # central finite differences of the float64 reference loss on the largest-gradient parameters
    eps = 1e-4
    for idx in np.argsort(-np.abs(gd))[:5]:
        dp, dm = d64.copy(), d64.copy()
        dp[idx] += eps
        dm[idx] -= eps
        fd = (ref.loss(g.links, dp, s64, 1, o, d, target, bg) - ref.loss(g.links, dm, s64, 1, o, d, target, bg)) / (2 * eps)
        assert gd[idx] == pytest.approx(fd, rel=2e-2, abs=1e-7)
    flat = np.argsort(-np.abs(gs).reshape(-1))[:5]
    for f in flat:
        r, c = np.unravel_index(f, gs.shape)
        sp, sm = s64.copy(), s64.copy()
        sp[r, c] += eps
        sm[r, c] -= eps
        fd = (ref.loss(g.links, d64, sp, 1, o, d, target, bg) - ref.loss(g.links, d64, sm, 1, o, d, target, bg)) / (2 * eps)
        assert gs[r, c] == pytest.approx(fd, rel=2e-2, abs=1e-7)


def test_beta_gradient_matches_finite_differences():
    g = random_grid(reso=6, sh_degree=0, seed=8)
    g.density[:] = np.abs(g.density) * 0.3  # partially transparent so acc is inside (0, 1)
    o, d = random_rays(100, seed=9)
    target = np.full((len(o), 3), 0.5, np.float32)
    bg = np.ones(3, np.float32)
    beta = 0.1
    gd = np.zeros_like(g.density)
    K.render_rays_grad(g.links, g.density, g.sh, 0, o, d, target, bg, gd, np.zeros_like(g.sh), beta_weight=beta)
    d64, s64 = g.density.astype(np.float64), g.sh.astype(np.float64)
    for idx in np.argsort(-np.abs(gd))[:4]:
        dp, dm = d64.copy(), d64.copy()
        dp[idx] += 1e-5
        dm[idx] -= 1e-5
        fd = (ref.loss(g.links, dp, s64, 0, o, d, target, bg, beta_weight=beta)
              - ref.loss(g.links, dm, s64, 0, o, d, target, bg, beta_weight=beta)) / 2e-5
        assert gd[idx] == pytest.approx(fd, rel=2e-2)


def test_opacity_floor_gradient_matches_finite_differences():
    g = random_grid(reso=6, sh_degree=0, seed=10)
    g.density[:] = np.abs(g.density) * 0.3
    o, d = random_rays(100, seed=11)
    target = np.full((len(o), 3), 0.5, np.float32)
    bg = np.ones(3, np.float32)
    min_acc = np.random.default_rng(12).random(len(o)).astype(np.float32)
    gd = np.zeros_like(g.density)
    K.render_rays_grad(g.links, g.density, g.sh, 0, o, d, target, bg, gd, np.zeros_like(g.sh), min_acc=min_acc,
                       min_acc_weight=2.0)
    d64, s64 = g.density.astype(np.float64), g.sh.astype(np.float64)
    without = np.zeros_like(g.density)
    K.render_rays_grad(g.links, g.density, g.sh, 0, o, d, target, bg, without, np.zeros_like(g.sh))
    assert np.abs(gd - without).max() > 1e-4  # the floor is active on some rays
    for idx in np.argsort(-np.abs(gd))[:4]:
        dp, dm = d64.copy(), d64.copy()
        dp[idx] += 1e-5
        dm[idx] -= 1e-5
        fd = (ref.loss(g.links, dp, s64, 0, o, d, target, bg, min_acc=min_acc, min_acc_weight=2.0)
              - ref.loss(g.links, dm, s64, 0, o, d, target, bg, min_acc=min_acc, min_acc_weight=2.0)) / 2e-5
        assert gd[idx] == pytest.approx(fd, rel=2e-2)


def test_gradient_accumulates_and_workspace_is_reusable():
    g = random_grid(reso=8, sh_degree=1, seed=2)
    o, d = random_rays(150, seed=3)
    target = np.zeros((len(o), 3), np.float32)
    ws = K.GradWorkspace(g.num_voxels, g.sh.shape[1])
    gd1 = np.zeros_like(g.density)
    gs1 = np.zeros_like(g.sh)
    K.render_rays_grad(g.links, g.density, g.sh, 1, o, d, target, np.ones(3, np.float32), gd1, gs1, workspace=ws)
    gd2 = gd1.copy()
    gs2 = gs1.copy()
    K.render_rays_grad(g.links, g.density, g.sh, 1, o, d, target, np.ones(3, np.float32), gd2, gs2, workspace=ws)
    np.testing.assert_allclose(gd2, 2 * gd1, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(gs2, 2 * gs1, rtol=1e-5, atol=1e-9)
    assert not ws.row_flags.any()  # flags are set only where the caller asks for them


def _grad_with(g, o, d, target, bg, workspace):
    gd, gs = np.zeros_like(g.density), np.zeros_like(g.sh)
    flags = np.zeros(g.num_voxels, np.uint8)
    rgb, acc, mse = K.render_rays_grad(g.links, g.density, g.sh, g.sh_degree, o, d, target, bg, gd, gs,
                                       workspace=workspace, row_flags=flags, beta_weight=1e-3)
    return gd, gs, flags, rgb, mse


def test_gradients_are_bit_identical_for_any_chunking_and_capacity():
    """The scatter sums each row's contributions in ray order whatever the chunks (threads) and however
    often the records had to grow: the results are bit-identical, and equal to the NumPy reference."""
    g = random_grid(reso=12, sh_degree=2, seed=13)
    o, d = random_rays(400, seed=14)
    rng = np.random.default_rng(15)
    target = rng.random((len(o), 3)).astype(np.float32)
    bg = rng.random((len(o), 3)).astype(np.float32)
    first = _grad_with(g, o, d, target, bg, K.GradWorkspace(g.num_voxels, g.sh.shape[1], chunks=1))
    for chunks, capacity in ((2, 0), (3, 10), (7, 1), (64, 0)):
        ws = K.GradWorkspace(g.num_voxels, g.sh.shape[1], chunks=chunks, capacity=capacity)
        other = _grad_with(g, o, d, target, bg, ws)
        for a, b in zip(first, other):
            np.testing.assert_array_equal(a, b)
    _, gd_ref, gs_ref = ref.render_rays_grad(g.links, g.density.astype(np.float64), g.sh.astype(np.float64), 2, o,
                                             d, target, bg)
    gd, gs = np.zeros_like(g.density), np.zeros_like(g.sh)
    K.render_rays_grad(g.links, g.density, g.sh, 2, o, d, target, bg, gd, gs,
                       workspace=K.GradWorkspace(g.num_voxels, g.sh.shape[1], chunks=5, capacity=3))
    np.testing.assert_allclose(gd, gd_ref, atol=2e-5 * np.abs(gd_ref).max())
    np.testing.assert_allclose(gs, gs_ref, atol=2e-5 * np.abs(gs_ref).max())


def test_gradients_are_bit_identical_across_thread_counts():
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs NUMBA_NUM_THREADS >= 2")
    g = random_grid(reso=12, sh_degree=1, seed=16)
    o, d = random_rays(300, seed=17)
    target = np.random.default_rng(18).random((len(o), 3)).astype(np.float32)
    bg = np.ones(3, np.float32)
    results = []
    before = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            results.append(_grad_with(g, o, d, target, bg, K.GradWorkspace(g.num_voxels, g.sh.shape[1])))
    finally:
        numba.set_num_threads(before)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_a_ray_makes_one_gradient_record_per_row_it_crosses():
    """A ray along x through a solid block crosses cells that share faces: the records are the rows it
    touches (4 per plane of voxels it passes), not 8 per sample, and the gradient is the reference's."""
    reso = 8
    coords = np.argwhere(np.ones((reso,) * 3, bool))
    rng = np.random.default_rng(3)
    g = Grid.from_coords(reso, coords, np.full(len(coords), 0.5, np.float32),
                         (rng.normal(size=(len(coords), 12)) * 0.2).astype(np.float32), 1)
    o = np.array([[-1.5, 0.1, -0.05]], np.float32)  # grid coords y 3.9, z 3.3: one row of cells along x
    d = np.array([[1.0, 0.0, 0.0]], np.float32)
    target = np.zeros((1, 3), np.float32)
    ws = K.GradWorkspace(g.num_voxels, g.sh.shape[1])
    gd, gs = np.zeros_like(g.density), np.zeros_like(g.sh)
    K.render_rays_grad(g.links, g.density, g.sh, 1, o, d, target, np.ones(3, np.float32), gd, gs, workspace=ws)
    touched = int(((gd != 0) | (gs != 0).any(axis=1)).sum())
    assert touched == 4 * reso
    assert ws.records == touched
    _, gd_ref, gs_ref = ref.render_rays_grad(g.links, g.density.astype(np.float64), g.sh.astype(np.float64), 1, o,
                                             d, target, np.ones(3, np.float32))
    np.testing.assert_allclose(gd, gd_ref, atol=1e-5 * np.abs(gd_ref).max())
    np.testing.assert_allclose(gs, gs_ref, atol=1e-5 * np.abs(gs_ref).max())


def test_gradient_workspace_memory_is_bounded():
    """No per-thread copies of the gradients: a 512^3-sized grid (10M rows) and 16 threads' worth of chunks
    cost the row flags plus records proportional to the batch, not (threads - 1) x N x C floats."""
    ws = K.GradWorkspace(10_000_000, 27, chunks=16)
    ws.layout(5000, 1800)
    assert ws.nbytes < 10_000_000 + 5000 * 40 * 120
    assert ws.nbytes < 0.01 * 15 * 10_000_000 * 27 * 4


def test_row_flags_mark_every_row_given_a_gradient():
    g = random_grid(reso=16, sh_degree=2, seed=5)
    o, d = random_rays(12, seed=6)  # few rays: most rows stay untouched
    grad_d = np.zeros_like(g.density)
    grad_sh = np.zeros_like(g.sh)
    flags = np.zeros(g.num_voxels, np.uint8)
    K.render_rays_grad(g.links, g.density, g.sh, 2, o, d, np.zeros((len(o), 3), np.float32), np.ones(3, np.float32),
                       grad_d, grad_sh, row_flags=flags)
    nonzero = (grad_d != 0) | (grad_sh != 0).any(axis=1)
    assert 0 < nonzero.sum() and flags.sum() < 0.8 * g.num_voxels
    assert (flags.astype(bool) >= nonzero).all()  # flagged rows may still sum to an exact zero
    tv_flags = np.zeros(g.num_voxels, np.uint8)
    tv_grad = np.zeros_like(g.sh)
    ids = np.random.default_rng(0).choice(16 ** 3, size=30, replace=False)
    K.tv_grad(g.links, g.sh, ids, 0.5, tv_grad, row_flags=tv_flags)
    assert (tv_flags.astype(bool) >= (tv_grad != 0).any(axis=1)).all() and tv_flags.sum() > 30


def test_trilinear_exact_on_linear_field():
    reso = 12
    g = Grid.dense(reso, 0)
    centres = g.voxel_centres()
    g.density[:] = 1.0 + 2.0 * centres[:, 0] - 3.0 * centres[:, 1] + 0.5 * centres[:, 2]
    g.sh[:, 1] = centres[:, 2]
    rng = np.random.default_rng(0)
    lo = -1 + 1.0 / reso  # stay within the lattice of centres, where interpolation is exact
    pts = rng.uniform(lo, -lo, size=(500, 3)).astype(np.float32)
    dens, sh = K.trilinear_sample(g.links, g.density, g.sh, pts)
    np.testing.assert_allclose(dens, 1.0 + 2.0 * pts[:, 0] - 3.0 * pts[:, 1] + 0.5 * pts[:, 2], atol=1e-5)
    np.testing.assert_allclose(sh[:, 1], pts[:, 2], atol=1e-5)
    dr, sr = ref.trilinear_sample(g.links, g.density, g.sh, pts)
    np.testing.assert_allclose(dens, dr, atol=1e-5)


def test_max_ray_weights_matches_reference():
    g = random_grid(reso=10, sh_degree=0, seed=11)
    o, d = random_rays(300, seed=12)
    w, _ = K.ray_weights(g.links, g.density, o, d)
    w_ref = ref.max_ray_weights(g.links, g.density.astype(np.float64), g.sh.astype(np.float64), 0, o, d)
    np.testing.assert_allclose(w, w_ref, atol=1e-5)
    assert w.max() > 0.1
    from plenopack.kernels import sampling
    budget = sampling.MAX_WEIGHT_BUFFER_BYTES
    sampling.MAX_WEIGHT_BUFFER_BYTES = 1  # one chunk: the same maxima
    try:
        np.testing.assert_array_equal(K.ray_weights(g.links, g.density, o, d)[0], w)
    finally:
        sampling.MAX_WEIGHT_BUFFER_BYTES = budget


def test_total_ray_weights_match_reference_and_accumulate_over_batches():
    """Totals: each sample's weight times its trilinear weight, summed per voxel; the maxima beside them are
    those computed without totals; two batches add up to the totals of both."""
    g = random_grid(reso=10, sh_degree=0, seed=11)
    o, d = random_rays(300, seed=12)
    out_max, out_sum = K.ray_weights(g.links, g.density, o, d, out_sum=np.zeros(g.num_voxels))
    ref_sum = ref.total_ray_weights(g.links, g.density.astype(np.float64), g.sh.astype(np.float64), 0, o, d)
    np.testing.assert_allclose(out_sum, ref_sum, rtol=1e-4, atol=1e-6)
    assert out_sum.max() > 1.0 and (out_sum > out_max).any()  # several rays credit a voxel
    np.testing.assert_array_equal(out_max, K.ray_weights(g.links, g.density, o, d)[0])
    halves = np.zeros(g.num_voxels)
    for part in (slice(0, 150), slice(150, 300)):
        K.ray_weights(g.links, g.density, o[part], d[part], out_sum=halves)
    np.testing.assert_allclose(halves, out_sum, rtol=1e-5, atol=1e-6)
    assert K.ray_weights(g.links, g.density, o, d)[1] is None  # totals only when asked for


def test_tv_gradient_matches_finite_differences():
    g = random_grid(reso=7, sh_degree=0, seed=4)
    values = g.sh.astype(np.float32)
    rng = np.random.default_rng(0)
    ids = rng.choice(7 ** 3, size=60, replace=False)
    grad = np.zeros_like(values)
    loss = K.tv_grad(g.links, values, ids, 0.5, grad)
    assert loss == pytest.approx(ref.tv_loss(g.links, values.astype(np.float64), ids, 0.5), rel=1e-4)
    v64 = values.astype(np.float64)
    for f in np.argsort(-np.abs(grad).reshape(-1))[:6]:
        r, c = np.unravel_index(f, grad.shape)
        vp, vm = v64.copy(), v64.copy()
        vp[r, c] += 1e-6
        vm[r, c] -= 1e-6
        fd = (ref.tv_loss(g.links, vp, ids, 0.5) - ref.tv_loss(g.links, vm, ids, 0.5)) / 2e-6
        assert grad[r, c] == pytest.approx(fd, rel=1e-3)
    grad_d = np.zeros_like(g.density)
    K.tv_grad(g.links, g.density, ids, 0.5, grad_d)  # 1-D values work too
    assert np.abs(grad_d).sum() > 0


def test_sparsity_reference():
    density = np.array([0.0, 1.0, -2.0, 3.0], np.float32)
    loss, grad = ref.sparsity_grad(density, np.array([1, 2, 3, 3]), 0.3)
    expect = 0.3 * np.mean(np.log(1 + 2 * np.array([1.0, 0.0, 9.0])))
    assert loss == pytest.approx(expect, rel=1e-5)
    np.testing.assert_allclose(grad, 0.1 * np.array([0, 4 / 3, 0, 12 / 19]), rtol=1e-5)


def test_regulariser_matches_tv_and_sparsity_references():
    """The fused regulariser (TV on density and SH over drawn rows with repeats, sparsity on the distinct rows)
    against tv_grad, the NumPy references and finite differences; bit-identical for any number of owners."""
    g = random_grid(reso=9, sh_degree=1, seed=21)
    coords = g.occupied_coords().astype(np.int64)
    flat_of_row = np.ravel_multi_index(tuple(coords.T), g.links.shape)
    rng = np.random.default_rng(22)
    rows = rng.integers(0, g.num_voxels, size=150)  # with repeats
    reg = K.Regulariser(g.links, flat_of_row, g.sh.shape[1], len(rows))
    gd, gs = np.zeros_like(g.density), np.zeros_like(g.sh)
    flags = np.zeros(g.num_voxels, np.uint8)
    loss = reg(rows, g.density, gd, 0.4, g.sh, gs, 0.2, 0.3, flags)
    expect_d, expect_s = np.zeros_like(gd), np.zeros_like(gs)
    loss_d = K.tv_grad(g.links, g.density, flat_of_row[rows], 0.4, expect_d)
    loss_s = K.tv_grad(g.links, g.sh, flat_of_row[rows], 0.2, expect_s)
    expect_d += ref.sparsity_grad(g.density, rows, 0.3)[1]
    assert loss == pytest.approx(loss_d + loss_s, rel=1e-5)
    assert loss_d == pytest.approx(ref.tv_loss(g.links, g.density.astype(np.float64), flat_of_row[rows], 0.4), rel=1e-4)
    np.testing.assert_allclose(gd, expect_d, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gs, expect_s, rtol=1e-4, atol=1e-6)
    assert (flags.astype(bool) >= ((gd != 0) | (gs != 0).any(axis=1))).all()
    assert not reg.mult.any()  # the per-row counters are left at zero for the next step
    numba = pytest.importorskip("numba")
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        gd1, gs1 = np.zeros_like(gd), np.zeros_like(gs)
        reg(rows, g.density, gd1, 0.4, g.sh, gs1, 0.2, 0.3)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(gd1, gd)
    np.testing.assert_array_equal(gs1, gs)


def test_regulariser_draws_runs_of_rows_each_row_equally_likely():
    """Rows drawn in the kernel come in runs of TV_RUN consecutive rows (wrapping at the end) from uniform
    starts: over many steps every row is drawn about equally often, the last rows as often as the first."""
    from plenopack.kernels.counter_rng import stream_key
    from plenopack.kernels.regularizers import TV_RUN

    g = random_grid(reso=12, sh_degree=0, seed=5)
    coords = g.occupied_coords().astype(np.int64)
    flat_of_row = np.ravel_multi_index(tuple(coords.T), g.links.shape)
    n = g.num_voxels
    reg = K.Regulariser(g.links, flat_of_row, g.sh.shape[1], 2 * TV_RUN)
    hits = np.zeros(n)
    for step in range(3000):
        reg(stream_key(7, step, 3), g.density, np.zeros_like(g.density), 0.1, g.sh, np.zeros_like(g.sh), 0.0, 0.0)
        runs = reg.draws.reshape(2, TV_RUN)
        assert ((np.diff(runs, axis=1) % n) == 1).all()
        np.add.at(hits, reg.draws, 1)
    expected = 3000 * 2 * TV_RUN / n
    assert np.abs(hits / expected - 1).max() < 0.25
    assert abs(hits[-TV_RUN:].mean() / expected - 1) < 0.1


def test_pixel_rays_match_the_reference(lego_small):
    from plenopack.fit import TrainingRays

    rays = TrainingRays(lego_small)
    rng = np.random.default_rng(3)
    flat = rng.integers(0, rays.count, 500)
    bg = rng.random((500, 3)).astype(np.float32)
    args = (flat, rays.offsets, rays.widths, rays.c2w, rays.intrinsics, rays.rgb, rays.mask, rays.premultiplied, bg,
            rays.object_mask)
    for got, expect in zip(K.pixel_rays(*args), ref.pixel_rays(*args)):
        np.testing.assert_allclose(got, expect, atol=1e-6)
    o, d, t, values = K.pixel_rays(flat, rays.offsets, rays.widths, rays.c2w, rays.intrinsics, rays.rgb)
    np.testing.assert_array_equal(t, rays.rgb[flat])
    assert values is None
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-6)


def test_rmsprop_matches_numpy_and_skips_untouched_rows():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(50, 4)).astype(np.float32)
    g = rng.normal(size=(50, 4)).astype(np.float32)
    g[10:20] = 0.0
    s = rng.random((50, 4)).astype(np.float32)
    p0, g0, s0 = p.copy(), g.copy(), s.copy()
    K.rmsprop_step(p, g, s, lr=0.1, beta=0.9, eps=1e-8)
    s_ref = 0.9 * s0 + 0.1 * g0 ** 2
    p_ref = p0 - 0.1 * g0 / (np.sqrt(s_ref) + 1e-8)
    rows = np.r_[0:10, 20:50]
    np.testing.assert_allclose(p[rows], p_ref[rows], rtol=1e-5)
    np.testing.assert_allclose(s[rows], s_ref[rows], rtol=1e-5)
    p_fn, s_fn = ref.rmsprop_step(p0, g0, s0, 0.1, 0.9)
    np.testing.assert_allclose(p, p_fn, rtol=1e-5)
    np.testing.assert_allclose(s, s_fn, rtol=1e-5)
    np.testing.assert_array_equal(p[10:20], p0[10:20])
    np.testing.assert_array_equal(s[10:20], s0[10:20])
    assert not g.any()


def test_rmsprop_restricted_to_rows_gives_the_same_result():
    rng = np.random.default_rng(1)
    p = rng.normal(size=(40, 3)).astype(np.float32)
    g = np.zeros_like(p)
    hot = np.array([3, 7, 8, 30])
    g[hot] = rng.normal(size=(4, 3))
    s = rng.random((40, 3)).astype(np.float32)
    p_all, g_all, s_all = p.copy(), g.copy(), s.copy()
    K.rmsprop_step(p_all, g_all, s_all, lr=0.1)
    K.rmsprop_step(p, g, s, lr=0.1, rows=np.r_[hot, 5])  # a listed row without a gradient is skipped too
    np.testing.assert_array_equal(p, p_all)
    np.testing.assert_array_equal(s, s_all)
    assert not g.any()


@pytest.mark.parametrize("add", [False, True])
def test_codebook_gather_and_gradient_scatter_match_the_reference(add):
    rng = np.random.default_rng(11)
    n, k, c = 5000, 37, 27
    codebook = rng.normal(size=(k, c)).astype(np.float32)
    rows = np.sort(rng.choice(n, 3000, replace=False))
    entries = rng.integers(0, k, len(rows))  # many rows share an entry: the scatter must not race
    out, expected = (np.full((n, c), 0.5, np.float32) for _ in range(2))
    K.gather_codebook_rows(out, rows, entries, codebook, add=add)
    ref.gather_codebook_rows(expected, rows, entries, codebook, add=add)
    np.testing.assert_array_equal(out, expected)
    grad = rng.normal(size=(n, c)).astype(np.float32)
    for clear in (True, False):
        g_k, g_r = grad.copy(), grad.copy()
        book_k, book_r = np.zeros((k, c), np.float32), np.zeros((k, c), np.float32)
        K.scatter_codebook_gradient(book_k, rows, entries, g_k, clear=clear)
        ref.scatter_codebook_gradient(book_r, rows, entries, g_r, clear=clear)
        np.testing.assert_allclose(book_k, book_r, rtol=1e-5, atol=1e-4)
        np.testing.assert_array_equal(g_k, g_r)
        assert not g_k[rows].any() if clear else np.array_equal(g_k, grad)


@pytest.mark.parametrize("n", [0, 1, 7, 1003])
def test_nearest_entries_matches_the_reference(n):
    rng = np.random.default_rng(13)
    codebook = rng.normal(size=(300, 27)).astype(np.float32)
    values = rng.normal(size=(n, 27)).astype(np.float32)
    values[: n // 2] = codebook[rng.integers(0, 300, n // 2)] + 1e-3  # rows at an entry (nearly)
    got, expected = K.nearest_entries(values, codebook), ref.nearest_entries(values, codebook)
    assert got.shape == (n,) and got.dtype == np.int64
    distance = ((values[:, None, :].astype(np.float64) - codebook[None]) ** 2).sum(-1)
    rows = np.arange(n)
    np.testing.assert_allclose(distance[rows, got], distance[rows, expected], rtol=1e-5, atol=1e-5)
    assert np.sum(got != expected) <= n // 500  # float32 against float64 may part on near ties only


def test_prefer_runs_matches_the_reference_and_only_trades_small_errors_for_runs():
    rng = np.random.default_rng(12)
    codebook = rng.normal(size=(16, 5)).astype(np.float32)
    index = np.repeat(rng.integers(0, 16, 300), rng.integers(1, 4, 300))[:600]
    values = (codebook[index] + rng.normal(0, 0.3, (len(index), 5))).astype(np.float32)
    nearest = np.argmin(((values[:, None] - codebook[None]) ** 2).sum(-1), axis=1)
    weights = rng.random(len(index)) + 0.5
    for threshold in (0.0, 0.5, 2.0):
        got = K.prefer_runs(values, codebook, nearest, weights, threshold)
        np.testing.assert_array_equal(got, ref.prefer_runs(values, codebook, nearest, weights, threshold))
        extra = weights * (((values - codebook[got]) ** 2).sum(1) - ((values - codebook[nearest]) ** 2).sum(1))
        assert np.all(extra < max(threshold, 1e-9)) and np.all((got == nearest) | (got == np.r_[-1, got[:-1]]))
    runs = [np.mean(K.prefer_runs(values, codebook, nearest, weights, t)[1:] == K.prefer_runs(
        values, codebook, nearest, weights, t)[:-1]) for t in (0.0, 2.0)]
    assert runs[1] > runs[0]


def test_rmsprop_on_flagged_rows_matches_the_reference():
    rng = np.random.default_rng(2)
    n, c = 60, 9
    density, sh = rng.normal(size=n).astype(np.float32), rng.normal(size=(n, c)).astype(np.float32)
    grad_d, grad_sh = rng.normal(size=n).astype(np.float32), rng.normal(size=(n, c)).astype(np.float32)
    flags = (rng.random(n) < 0.5).astype(np.uint8)
    grad_d[~flags.astype(bool)] = 0.0
    grad_sh[~flags.astype(bool)] = 0.0
    grad_sh[np.flatnonzero(flags)[:3]] = 0.0  # flagged, but only a density gradient: the SH row keeps its state
    avg_d, avg_sh = rng.random(n).astype(np.float32), rng.random((n, c)).astype(np.float32)
    expect_d, expect_avg_d = ref.rmsprop_step(density, grad_d, avg_d, 0.5, 0.9)
    expect_sh, expect_avg_sh = ref.rmsprop_step(sh, grad_sh, avg_sh, 0.1, 0.9)
    K.rmsprop_flagged(density, grad_d, avg_d, 0.5, sh, grad_sh, avg_sh, 0.1, flags, beta=0.9)
    np.testing.assert_allclose(density, expect_d, rtol=1e-5)
    np.testing.assert_allclose(avg_d, expect_avg_d, rtol=1e-5)
    np.testing.assert_allclose(sh, expect_sh, rtol=1e-5)
    np.testing.assert_allclose(avg_sh, expect_avg_sh, rtol=1e-5)
    assert not flags.any() and not grad_d.any() and not grad_sh.any()


def test_all_finite_matches_numpy():
    values = np.random.default_rng(0).normal(size=(300, 7)).astype(np.float32)
    assert K.all_finite(values, values[:, 0])
    for bad in (np.nan, np.inf, -np.inf):
        broken = values.copy()
        broken[123, 4] = bad
        assert K.all_finite(broken) == bool(np.isfinite(broken).all()) is False
        assert not K.all_finite(values, broken)


@pytest.mark.parametrize("reso", [7, 16, 20])
def test_morton_coords_and_links_match_the_reference(reso):
    mask = np.random.default_rng(reso).random((reso,) * 3) < 0.3
    links = K.empty_links(reso)
    assert (links == -1).all()
    coords = K.morton_coords(mask, links)
    np.testing.assert_array_equal(coords, ref.morton_coords(mask))
    np.testing.assert_array_equal(links[tuple(coords.T)], np.arange(len(coords)))
    assert (links >= 0).sum() == mask.sum()
    g = Grid(links, np.zeros(len(coords), np.float32), np.zeros((len(coords), 3), np.float32), 0)
    np.testing.assert_array_equal(K.flat_of_row(links, len(coords)),
                                  np.ravel_multi_index(tuple(g.occupied_coords().T.astype(np.int64)), links.shape))


@pytest.mark.parametrize("iterations", [0, 1, 2])
def test_box_dilation_matches_scipy(iterations):
    mask = np.random.default_rng(iterations).random((13,) * 3) < 0.02
    mask[0, 0, 0] = mask[12, 5, 12] = True  # corners and faces clip the box
    np.testing.assert_array_equal(K.box_dilate(mask, iterations), ref.box_dilate(mask, iterations))


def test_prune_mask_matches_the_reference():
    g = random_grid(reso=10, sh_degree=0, fill=0.2, seed=31)
    for reso in (16, 25):
        candidates = K.prune_mask(g.links, reso)
        np.testing.assert_array_equal(candidates, ref.prune_candidates(g.links, reso))
        kept = K.prune_mask(g.links, reso, g.density, 3.0)
        coords = np.argwhere(candidates)
        centres = (-1.0 + (coords + 0.5) * (2.0 / reso)).astype(np.float32)
        values, _ = ref.trilinear_sample(g.links, g.density.astype(np.float64), np.zeros((g.num_voxels, 0)), centres)
        decided = np.abs(values - 3.0) > 1e-4  # float32 rounding may flip values at the threshold itself
        np.testing.assert_array_equal(kept[tuple(coords.T)][decided], (values > 3.0)[decided])
        assert not kept[~candidates].any() and 0 < kept.sum() < candidates.sum()


def test_counter_rng_matches_the_reference_and_is_uniform():
    from plenopack.kernels import counter_rng

    key = counter_rng.stream_key(7, 3, counter_rng.PIXELS)
    assert key != counter_rng.stream_key(7, 4, counter_rng.PIXELS) != counter_rng.stream_key(8, 3, counter_rng.PIXELS)
    flat = np.zeros(50_000, np.int64)
    bg = np.empty((50_000, 3), np.float32)
    offsets = np.array([0, 60_000, 100_000], np.int64)
    rays_args = (offsets, np.array([300, 200], np.int64), np.tile(np.eye(4), (2, 1, 1)),
                 np.tile([100.0, 100.0, 150.0, 100.0], (2, 1)), np.zeros((100_000, 3), np.float32))
    flat, *_, bg = K.draw_pixel_rays(50_000, key, None, 0.0, np.uint64(5), *rays_args)
    np.testing.assert_array_equal(flat, (ref.counter_uniform(key, np.arange(50_000)) * 100_000).astype(np.int64))
    np.testing.assert_allclose(bg.reshape(-1), ref.counter_uniform(np.uint64(5), np.arange(150_000)), atol=1e-7)
    counts = np.bincount(flat // 10_000, minlength=10)  # ten equal bins of the pixels
    assert counts.min() > 0.95 * 5000 and counts.max() < 1.05 * 5000
    assert 0.49 < bg.mean() < 0.51 and bg.min() >= 0.0 and bg.max() < 1.0


def test_uncomposite_matches_numpy():
    rng = np.random.default_rng(4)
    rgb, mask = rng.random((500, 3)).astype(np.float32), rng.random(500).astype(np.float32)
    expect = rgb - (1.0 - mask)[:, None] * np.array([1.0, 0.5, 0.25], np.float32)
    K.uncomposite(rgb, mask, (1.0, 0.5, 0.25))
    np.testing.assert_allclose(rgb, expect, atol=1e-6)
