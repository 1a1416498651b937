"""Looking at scenes: `view` (interactive, in the browser) and `render` (turntables and capture cameras)."""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path

import typer

from plenopack.cli import app
from plenopack.cli.options import scene_option_flag
from plenopack.errors import PlenopackError
from plenopack.scene.options import parse_scene_options

CAMERA_SETS = ("test", "train", "all")


@app.command("view")
def view_cmd(
    plen: Path = typer.Argument(..., metavar="FILE.plen", help="Scene file."),
    port: int = typer.Option(8080, "--port", help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to serve on (0.0.0.0: every interface)."),
    preview_scale: float = typer.Option(0.25, "--preview-scale", help="Resolution while the camera moves, as a "
                                        "fraction of the browser's canvas."),
) -> None:
    """Look at a scene in the browser (viser): renders follow your camera, full resolution when it rests."""
    from plenopack.viewer import SceneViewer

    viewer = SceneViewer(plen, host=host, port=port, preview_scale=preview_scale).start()
    typer.echo(f"viewing {plen} at {viewer.url} (Ctrl+C to stop)")
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        viewer.stop()


@app.command("render")
def render_cmd(
    plen: Path = typer.Argument(..., metavar="FILE.plen", help="Scene file."),
    output: Path = typer.Option(..., "-o", "--output", help="Output .gif (or .mp4 with imageio-ffmpeg)."),
    orbit: int = typer.Option(36, "--orbit", help="Number of frames around the object (without --scene)."),
    scene_path: Path = typer.Option(None, "--scene", metavar="CAPTURE", help="Render the cameras of this capture "
                                    "(the one the scene was fitted on) instead of an orbit."),
    cameras: str = typer.Option("test", "--cameras", help="With --scene: test, train or all."),
    depth: Path = typer.Option(None, "--depth", metavar="DIR", help="Also write depth: DIR/depth.npy (frames x H x "
                               "W float32, distance along the ray in world units, NaN: no surface) and "
                               "colour-mapped DIR/depth_0000.png ..."),
    size: int = typer.Option(256, "--size", help="Orbit frame size in pixels."),
    radius: float = typer.Option(3.2, "--radius", help="Orbit camera distance from the centre (unit-cube units)."),
    elevation: float = typer.Option(25.0, "--elevation", help="Orbit: degrees above the horizontal plane."),
    fov: float = typer.Option(40.0, "--fov", help="Orbit: horizontal field of view in degrees."),
    fps: int = typer.Option(20, "--fps"),
    mp4: bool = typer.Option(False, "--mp4", help="Write an MP4 (needs imageio-ffmpeg) instead of a GIF."),
    format: str = typer.Option(None, "--format", help="With --scene: force the capture loader."),
    max_side: int = typer.Option(None, "--max-side", help="With --scene: default as recorded at fit time."),
    scene_options: list[str] = scene_option_flag(),
) -> None:
    """Render a turntable, or a capture's own cameras, into a GIF or MP4, frame by frame (memory stays flat)."""
    from rich.console import Console
    from rich.progress import track

    from plenopack.cameras import orbit_poses
    from plenopack.fileformat import read_plen
    from plenopack.pipeline import load_recorded_scene
    from plenopack.render import (AnimationWriter, DepthWriter, iter_views, orbit_intrinsics, recorded_render_options,
                                  to_uint8, world_scale)

    if mp4:
        output = output.with_suffix(".mp4")
    f = read_plen(plen)
    bg = tuple(f.metadata.get("eval_background") or (1.0, 1.0, 1.0))
    if scene_path is None:
        if orbit < 1:
            raise PlenopackError("--orbit must be at least 1")
        poses, k, (height, width) = orbit_poses(orbit, radius, elevation), orbit_intrinsics(size, fov), (size, size)
    else:
        if cameras not in CAMERA_SETS:
            raise PlenopackError(f"--cameras must be one of {', '.join(CAMERA_SETS)}, got {cameras!r}")
        scene = load_recorded_scene(f.metadata, scene_path, format, max_side, parse_scene_options(scene_options))
        ids = scene.split_ids(cameras)
        if not ids.size:
            raise PlenopackError(f"the capture has no {cameras} views", scene_path)
        sizes = {scene.image_size(int(i)) for i in ids}
        if len(sizes) > 1:
            raise PlenopackError(f"its {cameras} views have {len(sizes)} different sizes; a video needs one",
                                 scene_path)
        poses, k, (height, width) = scene.c2w[ids], scene.intrinsics[ids], sizes.pop()
    scene_meta = f.metadata.get("scene", {})
    scale = world_scale(scene_meta["world_to_unit"]) if "world_to_unit" in scene_meta else 1.0
    views = iter_views(f.grid, poses, k, height, width, bg, **recorded_render_options(f.metadata))
    depth_writer = DepthWriter(depth, len(poses), scale) if depth is not None else nullcontext()
    with AnimationWriter(output, fps) as video, depth_writer:
        for pose, (rgb, d, acc) in zip(poses, track(views, total=len(poses), description="render", transient=True,
                                                  console=Console(stderr=True))):
            video.append(to_uint8(rgb))
            if depth is not None:
                depth_writer.append(d, acc, pose)
    units = "world units" if "world_to_unit" in scene_meta else "unit-cube units (the file records no world_to_unit)"
    typer.echo(f"wrote {output} ({len(poses)} frames, {width}x{height})"
               + (f" and depth in {depth} ({units})" if depth is not None else ""))
