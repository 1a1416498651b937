"""LPIPS with local weights: official example values, fallbacks and messages."""

import numpy as np
import pytest
from PIL import Image

from plenopack.lpips import LpipsUnavailable, load_lpips, resolve_lpips


def img(data_dir, name):
    return np.asarray(Image.open(data_dir / "lpips" / f"{name}.png").convert("RGB"), np.float32) / 255


def test_squeeze_matches_independent_reference(data_dir):
    model = load_lpips("squeeze")
    ref, p0, p1 = (img(data_dir, n) for n in ("ex_ref", "ex_p0", "ex_p1"))
    # values from an independent NumPy implementation of LPIPS-squeeze v0.1 (data/README.md)
    assert model(ref, p0) == pytest.approx(0.7110, abs=5e-5)
    assert model(ref, p1) == pytest.approx(0.1479, abs=5e-5)
    assert model(ref, ref) == pytest.approx(0.0, abs=1e-6)
    batch = model(np.stack([p0, p1]), np.stack([ref, ref]))
    np.testing.assert_allclose(batch, [model(p0, ref), model(p1, ref)], rtol=1e-5)


def test_missing_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("PLENOPACK_LPIPS_DIR", raising=False)
    with pytest.raises(LpipsUnavailable, match="vgg16-397923af.pth.*PLENOPACK_LPIPS_DIR"):
        load_lpips("vgg")
    model, backbone, note = resolve_lpips("alex")
    assert backbone == "squeeze" and model is not None
    assert "alexnet" in note and "squeeze" in note


def test_weights_dir_and_torchvision_layout(tmp_path, data_dir):
    import shutil

    import torch

    state = torch.load(data_dir / "lpips" / "squeezenet1_1_features.pth", weights_only=False)
    torch.save({f"features.{k}": v for k, v in state.items()}, tmp_path / "squeezenet1_1-b8a52dc0.pth")
    shutil.copy(data_dir / "lpips" / "heads_v0.1" / "squeeze.pth", tmp_path / "squeeze.pth")
    model = load_lpips("squeeze", weights_dir=tmp_path)
    assert model.backbone_path.parent == tmp_path
    assert model(img(data_dir, "ex_ref"), img(data_dir, "ex_p1")) == pytest.approx(0.1479, abs=5e-5)
