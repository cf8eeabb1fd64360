#!/usr/bin/env python3
"""Time training steps of the seed's `paper` network (L-Softmax, margin 4) in PyTorch eager mode.

One step = forward (training mode, with the target) + cross-entropy + backward + SGD step
(lr 0.1, momentum 0.9, weight decay 5e-4), on real MNIST batches (or random data with --random).
Prints images/s per batch size; --json adds one JSON line per configuration.

  .cache/venv/bin/python bench/torch_train_bench.py                 # CPU, batches 256 and 64
  .cache/venv/bin/python bench/torch_train_bench.py 128 --json
  python3 bench/torch_train_bench.py --device cuda --json            # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from torch_model import build_model, load_mnist  # noqa: E402


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def onednn_isa() -> str | None:
    """Ask oneDNN (in a child process, ONEDNN_VERBOSE=1) which ISA it dispatches to."""
    code = (
        "import torch; torch.set_num_threads(1); "
        "torch.nn.functional.conv2d(torch.randn(4,64,16,16), torch.randn(64,64,3,3), padding=1)"
    )
    env = dict(os.environ, ONEDNN_VERBOSE="1", DNNL_VERBOSE="1")
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        out = proc.stdout + "\n" + proc.stderr  # oneDNN's verbose lines may go to either
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if ",info,cpu,isa:" in line:
            return line.split("isa:", 1)[1].strip()
    return None


def describe_backend(device: torch.device) -> dict:
    info = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu": cpu_name(),
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
        "mkl": bool(torch.backends.mkl.is_available()),
        "openmp": bool(torch.backends.openmp.is_available()),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        info["cudnn_benchmark"] = torch.backends.cudnn.benchmark
        info["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        info["tf32_cudnn"] = torch.backends.cudnn.allow_tf32
    return info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("batches", nargs="*", type=int, default=[256, 64], help="batch sizes")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda / cuda:N")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (default: all cores)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="warm-up steps per batch size (default 2 on CPU, 20 on CUDA)")
    ap.add_argument("--steps", type=int, default=0,
                    help="timed steps per batch size (default: fill --seconds)")
    ap.add_argument("--seconds", type=float, default=25.0,
                    help="time budget of the timed steps per batch size when --steps is 0")
    ap.add_argument("--max-steps", type=int, default=2000)
    ap.add_argument("--margin", type=int, default=4)
    ap.add_argument("--random", action="store_true", help="random data instead of MNIST")
    ap.add_argument("--data", default=None, help="folder with the MNIST IDX files")
    ap.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark")
    ap.add_argument("--no-tf32", action="store_true",
                    help="fp32 convolutions (torch.backends.cudnn.allow_tf32 = False); PyTorch's default "
                         "runs cuDNN convolutions in TF32 on Ampere and later")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", default=None,
                    help="save the final state_dict (seed's names) to this .safetensors file")
    ap.add_argument("--json", action="store_true", help="print one JSON line per configuration")
    args = ap.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    if args.warmup is None:
        args.warmup = 20 if device.type == "cuda" else 2
    args.warmup = max(1, args.warmup)
    threads = args.threads or cpu_count()
    torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = args.cudnn_benchmark
        if args.no_tf32:
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    info = describe_backend(device)
    if device.type == "cpu":
        info["onednn_isa"] = onednn_isa()
    print(f"# torch {info['torch']} on {device} | cpu: {info['cpu']} | "
          f"threads {info['threads']} (interop {info['interop_threads']})")
    print("# backend: " + ", ".join(f"{k}={v}" for k, v in info.items()
                                    if k not in ("torch", "cpu", "threads", "interop_threads")))
    print("# " + torch.__config__.parallel_info().strip().replace("\n", "\n# "))

    if args.random:
        n = 4096
        images = torch.randn(n, 1, 28, 28)
        labels = torch.from_numpy(rng.integers(0, 10, n)).long()
        source = "random"
    else:
        t0 = time.perf_counter()
        x_np, y_np = load_mnist("train", args.data)
        images, labels = torch.from_numpy(x_np), torch.from_numpy(y_np)
        source = "mnist"
        print(f"# MNIST train {tuple(images.shape)} loaded in {time.perf_counter() - t0:.1f} s")
    images, labels = images.to(device), labels.to(device)  # the data sits on the device
    n = images.shape[0]

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    results = []
    model = None
    for batch in args.batches:
        torch.manual_seed(args.seed)
        model = build_model("paper", args.margin).to(device)
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        loss_fn = nn.CrossEntropyLoss()
        perm = torch.from_numpy(rng.permutation(n)).to(device)
        cursor = 0

        def next_batch():
            nonlocal cursor, perm
            if cursor + batch > n:
                perm = torch.from_numpy(rng.permutation(n)).to(device)
                cursor = 0
            idx = perm[cursor:cursor + batch]
            cursor += batch
            return images.index_select(0, idx), labels.index_select(0, idx)

        def step(xb, yb):
            opt.zero_grad(set_to_none=True)
            logits = model(xb, yb)
            loss = loss_fn(logits, yb)
            loss.backward()
            opt.step()
            return loss

        last_step_s = 0.0
        for _ in range(args.warmup):
            xb, yb = next_batch()
            sync()
            t_w = time.perf_counter()
            step(xb, yb)
            sync()
            last_step_s = time.perf_counter() - t_w
        if args.steps > 0:
            steps = args.steps
        else:  # fill the time budget, judging by the last warm-up step
            steps = int(min(args.max_steps, max(3, args.seconds / max(last_step_s, 1e-6))))
        # Gather the batches first so that the timing covers only the training steps.
        batches = [next_batch() for _ in range(steps)]
        sync()
        t0 = time.perf_counter()
        loss = None
        done = 0
        for xb, yb in batches:
            loss = step(xb, yb)
            done += 1
            # On a machine that got busier after the warm-up, stop at twice the budget.
            if (args.steps <= 0 and done >= 3
                    and time.perf_counter() - t0 > 2.0 * args.seconds):
                break
        sync()
        dt = time.perf_counter() - t0
        steps = done
        loss_v = float(loss.item())
        ips = steps * batch / dt
        res = {
            "framework": "pytorch",
            "model": "paper",
            "margin": args.margin,
            "batch": batch,
            "images_per_s": round(ips, 2),
            "step_ms": round(1000 * dt / steps, 3),
            "steps": steps,
            "warmup": args.warmup,
            "threads": info["threads"],
            "device": str(device) if device.type == "cpu" else f"{device} ({info['gpu']})",
            "data": source,
            "final_loss": round(loss_v, 4),
            "torch": torch.__version__,
        }
        results.append(res)
        print(f"batch {batch:4d}: {ips:9.1f} images/s  ({1000 * dt / steps:8.2f} ms/step, "
              f"{steps} timed steps after {args.warmup} warm-up, loss {loss_v:.3f})")
        if args.json:
            print(json.dumps(res), flush=True)
        del batches

    if args.save and model is not None:
        from safetensors.torch import save_file

        sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(sd, args.save)
        print(f"# saved state_dict of the last configuration ({len(sd)} tensors) to {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
