"""Static INT8 quantization of an export's fp32 ONNX graph with ONNX Runtime: QDQ format, per-channel int8
weights, activations calibrated (MinMax) on training photos prepared exactly as serving prepares them.

Calibration never sees the photos the card holds out (``training.holdout_files``): those are the photos the
INT8 graph is judged on. numpy, Pillow and onnxruntime only (plus onnx, which ORT's quantizer needs): no torch.
"""

from __future__ import annotations

import hashlib
import random
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from huskyai.errors import QuantizeError
from huskyai.images.decode import load_image
from huskyai.inference.preprocess import Preprocessing

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
DEFAULT_PHOTOS = 128  # MinMax ranges settle by about a hundred photos; more only costs time
METHOD = ("onnxruntime static quantization: QDQ, per-channel int8 weights, uint8 activations, MinMax "
          "calibration; the final softmax stays fp32")


@dataclass(frozen=True)
class CalibrationSet:
    """The training photos a graph was calibrated on: keys ([source/]label/file), paths, and a fingerprint."""
    keys: tuple[str, ...]
    paths: tuple[Path, ...]

    @property
    def fingerprint(self) -> str:
        """sha256 over every photo's key and content hash, in key order: names the calibration set."""
        digest = hashlib.sha256()
        for key, path in sorted(zip(self.keys, self.paths)):
            digest.update(f"{key}\t{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
        return digest.hexdigest()

    def card_fields(self, data_dirs: Sequence[str | Path]) -> dict:
        """What a model card records about the calibration set."""
        return {"photos": len(self.keys), "fingerprint": self.fingerprint,
                "data": ", ".join(Path(d).resolve().name for d in data_dirs),
                "excluded": "the card's training.holdout_files (never calibrated on)"}


def training_photos(data_dirs: Sequence[str | Path], holdout: Sequence[str]) -> list[tuple[str, Path]]:
    """(key, path) of every photo under each ``data_dir/<label>/``, except the held-out keys. Keys are
    prefixed with the folder's name when several folders are given, as training names them."""
    held = set(holdout)
    out = []
    for data in data_dirs:
        data = Path(data)
        if not data.is_dir():
            raise QuantizeError(f"{data}: no such photo folder (expected one sub-folder per label)")
        prefix = f"{data.resolve().name}/" if len(data_dirs) > 1 else ""
        for label in sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for path in sorted(label.iterdir()):
                key = f"{prefix}{label.name}/{path.name}"
                if path.suffix.lower() in PHOTO_SUFFIXES and key not in held:
                    out.append((key, path))
    return out


def calibration_set(data_dirs: Sequence[str | Path], card: dict, count: int = DEFAULT_PHOTOS,
                    seed: int = 0) -> CalibrationSet:
    """``count`` training photos drawn at random (fixed ``seed``) from the card's training data, never one
    of its held-out photos."""
    photos = training_photos(data_dirs, card.get("training", {}).get("holdout_files", []))
    if not photos:
        raise QuantizeError(f"no training photos under {', '.join(map(str, data_dirs))} to calibrate on")
    chosen = sorted(random.Random(seed).sample(photos, min(count, len(photos))))
    return CalibrationSet(tuple(k for k, _ in chosen), tuple(p for _, p in chosen))


def photo_batches(paths: Sequence[Path], preprocessing: Preprocessing) -> Iterator[np.ndarray]:
    """Each photo as the (1, 3, size, size) array serving would feed the network."""
    for path in paths:
        yield preprocessing.array(load_image(path))[None]


def _reader(batches: Iterator[np.ndarray], input_name: str):
    from onnxruntime.quantization import CalibrationDataReader

    class PhotoReader(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(batches, None)
            return None if batch is None else {input_name: batch}

    return PhotoReader()


def quantize_graph(graph: bytes, batches: Iterator[np.ndarray], reduce_range: bool = False) -> bytes:
    """The INT8 (QDQ) version of an fp32 ONNX graph, its activation ranges calibrated on ``batches``: uint8
    activations and per-channel int8 weights (the u8 x s8 products that x86's VNNI and AVX2 kernels take).
    ``reduce_range`` keeps weights to 7 bits, for CPUs whose AVX2 products could saturate without VNNI.
    The graph first goes through ORT's pre-processing (shape inference, graph optimisation), as advised."""
    try:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as err:
        raise QuantizeError(f"INT8 quantization needs onnxruntime and onnx ({err}): pip install onnxruntime onnx") \
            from None
    model = onnx.load_from_string(graph)
    input_name = model.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="huskyai-quantize-") as tmp:
        prepared, out = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(model, prepared)
        prepared_model = onnx.load(prepared)
        outputs = {o.name for o in prepared_model.graph.output}
        # the softmax stays fp32: quantized to uint8 its probabilities would step by 1/255 and not sum to 1
        last = [n.name for n in prepared_model.graph.node if outputs & set(n.output)]
        # no CalibMaxIntermediateOutputs: in onnxruntime 1.32 it discards every full chunk uncomputed, so a
        # calibration would silently see only the photos after the last chunk (MinMax keeps scalars anyway)
        quantize_static(prepared, out, _reader(batches, input_name), quant_format=QuantFormat.QDQ,
                        nodes_to_exclude=last, per_channel=True, reduce_range=reduce_range,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        return out.read_bytes()


def graph_fields(calibration: CalibrationSet, data_dirs: Sequence[str | Path], reduce_range: bool) -> dict:
    """The card's description of an INT8 graph: precision, method and calibration set."""
    import onnxruntime

    return {"precision": "int8", "method": METHOD, "reduce_range": reduce_range,
            "onnxruntime": onnxruntime.__version__, "calibration": calibration.card_fields(data_dirs)}


def int8_for_export(card: dict, graph: bytes, data_dirs: Sequence[str | Path], count: int = DEFAULT_PHOTOS,
                    reduce_range: bool = False) -> tuple[bytes, dict]:
    """The INT8 version of ``graph`` (the export's verified fp32 model.onnx), and ``card`` with it recorded:
    its hash, and under "graphs" each graph's precision and the calibration set. Nothing is written."""
    from huskyai.trust import exports

    calibration = calibration_set(data_dirs, card, count)
    int8 = quantize_graph(graph, photo_batches(calibration.paths, Preprocessing.from_card(card)), reduce_range)
    card = dict(card, graphs={exports.ONNX_NAME: {"precision": "fp32"},
                              exports.INT8_ONNX_NAME: graph_fields(calibration, data_dirs, reduce_range)})
    card["files"] = dict(card.get("files", {}), **{exports.INT8_ONNX_NAME: exports.sha256(int8)})
    return int8, card


def add_to_export(folder: Path, card: dict, graph: bytes, data_dirs: Sequence[str | Path],
                  count: int = DEFAULT_PHOTOS, reduce_range: bool = False) -> dict:
    """Write the INT8 version of ``graph`` into ``folder`` as model.int8.onnx (through huskyai.trust.writer: never
    through a link) and return ``card`` with it recorded (``int8_for_export``). The caller writes (and signs)
    the card."""
    from huskyai.trust import exports, writer

    writer.check_destinations(folder, [exports.INT8_ONNX_NAME])  # before the slow work
    int8, card = int8_for_export(card, graph, data_dirs, count, reduce_range)
    writer.write_file(folder, exports.INT8_ONNX_NAME, int8)
    return card
