"""Write tiny captures in the exact on-disk formats of CO3D (v1/v2), COLMAP (text/binary), nerfstudio /
instant-ngp (transforms.json) and ScanNet, and images seen through distorting lenses.

Each renders a known coloured sphere from known OpenCV cameras, so loaders can be checked against the truth.
"""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from plenopack.cameras import look_at

CENTRE = np.array([0.2, -0.1, 0.3])
RADIUS = 0.5


def world_poses(scene):
    """Undo a Scene's world_to_unit: its camera-to-world poses in the source frame."""
    m = scene.world_to_unit
    s = np.cbrt(np.linalg.det(m[:3, :3]))
    rot = m[:3, :3] / s
    out = scene.c2w.copy()
    out[:, :3, :3] = rot.T @ scene.c2w[:, :3, :3]
    out[:, :3, 3] = (scene.c2w[:, :3, 3] - m[:3, 3]) @ rot / s
    return out


def make_cameras(n=10, height=24, width=32, distance=3.0, seed=0):
    """(c2w (n, 4, 4) OpenCV, intrinsics (fx, fy, cx, cy)) on a ring around CENTRE, world up +z."""
    rng = np.random.default_rng(seed)
    poses = []
    for i in range(n):
        a = 2 * np.pi * i / n
        el = np.deg2rad(20 + 10 * rng.random())
        eye = CENTRE + distance * np.array([np.cos(el) * np.cos(a), np.cos(el) * np.sin(a), np.sin(el)])
        poses.append(look_at(eye, CENTRE + rng.normal(0, 0.05, 3)))
    k = np.array([1.1 * width, 1.05 * width, width / 2 + 0.7, height / 2 - 0.4])
    return np.stack(poses), k


def render_sphere(c2w, k, height, width):
    """uint8 RGB image (colour from the surface normal) and uint8 mask of the sphere."""
    v, u = np.mgrid[0:height, 0:width]
    d = np.stack([(u + 0.5 - k[2]) / k[0], (v + 0.5 - k[3]) / k[1], np.ones_like(u, float)], -1) @ c2w[:3, :3].T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    oc = c2w[:3, 3] - CENTRE
    b = (d * oc).sum(-1)
    disc = b * b - (oc @ oc - RADIUS ** 2)
    hit = disc > 0
    t = -b - np.sqrt(np.maximum(disc, 0))
    n = (c2w[:3, 3] + t[..., None] * d - CENTRE) / RADIUS
    rgb = np.where(hit[..., None], 0.5 + 0.5 * n, 0.1)
    return (rgb * 255).astype(np.uint8), (hit * 255).astype(np.uint8)


def write_co3d(root: Path, c2w, k, height, width, fmt="ndc_isotropic", category="teddybear", sequence="101_11_22"):
    """A CO3D dataset root with one category and one sequence; returns the sequence folder."""
    seq_dir = root / category / sequence
    (seq_dir / "images").mkdir(parents=True)
    (seq_dir / "masks").mkdir()
    half = np.array([min(height, width) / 2] * 2) if fmt == "ndc_isotropic" else np.array([width / 2, height / 2])
    frames = []
    flip = np.diag([-1.0, -1.0, 1.0])
    for i, pose in enumerate(c2w):
        rgb, mask = render_sphere(pose, k, height, width)
        img_rel = f"{category}/{sequence}/images/frame{i + 1:06d}.jpg"
        mask_rel = f"{category}/{sequence}/masks/frame{i + 1:06d}.png"
        Image.fromarray(rgb).save(root / img_rel, quality=95)
        Image.fromarray(mask).save(root / mask_rel)
        w2c = np.linalg.inv(pose)
        R = (flip @ w2c[:3, :3]).T  # PyTorch3D: X_cam = X_world @ R + T, camera x left, y up
        T = flip @ w2c[:3, 3]
        frames.append({
            "sequence_name": sequence, "frame_number": i, "frame_timestamp": i / 30.0,
            "image": {"path": img_rel, "size": [height, width]},
            "mask": {"path": mask_rel, "mass": float(mask.sum() / 255)},
            "viewpoint": {"R": R.tolist(), "T": T.tolist(), "focal_length": (k[:2] / half).tolist(),
                          "principal_point": (-(k[2:] - np.array([width / 2, height / 2])) / half).tolist(),
                          "intrinsics_format": fmt},
            "meta": {"frame_type": "test_known", "frame_splits": ["singlesequence_teddybear_test_0_known"]},
        })
    with gzip.open(root / category / "frame_annotations.jgz", "wt") as fh:
        json.dump(frames, fh)
    with gzip.open(root / category / "sequence_annotations.jgz", "wt") as fh:
        json.dump([{"sequence_name": sequence, "category": category, "video_length": len(frames),
                    "viewpoint_quality_score": 1.0}], fh)
    return seq_dir


def rotation_to_qvec(r):
    w = np.sqrt(max(1e-12, 1 + r[0, 0] + r[1, 1] + r[2, 2])) / 2
    return np.array([w, (r[2, 1] - r[1, 2]) / (4 * w), (r[0, 2] - r[2, 0]) / (4 * w), (r[1, 0] - r[0, 1]) / (4 * w)])


COLMAP_MODEL_IDS = {"SIMPLE_PINHOLE": 0, "PINHOLE": 1, "SIMPLE_RADIAL": 2, "RADIAL": 3, "OPENCV": 4, "OPENCV_FISHEYE": 5,
                    "FULL_OPENCV": 6, "FOV": 7, "SIMPLE_RADIAL_FISHEYE": 8, "RADIAL_FISHEYE": 9, "THIN_PRISM_FISHEYE": 10}


def write_colmap(root: Path, c2w, k, height, width, binary=False, model="PINHOLE", distortion=0.0, cameras=None,
                 camera_of=None, images=None, names=None, masks=None):
    """A COLMAP project: images/ and sparse/0 in text or binary form, exactly as COLMAP writes them.

    By default one camera (``model`` built from ``k`` and ``distortion``) and renders of the sphere.
    ``cameras``: list of (model, params, width, height) instead; ``camera_of[i]``: index of image i's camera;
    ``images``: uint8 arrays to write instead of the renders; ``names``: image names (sub-folders allowed);
    ``masks``: {relative mask path under masks/: uint8 array} to write.
    """
    sparse = root / "sparse" / "0"
    sparse.mkdir(parents=True)
    (root / "images").mkdir()
    if cameras is None:
        params = {"PINHOLE": list(k), "SIMPLE_PINHOLE": [k[0], k[2], k[3]],
                  "SIMPLE_RADIAL": [k[0], k[2], k[3], distortion], "OPENCV": list(k) + [distortion, 0.0, 0.0, 0.0]}[model]
        cameras = [(model, params, width, height)]
    camera_of = [0] * len(c2w) if camera_of is None else camera_of
    names = names or [f"img_{i:03d}.png" for i in range(len(c2w))]
    qt = []
    for i, (pose, name) in enumerate(zip(c2w, names)):
        rgb = render_sphere(pose, k, height, width)[0] if images is None else images[i]
        (root / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(root / "images" / name)
        w2c = np.linalg.inv(pose)
        qt.append((rotation_to_qvec(w2c[:3, :3]), w2c[:3, 3]))
    for rel, mask in (masks or {}).items():
        (root / "masks" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(root / "masks" / rel)
    points = CENTRE + RADIUS * np.random.default_rng(1).normal(size=(50, 3))
    if binary:
        with open(sparse / "cameras.bin", "wb") as fh:
            fh.write(struct.pack("<Q", len(cameras)))
            for c, (m, params, w, h) in enumerate(cameras):
                fh.write(struct.pack("<iiQQ", c + 1, COLMAP_MODEL_IDS[m], w, h) + struct.pack(f"<{len(params)}d", *params))
        with open(sparse / "images.bin", "wb") as fh:
            fh.write(struct.pack("<Q", len(names)))
            for i, (name, (q, t)) in enumerate(zip(names, qt)):
                fh.write(struct.pack("<idddddddi", i + 1, *q, *t, camera_of[i] + 1) + name.encode() + b"\0")
                fh.write(struct.pack("<Q", 2) + struct.pack("<ddq", 1.0, 2.0, 1) + struct.pack("<ddq", 3.0, 4.0, -1))
        with open(sparse / "points3D.bin", "wb") as fh:
            fh.write(struct.pack("<Q", len(points)))
            for j, p in enumerate(points):
                fh.write(struct.pack("<QdddBBBdQ", j + 1, *p, 200, 100, 50, 0.5, 1) + struct.pack("<ii", 1, 0))
    else:
        (sparse / "cameras.txt").write_text(
            "# Camera list with one line of data per camera:\n#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
            + "".join(f"{c + 1} {m} {w} {h} " + " ".join(repr(float(v)) for v in params) + "\n"
                      for c, (m, params, w, h) in enumerate(cameras)))
        lines = ["# Image list with two lines of data per image:", "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
                 "#   POINTS2D[] as (X, Y, POINT3D_ID)"]
        for i, (name, (q, t)) in enumerate(zip(names, qt)):
            lines.append(f"{i + 1} " + " ".join(repr(float(v)) for v in (*q, *t)) + f" {camera_of[i] + 1} {name}")
            lines.append("1.0 2.0 1 3.0 4.0 -1")
        (sparse / "images.txt").write_text("\n".join(lines) + "\n")
        (sparse / "points3D.txt").write_text("# 3D point list\n" + "".join(
            f"{j + 1} {float(p[0])!r} {float(p[1])!r} {float(p[2])!r} 200 100 50 0.5 1 0\n" for j, p in enumerate(points)))
    return root


def write_transforms(root: Path, c2w, names, images, top: dict, frame_extra=None, extra=None):
    """A nerfstudio / instant-ngp capture: ``transforms.json`` (OpenGL camera-to-world) + the images.

    ``top``: top-level intrinsics keys (fl_x, cx, w, k1, camera_model, ...); ``frame_extra[i]``: keys added to
    frame i (overrides, mask_path, sharpness); ``extra``: other top-level keys (aabb_scale, split lists).
    """
    frames = []
    for i, (pose, name) in enumerate(zip(c2w, names)):
        if images is not None:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).save(root / name)
        frame = {"file_path": name, "transform_matrix": (pose @ np.diag([1.0, -1.0, -1.0, 1.0])).tolist()}
        frame.update((frame_extra or {}).get(i, {}))
        frames.append(frame)
    root.mkdir(parents=True, exist_ok=True)
    (root / "transforms.json").write_text(json.dumps({**top, **(extra or {}), "frames": frames}, indent=1))
    return root


# ---------------------------------------------------------------- lenses
PATTERN_PERIOD = 0.12  # of the smooth test pattern, in normalised image-plane units (about 12 px at f = 100 px)


def pattern(x, y):
    """A smooth colour pattern on the normalised image plane (x, y) = (X/Z, Y/Z): float32 RGB in [0.15, 0.85]."""
    w = 2 * np.pi / PATTERN_PERIOD
    r = 0.5 + 0.35 * np.sin(w * x) * np.cos(0.7 * w * y)
    g = 0.5 + 0.35 * np.sin(0.8 * w * (x + y) + 1.0)
    b = 0.5 + 0.35 * np.cos(0.6 * w * x - 0.9 * w * y)
    return np.stack([r, g, b], -1).astype(np.float32)


def disk(x, y):
    """A white disk of radius 0.3 on black, on the normalised image plane (a mask)."""
    inside = (x ** 2 + y ** 2 < 0.09).astype(np.float32)
    return np.stack([inside] * 3, -1)


def render_pinhole_pattern(k, height, width, texture=pattern):
    """``texture`` seen by a pinhole camera (fx, fy, cx, cy), pixel centres at +0.5 (plenopack's convention)."""
    v, u = np.mgrid[0:height, 0:width]
    return texture((u + 0.5 - k[2]) / k[0], (v + 0.5 - k[3]) / k[1])


def render_through_lens(model, params, width, height, texture=pattern):
    """uint8 image of ``texture`` seen through a COLMAP camera: each pixel centre is undistorted with OpenCV's
    model (to 1e-6 px, checked by projecting back with cv2.projectPoints / cv2.fisheye.distortPoints)."""
    import cv2

    from plenopack.scene.undistort import MODELS

    spec = MODELS[model]
    (fx, fy, cx, cy), dist = spec.split(np.asarray(params, np.float64))
    k_cv = np.array([[fx, 0, cx - 0.5], [0, fy, cy - 0.5], [0, 0, 1.0]])  # COLMAP centres at +0.5, OpenCV's at 0
    v, u = np.mgrid[0:height, 0:width]
    pix = np.stack([u, v], -1).reshape(-1, 1, 2).astype(np.float64)
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 500, 1e-15)
    if spec.fisheye:
        und = cv2.fisheye.undistortPoints(pix, k_cv, dist, criteria=crit)
        back = cv2.fisheye.distortPoints(und, k_cv, dist)
    else:
        und = cv2.undistortPoints(pix, k_cv, dist, criteria=crit)
        rays = np.concatenate([und.reshape(-1, 2), np.ones((len(pix), 1))], 1)
        back = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), k_cv, dist)[0]
    assert np.abs(back - pix).max() < 1e-6
    xy = und.reshape(height, width, 2)
    return np.round(texture(xy[..., 0], xy[..., 1]) * 255).astype(np.uint8)


def write_llff(root: Path, c2w, k, height, width, images=None, names=None, near_far=(1.0, 6.0)):
    """An LLFF capture: poses_bounds.npy ([down, right, back, centre, (H, W, focal)] + near, far) + images/."""
    (root / "images").mkdir(parents=True)
    rows = []
    for i, pose in enumerate(c2w):
        mat = np.stack([pose[:3, 1], pose[:3, 0], -pose[:3, 2], pose[:3, 3], [height, width, k[0]]], axis=1)
        rows.append(np.concatenate([mat.reshape(-1), near_far]))
        rgb = render_sphere(pose, k, height, width)[0] if images is None else images[i]
        Image.fromarray(rgb).save(root / "images" / (names[i] if names else f"IMG_{i:04d}.png"))
    np.save(root / "poses_bounds.npy", np.array(rows))
    return root


def write_scannet(root: Path, c2w, k, height, width, bad_pose=None, depth=True):
    """A ScanNet SensReader export; ``bad_pose`` = index of a frame whose pose is -inf (lost tracking)."""
    for d in ("color", "pose", "intrinsic", "depth"):
        (root / d).mkdir(parents=True, exist_ok=True)
    kmat = np.array([[k[0], 0, k[2], 0], [0, k[1], k[3], 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    np.savetxt(root / "intrinsic" / "intrinsic_color.txt", kmat)
    np.savetxt(root / "intrinsic" / "intrinsic_depth.txt", kmat)
    for i, pose in enumerate(c2w):
        rgb, mask = render_sphere(pose, k, height, width)
        Image.fromarray(rgb).save(root / "color" / f"{i}.jpg", quality=95)
        p = np.full((4, 4), -np.inf) if i == bad_pose else pose
        np.savetxt(root / "pose" / f"{i}.txt", p)
        if depth:
            z = np.where(mask > 0, 2.5, 4.0) * 1000
            Image.fromarray(z.astype(np.uint16)).save(root / "depth" / f"{i}.png")
    return root
