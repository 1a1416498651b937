"""plenopack: compact Plenoxels radiance-field datasets and their memory-quality trade-off.

Pipeline (data flows one way):
    scene/ (one loader per capture format) -> grid.py -> kernels/ -> fit.py -> codecs/
    -> fileformat.py -> metrics.py -> sweep.py -> build/ -> datasets.py
with a thin command line in cli/ and named hyperparameter sets in presets/.
"""

__version__ = "0.1.0"

from plenopack.errors import PlenopackError


def open(path):  # noqa: A001 - mirrors builtins.open for scene files, as the API promises
    """Open a .plen scene file lazily: returns a `plenopack.packed.PackedScene`."""
    from plenopack.packed import PackedScene

    return PackedScene(path)


__all__ = ["PlenopackError", "__version__", "open"]
