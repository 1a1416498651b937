"""COLMAP reconstructions: ``sparse/0/{cameras,images,points3D}.{txt,bin}`` + ``images/`` (+ ``masks/``).

Both the text and the binary model formats are read (binary preferred when both exist). World-to-camera
poses (qvec w, x, y, z; tvec) are already OpenCV. Cameras of the models SIMPLE_PINHOLE, PINHOLE,
SIMPLE_RADIAL, RADIAL, OPENCV, FULL_OPENCV, OPENCV_FISHEYE, SIMPLE_RADIAL_FISHEYE and RADIAL_FISHEYE are
undistorted on load to pinhole images cropped to valid pixels, as COLMAP's image_undistorter does
(`plenopack.scene.undistort`), each camera (and image size) once; masks follow. Camera parameters are scaled
from the model's WIDTH x HEIGHT to the actual image size. Masks are looked up by `plenopack.scene.masks` in
``masks/`` (COLMAP's ``masks/<name>.png`` included). Every 8th image (sorted by name) is test. The capture
kind (`plenopack.scene.geometry`) picks the normalisation: object-centric for object captures, else the
cameras and the sparse points (1st-99th percentile box) fit the cube; ``object_centric`` overrides.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from plenopack.errors import PlenopackError
from plenopack.scene.base import Scene
from plenopack.scene.common import check_poses, every_nth_split, finish_scene
from plenopack.scene.io import image_size, read_frames
from plenopack.scene.masks import find_mask, require_all_or_none
from plenopack.scene.undistort import Undistorter, make_undistorter, scale_camera_params

# COLMAP's model id -> (name, number of params), all of them (the binary format needs the counts)
MODEL_IDS = {0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5), 4: ("OPENCV", 8),
             5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5), 8: ("SIMPLE_RADIAL_FISHEYE", 4),
             9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12)}


def qvec_to_rotation(q) -> np.ndarray:
    w, x, y, z = (float(v) for v in q)
    n = np.sqrt(w * w + x * x + y * y + z * z)
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


class _Reader:
    def __init__(self, path: Path):
        self.path = path
        self.data = path.read_bytes()
        self.pos = 0

    def read(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise PlenopackError("truncated binary model", self.path)
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return values

    def read_string(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise PlenopackError("truncated binary model (unterminated image name)", self.path)
        s = self.data[self.pos:end].decode("utf-8", errors="replace")
        self.pos = end + 1
        return s


def read_cameras(sparse: Path) -> dict[int, tuple[str, int, int, np.ndarray]]:
    """camera id -> (model name, width, height, params)."""
    cams = {}
    if (sparse / "cameras.bin").exists():
        r = _Reader(sparse / "cameras.bin")
        for _ in range(r.read("Q")[0]):
            cam_id, model_id, width, height = r.read("iiQQ")
            if model_id not in MODEL_IDS:
                raise PlenopackError(f"unknown camera model id {model_id}", r.path)
            name, nparams = MODEL_IDS[model_id]
            cams[cam_id] = (name, width, height, np.array(r.read("d" * nparams)))
        return cams
    path = sparse / "cameras.txt"
    if not path.exists():
        raise PlenopackError("no cameras.bin or cameras.txt", sparse)
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        try:
            cams[int(parts[0])] = (parts[1], int(parts[2]), int(parts[3]), np.array([float(v) for v in parts[4:]]))
        except (ValueError, IndexError):
            raise PlenopackError(f"malformed camera line {line!r}", path) from None
    return cams


def read_images(sparse: Path) -> list[tuple[str, np.ndarray, np.ndarray, int]]:
    """(name, qvec, tvec, camera id) per registered image."""
    out = []
    if (sparse / "images.bin").exists():
        r = _Reader(sparse / "images.bin")
        for _ in range(r.read("Q")[0]):
            (_, *q_t, cam_id) = r.read("idddddddi")
            name = r.read_string()
            npts = r.read("Q")[0]
            if r.pos + npts * 24 > len(r.data):
                raise PlenopackError("truncated binary model", r.path)
            r.pos += npts * 24
            out.append((name, np.array(q_t[:4]), np.array(q_t[4:]), cam_id))
        return out
    path = sparse / "images.txt"
    if not path.exists():
        raise PlenopackError("no images.bin or images.txt", sparse)
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    for header in lines[0::2]:
        parts = header.split()
        if not parts:
            continue
        try:
            out.append((parts[9], np.array([float(v) for v in parts[1:5]]), np.array([float(v) for v in parts[5:8]]),
                        int(parts[8])))
        except (ValueError, IndexError):
            raise PlenopackError(f"malformed image line {header!r}", path) from None
    return out


def read_points(sparse: Path) -> np.ndarray:
    """(M, 3) sparse points (empty when the model has none)."""
    if (sparse / "points3D.bin").exists():
        r = _Reader(sparse / "points3D.bin")
        pts = []
        for _ in range(r.read("Q")[0]):
            _, x, y, z, _, _, _, _, track = r.read("QdddBBBdQ")
            pts.append((x, y, z))
            r.pos += track * 8
        return np.array(pts, np.float64).reshape(-1, 3)
    path = sparse / "points3D.txt"
    if not path.exists():
        return np.zeros((0, 3))
    rows = [ln.split()[1:4] for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    try:
        return np.array(rows, np.float64).reshape(-1, 3)
    except ValueError:
        raise PlenopackError("malformed point line", path) from None


def load(root: Path, max_side: int = 800, test_every: int = 8, object_centric: bool | None = None,
         capture_kind: str | None = None, cam_scale_factor: float = 1.5, visual_hull: bool = True,
         use_masks: bool = True) -> Scene:
    sparse = root / "sparse" / "0"
    if not sparse.is_dir():
        sparse = root / "sparse"
    cams = read_cameras(sparse)
    entries = sorted(read_images(sparse), key=lambda e: e[0])
    if not entries:
        raise PlenopackError("the model has no registered images", sparse)
    camera_file = next((sparse / f for f in ("cameras.bin", "cameras.txt") if (sparse / f).exists()), sparse)
    paths = [root / "images" / name for name, *_ in entries]
    found = [find_mask(p, [root / "masks"], relative=name) if use_masks else None
             for p, (name, *_) in zip(paths, entries)]
    mask_paths = require_all_or_none(paths, found, root / "images")
    undistorters: dict[tuple[int, int, int], Undistorter] = {}
    jobs, poses = [], []
    for i, (name, q, t, cam_id) in enumerate(entries):
        if cam_id not in cams:
            raise PlenopackError(f"image {name} refers to unknown camera {cam_id}", sparse)
        h, w = image_size(paths[i])
        key = (cam_id, h, w)
        if key not in undistorters:
            model, width, height, params = cams[cam_id]
            params = scale_camera_params(model, params, (height, width), (h, w), where=camera_file)
            undistorters[key] = make_undistorter(model, params, w, h, where=camera_file)
        jobs.append((paths[i], undistorters[key], mask_paths[i] if mask_paths else None))
        w2c = np.eye(4)
        w2c[:3, :3] = qvec_to_rotation(q)
        w2c[:3, 3] = t
        poses.append(np.linalg.inv(w2c))
    images, masks, intr = read_frames(jobs, max_side)
    c2w = np.stack(poses)
    check_poses(c2w, [e[0] for e in entries], sparse)
    train, test = every_nth_split(len(images), test_every)
    options = dict(test_every=test_every, cam_scale_factor=cam_scale_factor, visual_hull=visual_hull,
                   use_masks=use_masks)
    models = sorted({cams[e[3]][0] for e in entries})
    return finish_scene(
        name=root.name, root=root, fmt="colmap", images=images, masks=masks, intrinsics=np.stack(intr),
        c2w_world=c2w, train_ids=train, test_ids=test, options=options, object_centric=object_centric,
        capture_kind=capture_kind, cam_scale_factor=cam_scale_factor, visual_hull=visual_hull,
        scene_points=read_points(sparse), scene_points_label="sparse points", image_paths=paths,
        source_info={"camera_models": models, "undistorted": any(not u.is_identity for u in undistorters.values())},
    )
