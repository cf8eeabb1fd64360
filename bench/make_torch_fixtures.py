#!/usr/bin/env python3
"""Write the PyTorch parity fixtures under tests/fixtures/ (run once; the outputs are committed).

Made with the seed's `MNISTNet` (bench/torch_model.py, the seed's parameter names) in float32 on
CPU. The Rust test tests/tests/torch_parity.rs imports these files and checks that our trainer
reproduces PyTorch's numbers.

  tests/fixtures/torch_paper.safetensors       the state_dict: default init (torch.manual_seed(0)),
                                               then 20 SGD steps on MNIST so that weights and
                                               BatchNorm statistics are not at their initial values
  tests/fixtures/torch_paper_parity.safetensors
      digits          u8  [16, 28, 28]  the first 16 MNIST test digits
      labels          i64 [16]
      eval_logits     f32 [16, 10]      eval mode (running statistics), plain x @ W
      train_features  f32 [16, 256]     training mode (batch statistics): the head's input
      m{1..4}_logits  f32 [16, 10]      training-mode head outputs at beta = BETA
      m{1..4}_loss    f32 [1]           mean cross-entropy of those outputs
  tests/fixtures/torch_paper_after_sgd.safetensors
      the state_dict after STEPS SGD steps (lr, momentum, weight decay in the metadata) of the
      margin-4 network on those 16 digits, beta starting at BETA and multiplied by 0.99 after
      each forward as in the seed; running statistics included

  .cache/venv/bin/python bench/make_torch_fixtures.py [--out tests/fixtures]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from torch_model import MNISTNet, MNIST_MEAN, MNIST_STD, load_mnist  # noqa: E402

BETA = 2.0
LR = 0.1
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
STEPS = 2
N = 16


def normalise(u8: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(u8.astype(np.float32)).reshape(-1, 1, 28, 28)
    return (x / 255.0 - MNIST_MEAN) / MNIST_STD


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def with_margin(model: MNISTNet, margin: int) -> MNISTNet:
    m = MNISTNet(margin)
    m.load_state_dict(model.state_dict(), strict=True)
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "tests/fixtures"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)

    torch.manual_seed(0)
    model = MNISTNet(4)
    train_u8, train_y = load_mnist("train", normalize=False)
    test_u8, test_y = load_mnist("test", normalize=False)

    # A little training so that nothing sits at its initial value.
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=WEIGHT_DECAY)
    model.train()
    for step in range(20):
        idx = np.arange(step * 64, (step + 1) * 64)
        x, y = normalise(train_u8[idx]), torch.from_numpy(train_y[idx])
        loss = F.cross_entropy(model(x, y), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.lsoftmax_linear.beta = 100.0
    save_file(state(model), str(out / "torch_paper.safetensors"), metadata={"format": "pt"})

    digits = test_u8[:N]
    labels = torch.from_numpy(test_y[:N])
    x = normalise(digits)
    fix: dict[str, torch.Tensor] = {
        "digits": torch.from_numpy(np.array(digits, dtype=np.uint8)),
        "labels": labels.clone(),
    }
    with torch.no_grad():
        model.eval()
        fix["eval_logits"] = model(x).contiguous()
        for margin in (1, 2, 3, 4):
            m = with_margin(model, margin)
            m.train()
            m.lsoftmax_linear.beta = BETA
            feats = {}
            m.fc.register_forward_hook(lambda _m, _i, o: feats.__setitem__("f", o.clone()))
            logits = m(x, labels)
            fix[f"m{margin}_logits"] = logits.contiguous()
            fix[f"m{margin}_loss"] = F.cross_entropy(logits, labels).reshape(1)
            fix["train_features"] = feats["f"].contiguous()
    save_file(
        fix,
        str(out / "torch_paper_parity.safetensors"),
        metadata={"beta": str(BETA), "source": "bench/make_torch_fixtures.py"},
    )

    m = with_margin(model, 4)
    m.train()
    m.lsoftmax_linear.beta = BETA
    opt = torch.optim.SGD(m.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    for _ in range(STEPS):
        loss = F.cross_entropy(m(x, labels), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    save_file(
        state(m),
        str(out / "torch_paper_after_sgd.safetensors"),
        metadata={
            "format": "pt",
            "margin": "4",
            "beta": str(BETA),
            "beta_decay": "0.99",
            "lr": str(LR),
            "momentum": str(MOMENTUM),
            "weight_decay": str(WEIGHT_DECAY),
            "steps": str(STEPS),
        },
    )
    for f in sorted(out.glob("torch_paper*.safetensors")):
        print(f"{f}: {f.stat().st_size} bytes")
    print("eval predictions:", fix["eval_logits"].argmax(1).tolist(), "labels:", labels.tolist())
    for margin in (1, 2, 3, 4):
        print(f"m={margin}: loss {fix[f'm{margin}_loss'].item():.6f}")


if __name__ == "__main__":
    main()
