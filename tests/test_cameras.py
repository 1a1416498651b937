import numpy as np

from plenopack.cameras import look_at, orbit_poses, pixel_rays, project


def test_look_at_keeps_world_up_at_the_top_of_the_image():
    pose = look_at([3.0, 0.0, 0.5], target=[0.0, 0.0, 0.0], up=[0.0, 0.0, 1.0])
    k = (100.0, 100.0, 50.0, 50.0)
    uv, z = project(np.array([[0.0, 0.0, 0.5], [0.0, 0.0, -0.5], [0.0, 0.5, 0.0]]), pose, k)
    assert np.all(z > 0)
    assert uv[0, 1] < uv[1, 1]  # the higher point is nearer the top row
    # looking along -x with +z up, world +y is on the image's right
    assert uv[2, 0] > 50
    assert np.isclose(np.linalg.det(pose[:3, :3]), 1.0)


def test_orbit_looks_at_the_centre_and_rays_round_trip():
    for pose in orbit_poses(8, 3.0, 30.0):
        assert np.allclose(np.cross(pose[:3, 2], -pose[:3, 3] / np.linalg.norm(pose[:3, 3])), 0, atol=1e-9)
        o, d = pixel_rays(pose, (80.0, 80.0, 40.0, 30.0), 60, 80)
        uv, z = project(o + 2.0 * d, pose, (80.0, 80.0, 40.0, 30.0))
        v, u = np.mgrid[0:60, 0:80]
        np.testing.assert_allclose(uv, np.stack([u.ravel() + 0.5, v.ravel() + 0.5], -1), atol=1e-3)
