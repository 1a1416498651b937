"""Building a whole radiance-field dataset: discover scenes, then ingest -> fit -> compress -> evaluate -> write.

``DATASET_DIR`` receives ``scenes/<category>/<scene_id>.plen`` (written atomically), ``manifest.parquet`` (one
row per scene, rewritten atomically after every finished scene by the coordinating process) and
``dataset.json`` (configuration and totals). A re-run skips scenes whose file exists, whose SHA-256 matches
the manifest and whose config hash is the same; a killed build loses at most the scenes in flight. A scene
that fails is recorded with its one-line error and the build goes on.
Executors: ``local`` (default), a spawn-based process pool sized to the cores, each worker limited to
cores / workers numba threads; ``ray``, one Ray task per scene (optional extra ``plenopack[ray]``).
"""

from plenopack.build.builder import BuildConfig, build_dataset
from plenopack.build.discover import SceneRef, discover_scenes
from plenopack.build.manifest import MANIFEST_SCHEMA, read_manifest, write_manifest

__all__ = ["MANIFEST_SCHEMA", "BuildConfig", "SceneRef", "build_dataset", "discover_scenes", "read_manifest",
           "write_manifest"]
