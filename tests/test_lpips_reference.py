"""plenopack's LPIPS against the `lpips` package's own network, with identical weights.

torchvision cannot be imported beside the CPU torch used here, so `lpips` gets a minimal `torchvision.models`
stand-in whose backbones carry the official ImageNet weights (data/lpips). Everything else is the package's
code: its input scaling, stage slicing, feature normalisation, its own shipped v0.1 linear heads and spatial
averaging. (The backbone architecture itself is checked against independent reference values in test_lpips.)
"""

import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from plenopack.lpips import _backbone, load_lpips


@pytest.fixture(scope="module")
def reference_lpips(data_dir):
    features = torch.load(data_dir / "lpips" / "squeezenet1_1_features.pth", weights_only=False)

    def squeezenet1_1(pretrained=False, **_):
        model = types.SimpleNamespace(features=_backbone("squeeze"))
        model.features.load_state_dict(features)
        return model

    shim = types.ModuleType("torchvision")
    shim.models = types.SimpleNamespace(squeezenet1_1=squeezenet1_1)
    saved = {k: sys.modules.get(k) for k in ("torchvision", "torchvision.models")}
    sys.modules["torchvision"], sys.modules["torchvision.models"] = shim, shim.models
    try:
        import lpips

        model = lpips.LPIPS(net="squeeze", version="0.1", verbose=False).eval()
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return model


def load(data_dir, name):
    return np.asarray(Image.open(data_dir / "lpips" / f"{name}.png").convert("RGB"), np.float32) / 255


def to_tensor(img):
    return torch.from_numpy(img.transpose(2, 0, 1)[None].copy())


def test_matches_lpips_package_on_official_examples(reference_lpips, data_dir):
    ours = load_lpips("squeeze")
    ref = load(data_dir, "ex_ref")
    for other in ("ex_p0", "ex_p1"):
        img = load(data_dir, other)
        with torch.no_grad():
            expect = float(reference_lpips(to_tensor(ref), to_tensor(img), normalize=True))
        assert ours(ref, img) == pytest.approx(expect, abs=1e-5)


def test_matches_lpips_package_on_rendered_views(reference_lpips, tiny_fit, lego_small):
    from plenopack.render import render_view

    ours = load_lpips("squeeze")
    for i in lego_small.test_ids[:3]:
        h, w = lego_small.image_size(i)
        rgb, _, _ = render_view(tiny_fit.grid, lego_small.c2w[i], lego_small.intrinsics[i], h, w)
        target = lego_small.images[i]
        with torch.no_grad():
            expect = float(reference_lpips(to_tensor(rgb), to_tensor(target), normalize=True))
        assert ours(rgb, target) == pytest.approx(expect, abs=1e-5)
