#!/usr/bin/env python3
"""ONNX Runtime inference anchor for the seed's `paper` network (eval mode: logits = x @ W).

1. builds `paper` (random weights, or --weights FILE.safetensors with the seed's names),
   exports it to ONNX in eval mode with a dynamic batch dimension;
2. times onnxruntime on ONE thread (intra_op_num_threads=1, inter_op_num_threads=1), fp32:
   batch 1 over successive test digits (ms/digit) and batch 256 (images/s);
3. quantizes with onnxruntime's own static int8 quantization (quantize_static, MinMax calibration
   over 200 training images, per-channel weights, QDQ by default) and times it the same way;
4. reports top-1 agreement of int8 vs fp32 over the 10k test digits (and accuracy when the weights
   are trained; with random weights the agreement is meaningless and the output says so).

  .cache/venv/bin/python bench/onnx_infer_bench.py --json
  .cache/venv/bin/python bench/onnx_infer_bench.py --weights runs/paper_m4.safetensors --json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from onnxruntime.quantization import (  # noqa: E402
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: E402

from torch_model import REPO_ROOT, build_model, load_mnist, load_state_dict_file  # noqa: E402


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def export_onnx(model: torch.nn.Module, path: Path, opset: int, exporter: str) -> str:
    """Export in eval mode with the batch dimension dynamic; returns the exporter used."""
    model.eval()
    dummy = torch.randn(4, 1, 28, 28)
    common = dict(
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=opset,
    )
    tried = ["dynamo", "legacy"] if exporter == "auto" else [exporter]
    last_err: Exception | None = None
    for kind in tried:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if kind == "dynamo":
                    torch.onnx.export(model, (dummy,), str(path), dynamo=True,
                                      external_data=False, verbose=False, **common)
                else:
                    torch.onnx.export(model, (dummy,), str(path), dynamo=False, **common)
            onnx.checker.check_model(str(path))
            return kind
        except Exception as e:  # noqa: BLE001 - fall back to the other exporter
            last_err = e
            print(f"# export with the {kind} exporter failed: {type(e).__name__}: {e}"[:400])
    raise RuntimeError("ONNX export failed") from last_err


def make_session(path: Path, threads: int, opt_path: Path | None = None) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads == 1:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if opt_path is not None:
        so.optimized_model_filepath = str(opt_path)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def time_model(path: Path, x: np.ndarray, b1_runs: int, b256_runs: int, big_batch: int) -> dict:
    sess = make_session(path, threads=1)
    name = sess.get_inputs()[0].name
    # batch 1: successive test digits, one run each
    for i in range(min(20, len(x))):
        sess.run(None, {name: x[i:i + 1]})
    lat = []
    for i in range(b1_runs):
        j = i % len(x)
        xi = x[j:j + 1]
        t0 = time.perf_counter()
        sess.run(None, {name: xi})
        lat.append(time.perf_counter() - t0)
    lat_ms = np.array(lat) * 1000.0
    # big batch
    xb = x[:big_batch] if len(x) >= big_batch else np.resize(x, (big_batch,) + x.shape[1:])
    xb = np.ascontiguousarray(xb)
    sess.run(None, {name: xb})
    t0 = time.perf_counter()
    for _ in range(b256_runs):
        sess.run(None, {name: xb})
    dt = time.perf_counter() - t0
    return {
        "b1_ms_mean": float(lat_ms.mean()),
        "b1_ms_median": float(np.median(lat_ms)),
        "b1_ms_p90": float(np.percentile(lat_ms, 90)),
        "b1_runs": b1_runs,
        "big_images_per_s": b256_runs * big_batch / dt,
        "big_ms_per_batch": 1000.0 * dt / b256_runs,
        "big_runs": b256_runs,
    }


def predict(path: Path, x: np.ndarray, threads: int, opt_path: Path | None = None) -> np.ndarray:
    sess = make_session(path, threads=threads, opt_path=opt_path)
    name = sess.get_inputs()[0].name
    out = [sess.run(None, {name: x[i:i + 500]})[0] for i in range(0, len(x), 500)]
    return np.concatenate(out).argmax(1)


class MnistCalibration(CalibrationDataReader):
    def __init__(self, images: np.ndarray, input_name: str, batch: int = 20):
        self.batches = [images[i:i + batch] for i in range(0, len(images), batch)]
        self.name = input_name
        self.it = iter(self.batches)

    def get_next(self):
        b = next(self.it, None)
        return None if b is None else {self.name: b}

    def rewind(self):
        self.it = iter(self.batches)


def op_histogram(path: Path) -> dict:
    m = onnx.load(str(path))
    return dict(Counter(n.op_type for n in m.graph.node).most_common())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--weights", default=None,
                    help="trained state_dict (.safetensors, seed's parameter names)")
    ap.add_argument("--model", default="paper", choices=["paper", "fig2"])
    ap.add_argument("--margin", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=None, help="folder with the MNIST IDX files")
    ap.add_argument("--out-dir", default=str(REPO_ROOT / ".cache" / "onnx"))
    ap.add_argument("--opset", type=int, default=18)
    ap.add_argument("--exporter", default="auto", choices=["auto", "dynamo", "legacy"])
    ap.add_argument("--format", default="qdq", choices=["qdq", "qoperator"])
    ap.add_argument("--per-tensor", action="store_true", help="per-tensor instead of per-channel")
    ap.add_argument("--reduce-range", default="auto", choices=["auto", "on", "off"],
                    help="7-bit weights; auto = on when the CPU has no VNNI")
    ap.add_argument("--quant-ops", default="",
                    help="comma list of op types to quantize (default: all that ORT supports),"
                         " e.g. Conv,Gemm,MatMul")
    ap.add_argument("--calib", type=int, default=200, help="calibration images (training set)")
    ap.add_argument("--b1-runs", type=int, default=300, help="timed batch-1 runs")
    ap.add_argument("--big-batch", type=int, default=256)
    ap.add_argument("--big-runs", type=int, default=5, help="timed runs at the big batch")
    ap.add_argument("--agree-n", type=int, default=10000, help="test digits for the agreement")
    ap.add_argument("--agree-threads", type=int, default=0,
                    help="threads for the (untimed) agreement pass; default all cores")
    ap.add_argument("--json", action="store_true", help="print JSON lines")
    args = ap.parse_args()

    # Quiet the exporter's notes about torchvision/triton being absent, and the quantizer's
    # per-channel "axis out of range" notes for the rank-1 BatchNormalization parameters.
    for name in ("torch.onnx", "torch.utils.flop_counter", "torch._dynamo", "torch.export"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
    ort.set_default_logger_severity(3)

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    flags = cpu_flags()
    vnni = bool({"avx512_vnni", "avx_vnni", "avx_vnni_int8", "amx_int8"} & flags)
    reduce_range = {"on": True, "off": False, "auto": not vnni}[args.reduce_range]
    print(f"# onnxruntime {ort.__version__}, onnx {onnx.__version__}, torch {torch.__version__}; "
          f"CPU flags: avx2={'avx2' in flags} avx512f={'avx512f' in flags} vnni={vnni}")

    model = build_model(args.model, args.margin)
    if args.weights:
        load_state_dict_file(model, args.weights)
        weights_desc = str(args.weights)
        print(f"# weights: {args.weights}")
    else:
        weights_desc = "random"
        print("# weights: RANDOM initialisation (no --weights): timings are valid, but the int8/fp32"
              " agreement and accuracy below are NOT meaningful")
    model.eval()

    x_test, y_test = load_mnist("test", args.data)
    x_train, _ = load_mnist("train", args.data)
    rng = np.random.default_rng(args.seed)
    calib = np.ascontiguousarray(x_train[rng.choice(len(x_train), args.calib, replace=False)])
    del x_train

    tag = f"{args.model}_m{args.margin}"
    fp32_path = out_dir / f"{tag}_fp32.onnx"
    prep_path = out_dir / f"{tag}_fp32_prep.onnx"
    int8_path = out_dir / f"{tag}_int8_{args.format}.onnx"

    t0 = time.perf_counter()
    exporter = export_onnx(model, fp32_path, args.opset, args.exporter)
    print(f"# exported {fp32_path} ({fp32_path.stat().st_size / 1e6:.2f} MB) with the {exporter} "
          f"exporter in {time.perf_counter() - t0:.1f} s; ops: {op_histogram(fp32_path)}")

    # fp32 ONNX vs torch eval
    with torch.no_grad():
        ref = model(torch.from_numpy(x_test[:64])).numpy()
    sess = make_session(fp32_path, threads=1)
    got = sess.run(None, {sess.get_inputs()[0].name: x_test[:64]})[0]
    print(f"# fp32 ONNX vs torch eval logits (64 digits): max |diff| = {np.abs(got - ref).max():.2e}")
    input_name = sess.get_inputs()[0].name
    del sess

    t0 = time.perf_counter()
    quant_pre_process(str(fp32_path), str(prep_path), skip_symbolic_shape=False)
    quantize_static(
        str(prep_path),
        str(int8_path),
        MnistCalibration(calib, input_name),
        quant_format=QuantFormat.QDQ if args.format == "qdq" else QuantFormat.QOperator,
        per_channel=not args.per_tensor,
        reduce_range=reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        op_types_to_quantize=[o for o in args.quant_ops.split(",") if o] or None,
    )
    granularity = "per-tensor" if args.per_tensor else "per-channel"
    print(f"# int8 ({args.format}, {granularity}, u8 activations / s8 weights, "
          f"reduce_range={reduce_range}, MinMax over {args.calib} training images, ops: "
          f"{args.quant_ops or 'all supported'}) -> {int8_path} "
          f"({int8_path.stat().st_size / 1e6:.2f} MB) in {time.perf_counter() - t0:.1f} s")

    common = {
        "framework": "onnxruntime",
        "model": args.model,
        "threads": 1,
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
        "weights": weights_desc,
    }
    results = {}
    for prec, path in (("fp32", fp32_path), ("int8", int8_path)):
        r = time_model(path, x_test, args.b1_runs, args.big_runs, args.big_batch)
        results[prec] = r
        print(f"{prec}: batch 1: {r['b1_ms_mean']:.3f} ms/digit (median {r['b1_ms_median']:.3f}, "
              f"p90 {r['b1_ms_p90']:.3f}, {r['b1_runs']} digits); batch {args.big_batch}: "
              f"{r['big_images_per_s']:.1f} images/s ({r['big_ms_per_batch']:.1f} ms/batch, "
              f"{r['big_runs']} runs); 1 thread")
        if args.json:
            print(json.dumps({**common, "precision": prec, "batch": 1,
                              "ms_per_digit": round(r["b1_ms_mean"], 4),
                              "ms_per_digit_median": round(r["b1_ms_median"], 4),
                              "images_per_s": round(1000.0 / r["b1_ms_mean"], 2)}))
            print(json.dumps({**common, "precision": prec, "batch": args.big_batch,
                              "images_per_s": round(r["big_images_per_s"], 2),
                              "ms_per_batch": round(r["big_ms_per_batch"], 3)}))
    speedup_b1 = results["fp32"]["b1_ms_mean"] / results["int8"]["b1_ms_mean"]
    speedup_big = results["int8"]["big_images_per_s"] / results["fp32"]["big_images_per_s"]
    print(f"int8 speed-up over fp32: batch 1 x{speedup_b1:.2f}, batch {args.big_batch} "
          f"x{speedup_big:.2f}")

    n = min(args.agree_n, len(x_test))
    threads = args.agree_threads or (os.cpu_count() or 1)
    t0 = time.perf_counter()
    p32 = predict(fp32_path, x_test[:n], threads)
    opt_path = out_dir / f"{tag}_int8_{args.format}.ort_optimized.onnx"
    p8 = predict(int8_path, x_test[:n], threads, opt_path=opt_path)
    agree = float((p32 == p8).mean())
    acc32 = float((p32 == y_test[:n]).mean())
    acc8 = float((p8 == y_test[:n]).mean())
    note = "" if args.weights else "  [RANDOM weights: not meaningful]"
    print(f"int8 vs fp32 top-1 agreement over {n} test digits: {100 * agree:.2f}%"
          f" ({int((p32 != p8).sum())} differ); accuracy fp32 {100 * acc32:.2f}%, "
          f"int8 {100 * acc8:.2f}%{note}  ({time.perf_counter() - t0:.1f} s)")
    try:
        print(f"# ops ORT runs for the int8 model (after its graph optimisations): "
              f"{op_histogram(opt_path)}")
    except Exception as e:  # noqa: BLE001
        print(f"# could not read the optimised int8 graph: {e}")
    if args.json:
        print(json.dumps({**common, "metric": "int8_fp32_top1_agreement", "n": n,
                          "agreement": round(agree, 5), "accuracy_fp32": round(acc32, 5),
                          "accuracy_int8": round(acc8, 5), "meaningful": bool(args.weights),
                          "quant_format": args.format, "per_channel": not args.per_tensor,
                          "reduce_range": reduce_range}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
