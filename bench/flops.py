"""Where the floor is: the network's FLOPs, the machine's matmul GFLOP/s, and where ONNX Runtime spends its time.

FLOPs are counted from ONNX Runtime's own profile of the unoptimised graph at batch 1 (it records every
node's actual input and output shapes, so timm's run-time "same" padding is resolved): a Conv costs
output elements x (input channels / groups) x kernel area multiply-adds, a Gemm or MatMul output
elements x inner size; one multiply-add is 2 FLOPs; every other op is counted as free. Time by kind
comes from the profile of the session as served (huskyai.inference.engine's defaults). numpy and onnxruntime only.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import defaultdict

import numpy as np
import onnxruntime as ort

from huskyai.inference.engine import OnnxOptions

KINDS = ("conv depthwise", "conv 1x1", "conv full", "gemm", "other ops")


def _kind(event: dict) -> str:
    op, shapes = event["args"]["op_name"], event["args"]["input_type_shape"]
    if op in ("Gemm", "MatMul"):
        return "gemm"
    if op in ("Conv", "FusedConv"):
        weight = next(iter(shapes[1].values()))
        if weight[1] == 1 and weight[2] * weight[3] > 1:
            return "conv depthwise"
        return "conv 1x1" if weight[2] * weight[3] == 1 else "conv full"
    return "other ops"


def _macs(event: dict) -> int:
    kind = _kind(event)
    if kind == "other ops":
        return 0
    a, b = (next(iter(s.values())) for s in event["args"]["input_type_shape"][:2])
    out = next(iter(event["args"]["output_type_shape"][0].values()))
    inner = int(np.prod(b[1:])) if kind.startswith("conv") else a[-1]
    return int(np.prod(out)) * inner


def profile(graph: bytes, options: ort.SessionOptions, size: int, runs: int) -> tuple[list[dict], float]:
    """ONNX Runtime's node events for ``runs`` batch-1 calls after a warm-up, and the mean ms a call."""
    with tempfile.TemporaryDirectory() as tmp:
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(tmp, "ort")
        session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).normal(0, 1, (1, 3, size, size)).astype(np.float32)
        name = session.get_inputs()[0].name
        times = []
        for _ in range(runs + 1):
            t = time.perf_counter()
            session.run(None, {name: x})
            times.append(time.perf_counter() - t)
        with open(session.end_profiling()) as f:
            events = [e for e in json.load(f) if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    per_run = len(events) // (runs + 1)
    return events[per_run:], float(np.mean(times[1:]) * 1000)


def _bytes(event: dict) -> int:
    """Bytes a node must read and write at least once: its float inputs (weights too) and outputs."""
    shapes = event["args"]["input_type_shape"] + event["args"]["output_type_shape"]
    return sum(4 * int(np.prod(v)) for s in shapes for t, v in s.items() if t == "float")


def network_flops(graph: bytes, size: int) -> tuple[dict[str, float], dict[str, float]]:
    """FLOPs of one batch-1 forward pass by kind (and "total"), and the bytes each kind moves."""
    options = OnnxOptions().session_options(1)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    events, _ = profile(graph, options, size, runs=1)
    flops, moved = defaultdict(float, {k: 0.0 for k in KINDS}), defaultdict(float)
    for e in events:
        flops[_kind(e)] += 2 * _macs(e)
        moved[_kind(e)] += _bytes(e)
    return dict(flops, total=sum(flops.values())), dict(moved)


def time_by_kind(graph: bytes, size: int, runs: int = 10) -> dict[str, float]:
    """ms a batch-1 call spends in each kind of op in the served session (profiled), and its wall ms."""
    events, wall = profile(graph, OnnxOptions().session_options(1), size, runs)
    ms = defaultdict(float, {k: 0.0 for k in KINDS})
    for e in events:
        ms[_kind(e)] += e["dur"] / 1000 / runs
    return dict(ms, kernels=sum(ms.values()), wall=wall)


def matmul_gflops(sizes: tuple[int, ...] = (1024, 1536, 2048), repeat: int = 5) -> float:
    """The best float32 matmul rate numpy (OpenBLAS, every core) reaches: what these cores can do."""
    best = 0.0
    rng = np.random.default_rng(0)
    for n in sizes:
        a, b = rng.random((n, n), np.float32), rng.random((n, n), np.float32)
        a @ b
        for _ in range(repeat):
            t = time.perf_counter()
            a @ b
            best = max(best, 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return best


def copy_gbs(mb: int = 64, repeat: int = 5) -> float:
    """Memory bandwidth as numpy's copy of a ``mb`` MB float32 array reaches it (bytes read + written)."""
    src = np.ones(mb * 2 ** 18, np.float32)
    dst = np.empty_like(src)
    best = min(_timed(lambda: np.copyto(dst, src)) for _ in range(repeat))
    return 2 * src.nbytes / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def floor_report(graph: bytes, size: int) -> dict:
    """Everything bench/predict.py prints about the floor, as plain numbers (JSON-able)."""
    flops, moved = network_flops(graph, size)
    return {"flops": flops, "bytes": moved, "gflops": matmul_gflops(), "copy_gbs": copy_gbs(64),
            "cache_gbs": copy_gbs(8), "ms": time_by_kind(graph, size)}


def roofline_ms(report: dict) -> float:
    """A floor that counts memory too: each kind of op at the lower of the matmul rate and its FLOPs per
    byte times the copy rate of an 8 MB array (the largest activation, 96x144x144 floats, is 8 MB)."""
    kinds = [k for k in KINDS if k != "other ops"]
    return sum(max(report["flops"][k] / (report["gflops"] * 1e9), report["bytes"][k] / (report["cache_gbs"] * 1e9))
               for k in kinds) * 1000


def format_profile(report: dict) -> list[str]:
    """The floor's table: each kind's share of the FLOPs and of the time, the rate it reaches, and the
    memory traffic it needs at least (FLOPs per byte low: memory bound, whatever the matmul rate)."""
    flops, ms, peak = report["flops"], report["ms"], report["gflops"]
    lines = [f"{'op kind':16s} {'GFLOP':>7s} {'of FLOPs':>9s} {'ms':>7s} {'of time':>8s} {'GFLOP/s':>8s} "
             f"{'of matmul':>10s} {'FLOP/byte':>10s} {'GB/s':>6s}"]
    for kind in KINDS:
        seconds, moved = ms[kind] / 1000, report["bytes"].get(kind, 0.0)
        rate = flops[kind] / 1e9 / seconds if seconds else 0.0
        memory = f"{flops[kind] / moved:10.1f} {moved / 1e9 / seconds:6.1f}" if flops[kind] else ""
        lines.append(f"{kind:16s} {flops[kind] / 1e9:7.3f} {flops[kind] / flops['total']:9.0%} {ms[kind]:7.2f} "
                     f"{ms[kind] / ms['kernels']:8.0%} {rate:8.1f} {rate / peak:10.0%} {memory}")
    lines.append(f"{'all kernels':16s} {flops['total'] / 1e9:7.3f} {'':9s} {ms['kernels']:7.2f} {'':8s} "
                 f"{flops['total'] / 1e9 / (ms['kernels'] / 1000):8.1f}   (profiled call: {ms['wall']:.1f} ms wall)")
    return lines
