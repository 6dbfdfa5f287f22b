"""INT8 against fp32 on the shipped model, in one run: does static INT8 quantization cost nothing, and is it faster?

Builds two INT8 exports from a copy of export/ (huskyai.training.quantize: QDQ, per-channel int8 weights, uint8
activations, MinMax; plain and reduce_range), calibrated on training photos only, then on the card's held-out
photos (../shared/data) prints: the largest |dp| against fp32, the changed decisions, each accuracy with a
bootstrap 95% interval and the paired interval of the change; how far the fp32 model itself moves under input
noise of half a pixel step (what INT8's rounding of the input costs at least); the speed of each
(model.predict ms, predict_batch photos/s, alternating rounds at normal priority); and each precision's floor.

    python bench/quantize.py [--photos 128] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from flops import matmul_gflops, network_flops

import huskyai
from common import median_ms
from huskyai.training import quantize
from huskyai.trust import exports as artifacts
from huskyai.trust import writer

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
BOUND = 0.02  # the INT8 graph's own bound on |dp| (issue 17)


def int8_export(tmp: Path, reduce_range: bool, photos: int) -> tuple[Path, str]:
    """A copy of the shipped export with model.int8.onnx added; (folder, card sha256 to pin it by)."""
    folder = tmp / ("int8-reduce-range" if reduce_range else "int8")
    shutil.copytree(artifacts.DEFAULT_EXPORT, folder)
    export = artifacts.open_export(folder)
    card = quantize.add_to_export(folder, dict(export.card), export.files[artifacts.ONNX_NAME],
                                  [DATA / "huskies", DATA / "huskies-web"], photos, reduce_range)
    writer.save_card(folder, card)
    calibration = card["graphs"][artifacts.INT8_ONNX_NAME]["calibration"]
    print(f"  {folder.name}: {(folder / artifacts.INT8_ONNX_NAME).stat().st_size / 1e6:.1f} MB, calibrated on "
          f"{calibration['photos']} training photos (fingerprint {calibration['fingerprint'][:16]})")
    return folder, artifacts.sha256((folder / artifacts.CARD_NAME).read_bytes())


def probabilities(model: huskyai.Model, x: np.ndarray) -> np.ndarray:
    return np.concatenate([model.probabilities(x[i:i + 16]) for i in range(0, len(x), 16)])[:, 1]


def bootstrap(correct: dict[str, np.ndarray], reference: str, n: int = 4000) -> dict[str, tuple]:
    """Each model's accuracy 95% interval, and the paired interval of its change against ``reference``."""
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(correct[reference]), (n, len(correct[reference])))
    acc = {name: c[idx].mean(1) for name, c in correct.items()}
    return {name: (np.quantile(a, [0.025, 0.975]), np.quantile(a - acc[reference], [0.025, 0.975]))
            for name, a in acc.items()}


def accuracy_table(models: dict[str, huskyai.Model], x: np.ndarray, y: np.ndarray) -> dict[str, dict]:
    """Print and return each model's |dp| against fp32, changed decisions and accuracy with intervals."""
    p = {name: probabilities(m, x) for name, m in models.items()}
    decided = {name: q >= m.threshold for (name, q), m in zip(p.items(), models.values())}
    intervals = bootstrap({name: d == y for name, d in decided.items()}, "fp32")
    print(f"{'graph':18s} {'max |dp|':>9s} {'p99 |dp|':>9s} {'changed':>8s} {'accuracy':>9s} {'95% interval':>16s} "
          f"{'change, paired 95%':>20s}")
    out = {}
    for name in models:
        d = np.abs(p[name] - p["fp32"])
        (lo, hi), (dlo, dhi) = intervals[name]
        out[name] = {"max_dp": float(d.max()), "changed": int((decided[name] != decided["fp32"]).sum()),
                     "accuracy": float((decided[name] == y).mean()), "ci": (lo, hi)}
        print(f"{name:18s} {d.max():9.4f} {np.quantile(d, 0.99):9.4f} {out[name]['changed']:8d} "
              f"{out[name]['accuracy']:9.4f}   [{lo:.4f}, {hi:.4f}]   [{dlo:+.4f}, {dhi:+.4f}]")
    return out


def noise_floor(model: huskyai.Model, x: np.ndarray) -> None:
    """How far fp32 alone moves under uniform noise of half a pixel step: INT8 rounds its input at least that."""
    half_step = 0.5 / 255 / model.preprocessing.std[0]
    p = probabilities(model, x)
    noisy = x + np.random.default_rng(1).uniform(-half_step, half_step, x.shape).astype(np.float32)
    q = probabilities(model, noisy)
    print(f"fp32 under +-half a pixel step of noise: max |dp| {np.abs(q - p).max():.4f}, "
          f"{int(((q >= 0.5) != (p >= 0.5)).sum())} decisions changed")


def speed(models: dict[str, huskyai.Model], photo: Path, batch: list[Path], rounds: int) -> None:
    """model.predict ms and predict_batch photos/s, the models alternating within every round."""
    ms = {name: [] for name in models}
    rate = {name: [] for name in models}
    for r in range(rounds):
        for name in (list(models) if r % 2 == 0 else list(models)[::-1]):
            model = models[name]
            ms[name].append(median_ms(lambda m=model: m.predict(photo), 15, warmup=1))
            rate[name].append(len(batch) / median_ms(lambda m=model: m.predict_batch(batch), 1, warmup=0) * 1000)
    base_ms, base_rate = statistics.median(ms["fp32"]), statistics.median(rate["fp32"])
    print(f"{'graph':18s} {'predict ms':>11s} {'x fp32':>7s} {'best ms':>8s} {'x fp32':>7s} {'faster rounds':>14s} "
          f"{'batch photos/s':>15s} {'x fp32':>7s}")
    for name in models:
        wins = sum(a < b for a, b in zip(ms[name], ms["fp32"]))
        print(f"{name:18s} {statistics.median(ms[name]):11.1f} {statistics.median(ms[name]) / base_ms:7.2f} "
              f"{min(ms[name]):8.1f} {min(ms[name]) / min(ms['fp32']):7.2f} {wins:>8d} of {rounds} "
              f"{statistics.median(rate[name]):15.1f} {statistics.median(rate[name]) / base_rate:7.2f}")


def int8_gops(n: int = 1536, repeat: int = 5) -> float:
    """The best u8 x s8 matmul rate ONNX Runtime reaches (MatMulInteger, MLAS's VNNI or AVX2 kernel)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    b = numpy_helper.from_array(rng.integers(-128, 128, (n, n), dtype=np.int8), "b")
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["c"])], "mm",
                              [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])],
                              [helper.make_tensor_value_info("c", TensorProto.INT32, [n, n])], [b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    a = rng.integers(0, 256, (n, n), dtype=np.uint8)
    best_ms = min(median_ms(lambda: session.run(None, {"a": a}), 1, warmup=0) for _ in range(repeat))
    return 2 * n ** 3 / (best_ms / 1000) / 1e9


def floors(graph: bytes, size: int) -> None:
    flops = network_flops(graph, size)[0]["total"]
    fp32, int8 = matmul_gflops(), int8_gops()
    print(f"floor: {flops / 1e9:.2f} GFLOP a photo; fp32 matmul {fp32:.0f} GFLOP/s -> {flops / fp32 / 1e6:.1f} ms; "
          f"int8 matmul (ORT u8s8) {int8:.0f} GOP/s -> {flops / int8 / 1e6:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=quantize.DEFAULT_PHOTOS, help="calibration photos")
    parser.add_argument("--rounds", type=int, default=5, help="speed rounds, the graphs alternating")
    args = parser.parse_args()
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    flags = Path("/proc/cpuinfo").read_text().split()
    print(f"cpu: avx2 {'avx2' in flags}, avx512_vnni {'avx512_vnni' in flags}, avx_vnni {'avx_vnni' in flags}")
    fp32 = huskyai.load()
    card = fp32.card
    held = card["training"]["holdout_files"]
    paths = [DATA / k for k in held]
    y = np.array([k.split("/")[-2] == card["positive_class"] for k in held])
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        models = {"fp32": fp32}
        for rr in (False, True):
            folder, digest = int8_export(Path(tmp), rr, args.photos)
            models[folder.name] = huskyai.load(folder, sha256=digest, precision="int8")
        x = np.stack([fp32.preprocess(p) for p in paths])
        print(f"\nheld-out photos: {len(paths)} ({int(y.sum())} {card['positive_class']}), never calibrated on")
        result = accuracy_table(models, x, y)
        noise_floor(fp32, x)
        print(f"card's repeated-CV accuracy interval: {card['metrics']['cv']['all']['accuracy']['ci95']}")
        print(f"\nspeed, {args.rounds} alternating rounds (uptime: "
              f"{subprocess.run(['uptime'], capture_output=True, text=True).stdout.split('load')[-1].strip()})")
        speed(models, paths[0], paths[:32], args.rounds)
        floors((artifacts.DEFAULT_EXPORT / artifacts.ONNX_NAME).read_bytes(), fp32.size)
    verdict(result)


def verdict(result: dict[str, dict]) -> None:
    lo, hi = result["fp32"]["ci"]
    for name, r in result.items():
        if name != "fp32":
            ok = r["max_dp"] <= BOUND and lo <= r["accuracy"] <= hi
            print(f"{name}: {'within' if ok else 'OUTSIDE'} the INT8 bound (|dp| <= {BOUND}: {r['max_dp']:.3f}; "
                  f"accuracy {r['accuracy']:.4f} in fp32's interval: {lo <= r['accuracy'] <= hi})")
    print(json.dumps({k: {**v, "ci": [float(c) for c in v["ci"]]} for k, v in result.items()}))


if __name__ == "__main__":
    main()
