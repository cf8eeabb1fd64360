#!/usr/bin/env python3
"""Train or evaluate the seed's networks in PyTorch with the seed's recipe: the reference for
our accuracy figures and the other side of `import-torch` / `export-torch`.

Training follows the seed's loop: SGD lr 0.1 momentum 0.9 (weight decay 0 as in the seed's code,
--weight-decay to apply its README's 5e-4), MultiStepLR at epochs 50 and 65, batch 256, shuffled
training set, beta 100 x 0.99 per iteration, test accuracy after every epoch (eval mode).

  .cache/venv/bin/python bench/torch_seed_train.py --epochs 1                   # paper, m = 4
  .cache/venv/bin/python bench/torch_seed_train.py --epochs 1 --save-init init.safetensors
  .cache/venv/bin/python bench/torch_seed_train.py --eval model.safetensors     # strict load, test accuracy
  .cache/venv/bin/python bench/torch_seed_train.py --epochs 1 --seed 1 --precise-bn 2560  # + recomputed BN statistics
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from torch_model import build_model, load_mnist  # noqa: E402


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device) -> tuple[float, float]:
    model.eval()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(x), 1000):
            xb, yb = x[i:i + 1000].to(device), y[i:i + 1000].to(device)
            logits = model(xb)
            loss += F.cross_entropy(logits, yb, reduction="sum").item()
            correct += (logits.argmax(1) == yb).sum().item()
    return 100.0 * correct / len(x), loss / len(x)


def precise_bn_copy(model: torch.nn.Module, x: torch.Tensor, batch: int, device) -> torch.nn.Module:
    """A copy of `model` whose BatchNorm running statistics are recomputed from `x` with the
    current weights, as plain averages over batches of `batch` (momentum None), the same as
    `lsoftmax train --precise-bn`. Only the BatchNorm layers run in training mode."""
    import copy

    m = copy.deepcopy(model)
    m.eval()
    bns = [mod for mod in m.modules() if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = x[i:i + batch]
            if len(xb) >= 2:
                m(xb.to(device))
    m.eval()
    return m


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--preset", default="paper", choices=["paper", "fig2"])
    ap.add_argument("--margin", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--init", default=None, help="start from this safetensors state_dict (strict)")
    ap.add_argument("--save-init", default=None, help="write the initial state_dict here")
    ap.add_argument("--save", default=None, help="write the final state_dict here")
    ap.add_argument("--eval", default=None, metavar="FILE",
                    help="only evaluate this safetensors state_dict (loaded with strict=True)")
    ap.add_argument("--precise-bn", type=int, default=0, metavar="N",
                    help="also report each epoch's test accuracy with the BatchNorm statistics\n"
                         "recomputed from the first N training images (training unaffected)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    model = build_model(args.preset, args.margin).to(device)
    from safetensors.torch import load_file, save_file

    test_x, test_y = load_mnist("test")
    test_x, test_y = torch.from_numpy(test_x), torch.from_numpy(test_y)
    if args.eval or args.init:
        sd = load_file(args.eval or args.init)
        model.load_state_dict(sd, strict=True)
    if args.eval:
        acc, loss = evaluate(model, test_x, test_y, device)
        print(json.dumps({"file": args.eval, "test_accuracy": acc, "test_loss": loss}))
        return 0
    if args.save_init:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                  args.save_init)

    train_x, train_y = load_mnist("train")
    train_x, train_y = torch.from_numpy(train_x), torch.from_numpy(train_y)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9,
                          weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[50, 65], gamma=0.1)
    gen = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        model.train()
        t0 = time.time()
        order = torch.randperm(len(train_x), generator=gen)
        batches = (len(order) + args.batch - 1) // args.batch
        for b in range(batches):
            idx = order[b * args.batch:(b + 1) * args.batch]
            xb, yb = train_x[idx].to(device), train_y[idx].to(device)
            loss = F.cross_entropy(model(xb, yb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if b % 50 == 0 and not args.json:
                print(f"epoch {epoch + 1} batch {b}/{batches} loss {loss.item():.4f} "
                      f"beta {model.lsoftmax_linear.beta:.3g}", flush=True)
        sched.step()
        secs = time.time() - t0
        acc, tloss = evaluate(model, test_x, test_y, device)
        row = {"epoch": epoch + 1, "test_accuracy": acc, "test_loss": tloss,
               "seconds": round(secs, 1), "images_per_s": round(len(order) / secs, 1),
               "weight_decay": args.weight_decay, "seed": args.seed}
        if args.precise_bn:
            pm = precise_bn_copy(model, train_x[:args.precise_bn], args.batch, device)
            row["precise_bn"] = args.precise_bn
            row["test_accuracy_precise_bn"], row["test_loss_precise_bn"] = evaluate(
                pm, test_x, test_y, device)
        print(json.dumps(row), flush=True)
    if args.save:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                  args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
