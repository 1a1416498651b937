"""LPIPS v0.1 (Zhang et al. 2018) in plain PyTorch, with weights from local files only.

Backbones: ``vgg`` (VGG-16, PeRFception's choice via piqa), ``alex`` (the NeRF papers' usual choice) and
``squeeze`` (SqueezeNet 1.1). The network: inputs in [-1, 1] are shifted/scaled as LPIPS does, features of
5 (7 for squeeze) backbone stages are unit-normalised over channels, squared differences are weighted by the
v0.1 1x1 linear heads, averaged over space and summed over stages.

Weights are looked up, in order, in: an explicit ``weights_dir``; ``$PLENOPACK_LPIPS_DIR``; the torch hub
cache (``$TORCH_HOME/hub/checkpoints`` or ``~/.cache/torch/hub/checkpoints``: vgg16-397923af.pth,
alexnet-owt-7be5be79.pth, squeezenet1_1-b8a52dc0.pth); and the files shipped in the package (SqueezeNet
backbone and all three heads). Nothing is ever downloaded. A backbone file may hold a torchvision model's
full state dict (``features.*`` keys) or only its ``features`` (``0.weight`` ...). Heads are
``<net>.pth`` (keys ``lin0.model.1.weight`` ...). torch is imported only when a model is loaded.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np

from plenopack.errors import PlenopackError

NETS = ("vgg", "alex", "squeeze")
BACKBONE_FILES = {
    "vgg": ("vgg16_features.pth", "vgg16-397923af.pth"),
    "alex": ("alexnet_features.pth", "alexnet-owt-7be5be79.pth"),
    "squeeze": ("squeezenet1_1_features.pth", "squeezenet1_1-b8a52dc0.pth"),
}
CHANNELS = {"vgg": [64, 128, 256, 512, 512], "alex": [64, 192, 384, 256, 256],
            "squeeze": [64, 128, 256, 384, 384, 512, 512]}
# slices of torchvision's `features` after which LPIPS taps a stage
SLICES = {"vgg": [(0, 4), (4, 9), (9, 16), (16, 23), (23, 30)],
          "alex": [(0, 2), (2, 5), (5, 8), (8, 10), (10, 12)],
          "squeeze": [(0, 2), (2, 5), (5, 8), (8, 10), (10, 11), (11, 12), (12, 13)]}
ENV_VAR = "PLENOPACK_LPIPS_DIR"


class LpipsUnavailable(PlenopackError):
    """LPIPS weights (or torch) are missing; the message says how to provide them."""


def _search_dirs(weights_dir: str | Path | None) -> list[Path]:
    dirs = []
    if weights_dir:
        dirs.append(Path(weights_dir))
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]))
    torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    dirs.append(torch_home / "hub" / "checkpoints")
    dirs.append(Path(str(resources.files("plenopack") / "lpips_weights")))
    return dirs


def _find(names: tuple[str, ...] | list[str], dirs: list[Path]) -> Path | None:
    for d in dirs:
        for n in names:
            if (d / n).is_file():
                return d / n
    return None


def _backbone(net: str):
    import torch.nn as nn

    fire = _fire_class()
    if net == "vgg":
        layers, c_in = [], 3
        for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU(inplace=False)]
                c_in = v
        return nn.Sequential(*layers)
    if net == "alex":
        return nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),
            nn.MaxPool2d(3, 2), nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(), nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, 2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True), fire(64, 16, 64, 64),
        fire(128, 16, 64, 64), nn.MaxPool2d(3, 2, ceil_mode=True), fire(128, 32, 128, 128), fire(256, 32, 128, 128),
        nn.MaxPool2d(3, 2, ceil_mode=True), fire(256, 48, 192, 192), fire(384, 48, 192, 192), fire(384, 64, 256, 256),
        fire(512, 64, 256, 256))


def _fire_class():
    import torch
    import torch.nn as nn

    class Fire(nn.Module):
        """SqueezeNet's Fire module, with torchvision's parameter names."""

        def __init__(self, inplanes, squeeze, expand1x1, expand3x3):
            super().__init__()
            self.squeeze = nn.Conv2d(inplanes, squeeze, 1)
            self.expand1x1 = nn.Conv2d(squeeze, expand1x1, 1)
            self.expand3x3 = nn.Conv2d(squeeze, expand3x3, 3, padding=1)

        def forward(self, x):
            x = torch.relu(self.squeeze(x))
            return torch.cat([torch.relu(self.expand1x1(x)), torch.relu(self.expand3x3(x))], 1)

    return Fire


class LPIPS:
    """Callable LPIPS distance on float images in [0, 1] (H x W x 3 numpy, or batches N x H x W x 3)."""

    def __init__(self, net: str = "vgg", weights_dir: str | Path | None = None):
        if net not in NETS:
            raise PlenopackError(f"unknown LPIPS backbone {net!r} (expected one of: {', '.join(NETS)})")
        try:
            import torch
        except ImportError:
            raise LpipsUnavailable("LPIPS needs torch: pip install torch==2.13.0, then plenopack[torch]") from None
        dirs = _search_dirs(weights_dir)
        backbone_path = _find(BACKBONE_FILES[net], dirs)
        head_path = _find([f"{net}.pth"], dirs)
        if backbone_path is None or head_path is None:
            missing = " or ".join(BACKBONE_FILES[net]) if backbone_path is None else f"{net}.pth (LPIPS v0.1 head)"
            raise LpipsUnavailable(f"LPIPS-{net} weights not found: put {missing} in ${ENV_VAR} or "
                                   f"~/.cache/torch/hub/checkpoints (searched {', '.join(str(d) for d in dirs)})")
        self.net = net
        self.backbone_path, self.head_path = backbone_path, head_path
        state = torch.load(backbone_path, map_location="cpu", weights_only=False)
        if any(k.startswith("features.") for k in state):
            state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        self.features = _backbone(net)
        self.features.load_state_dict(state)
        heads = torch.load(head_path, map_location="cpu", weights_only=True)
        self.heads = [heads[f"lin{i}.model.1.weight"].float() for i in range(len(CHANNELS[net]))]
        self.features.eval()
        self.shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
        self.scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def _stages(self, x):
        feats = []
        for a, b in SLICES[self.net]:
            for layer in self.features[a:b]:
                x = layer(x)
            feats.append(x)
        return feats

    def distance(self, pred, target):
        """LPIPS between torch tensors N x 3 x H x W in [-1, 1]; returns N distances."""
        import torch

        with torch.no_grad():
            f0 = self._stages((pred - self.shift) / self.scale)
            f1 = self._stages((target - self.shift) / self.scale)
            total = 0.0
            for a, b, w in zip(f0, f1, self.heads):
                a = a / (torch.sqrt((a ** 2).sum(1, keepdim=True)) + 1e-10)
                b = b / (torch.sqrt((b ** 2).sum(1, keepdim=True)) + 1e-10)
                total = total + torch.nn.functional.conv2d((a - b) ** 2, w).mean(dim=(2, 3))
            return total.view(-1)

    def __call__(self, pred: np.ndarray, target: np.ndarray) -> float | np.ndarray:
        import torch

        p = np.asarray(pred, np.float32)
        t = np.asarray(target, np.float32)
        single = p.ndim == 3

        def to_tensor(x):
            x = x[None] if x.ndim == 3 else x
            return torch.from_numpy(np.ascontiguousarray(np.clip(x, 0, 1).transpose(0, 3, 1, 2))) * 2 - 1

        d = self.distance(to_tensor(p), to_tensor(t)).numpy()
        return float(d[0]) if single else d


def load_lpips(net: str = "vgg", weights_dir: str | Path | None = None) -> LPIPS:
    """An LPIPS model; raises LpipsUnavailable with one line saying which file is missing and where to put it."""
    return LPIPS(net, weights_dir)


def resolve_lpips(preferred: str = "vgg", weights_dir: str | Path | None = None) -> tuple[LPIPS | None, str | None, str]:
    """(model, backbone, note): the preferred backbone, else the shipped squeeze backbone, else none.

    ``note`` is empty when the preferred backbone loaded; otherwise one line to show the user.
    """
    try:
        return load_lpips(preferred, weights_dir), preferred, ""
    except LpipsUnavailable as exc:
        if preferred == "squeeze":
            return None, None, f"LPIPS n/a: {exc}"
        try:
            return load_lpips("squeeze", weights_dir), "squeeze", f"{exc}; reporting LPIPS with the squeeze backbone"
        except LpipsUnavailable as exc2:
            return None, None, f"LPIPS n/a: {exc2}"


def available_backbone(preferred: str = "vgg", weights_dir: str | Path | None = None) -> str | None:
    """The backbone `resolve_lpips` would use (preferred, else squeeze, else None), found without loading
    torch or any weights: results keyed by the LPIPS backbone can be looked up cheaply."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return None
    dirs = _search_dirs(weights_dir)
    for net in dict.fromkeys((preferred, "squeeze")):
        if net in NETS and _find(BACKBONE_FILES[net], dirs) and _find([f"{net}.pth"], dirs):
            return net
    return None
