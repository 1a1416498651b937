"""Write tiny captures in the exact on-disk formats of CO3D (v1/v2), COLMAP (text/binary) and ScanNet.

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


def write_colmap(root: Path, c2w, k, height, width, binary=False, model="PINHOLE", distortion=0.0):
    """A COLMAP project: images/ and sparse/0 in text or binary form."""
    sparse = root / "sparse" / "0"
    sparse.mkdir(parents=True)
    (root / "images").mkdir()
    params = {"PINHOLE": list(k), "SIMPLE_PINHOLE": [k[0], k[2], k[3]], "SIMPLE_RADIAL": [k[0], k[2], k[3], distortion],
              "OPENCV": list(k) + [distortion, 0.0, 0.0, 0.0]}[model]
    model_id = {"SIMPLE_PINHOLE": 0, "PINHOLE": 1, "SIMPLE_RADIAL": 2, "OPENCV": 4}[model]
    names, qt = [], []
    for i, pose in enumerate(c2w):
        rgb, _ = render_sphere(pose, k, height, width)
        name = f"img_{i:03d}.png"
        Image.fromarray(rgb).save(root / "images" / name)
        w2c = np.linalg.inv(pose)
        names.append(name)
        qt.append((rotation_to_qvec(w2c[:3, :3]), w2c[:3, 3]))
    points = CENTRE + RADIUS * np.random.default_rng(1).normal(size=(50, 3))
    if binary:
        with open(sparse / "cameras.bin", "wb") as fh:
            fh.write(struct.pack("<Q", 1) + struct.pack("<iiQQ", 1, model_id, width, height)
                     + struct.pack(f"<{len(params)}d", *params))
        with open(sparse / "images.bin", "wb") as fh:
            fh.write(struct.pack("<Q", len(names)))
            for i, (name, (q, t)) in enumerate(zip(names, qt)):
                fh.write(struct.pack("<idddddddi", i + 1, *q, *t, 1) + name.encode() + b"\0")
                fh.write(struct.pack("<Q", 2) + struct.pack("<ddq", 1.0, 2.0, 1) + struct.pack("<ddq", 3.0, 4.0, -1))
        with open(sparse / "points3D.bin", "wb") as fh:
            fh.write(struct.pack("<Q", len(points)))
            for j, p in enumerate(points):
                fh.write(struct.pack("<QdddBBBdQ", j + 1, *p, 200, 100, 50, 0.5, 1) + struct.pack("<ii", 1, 0))
    else:
        (sparse / "cameras.txt").write_text(
            "# Camera list with one line of data per camera:\n#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
            f"1 {model} {width} {height} " + " ".join(repr(float(v)) for v in params) + "\n")
        lines = ["# Image list with two lines of data per image:", "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
                 "#   POINTS2D[] as (X, Y, POINT3D_ID)"]
        for i, (name, (q, t)) in enumerate(zip(names, qt)):
            lines.append(f"{i + 1} " + " ".join(repr(float(v)) for v in (*q, *t)) + f" 1 {name}")
            lines.append("1.0 2.0 1 3.0 4.0 -1")
        (sparse / "images.txt").write_text("\n".join(lines) + "\n")
        (sparse / "points3D.txt").write_text("# 3D point list\n" + "".join(
            f"{j + 1} {float(p[0])!r} {float(p[1])!r} {float(p[2])!r} 200 100 50 0.5 1 0\n" for j, p in enumerate(points)))
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
