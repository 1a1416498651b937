"""plenopack: compact Plenoxels radiance-field datasets and their memory-quality trade-off.

Pipeline (data flows one way):
    scene/ (one loader per capture format) -> grid.py -> kernels/ -> fit/ -> codecs/
    -> fileformat.py -> evaluate.py -> sweep.py / build/ -> datasets.py
`pipeline.py` is the one path from a Scene to an evaluated file that every entry point uses; cli/ is a thin
command line over it; presets/ holds named hyperparameter sets.
"""

__version__ = "0.1.0"

from plenopack.errors import PlenopackError


def open(path, memory_budget: int | str | None = None):  # noqa: A001 - mirrors builtins.open for scene files
    """Open a .plen scene file lazily: returns a `plenopack.packed.PackedScene`. A file whose decoding needs
    more than ``memory_budget`` bytes ("4G" style strings too; default $PLENOPACK_MEMORY_BUDGET or 4 GiB) is
    refused before anything is allocated."""
    from plenopack.packed import PackedScene

    return PackedScene(path, memory_budget)


__all__ = ["PlenopackError", "__version__", "open"]
