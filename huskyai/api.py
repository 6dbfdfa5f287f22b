"""The Python API, small as openai/CLIP's: load a model, then train, evaluate, verify, sign and score.

    import huskyai
    model = huskyai.load()                                # the shipped husky model (huskyai.available_models())
    print(model.predict("photo.jpg"))                     # Prediction(label='husky', positive_probability=0.97, ...)
    run = huskyai.train("photos", "my_export", epochs=1)  # keywords: huskyai.TrainConfig's fields
    metrics = huskyai.evaluate("my_export", "test_photos", sheet="errors.png")
    checked = huskyai.verify("my_export")                 # .ok, .problems, .findings, .trust, .pickle_note
    huskyai.sign("my_export")                             # this machine's key; IntegrityError if verify refuses
    huskyai.score("photos/", "results.csv")               # many photos, resumable

``python -m huskyai`` is a thin skin over these functions, as ultralytics' ``yolo`` is over ``YOLO()``. Each
command's defaults live once, here or in huskyai.training.config. This module stays light: torch and fastai are
imported inside the functions that need them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from huskyai.evaluation.evaluate import evaluate
from huskyai.evaluation.score import ScoreSummary, score
from huskyai.explain.explanation import Explanation, explain
from huskyai.extras import require
from huskyai.images.decode import ImageInput
from huskyai.inference.predictor import Predictor
from huskyai.mood import MoodModel
from huskyai.mood import load as load_mood
from huskyai.network.runtime import TorchEngine, onnx_for
from huskyai.training.config import DoctorConfig, TrainConfig
from huskyai.trust import exports
from huskyai.trust.signing import SignResult, VerifyResult, verify
from huskyai.trust.signing import sign as sign_card

# where training writes when no folder is named, relative to the working directory: a new folder per run
# ({kind}: husky or mood; {time}: the start, to the second), so a first run never lands on a shipped export
DEFAULT_OUT = "runs/{kind}-{time}"
MODELS = {"husky": "is this a husky? (photos)", "mood": "a day's mood from a diary (tabular; synthetic data)"}

__all__ = ["load", "available_models", "Model", "train", "TrainResult", "TrainConfig", "DoctorConfig", "evaluate",
           "verify", "VerifyResult", "sign", "SignResult", "score", "ScoreSummary", "load_learner", "DEFAULT_OUT",
           "default_out"]


class Model(Predictor):
    """A loaded husky model: ``predict``, ``predict_batch``, and ``explain`` (where it looked)."""

    def explain(self, source: ImageInput, name: str | None = None, method: str = "auto") -> Explanation:
        """The prediction with a heatmap over the network's input and an overlay at most 1024 px long.
        "grad-cam" needs the explain extra (torch); "occlusion" runs on this engine; "auto" picks grad-cam when it
        can."""
        return explain(self, source, name, method)


def available_models() -> list[str]:
    """The names :func:`load` knows besides folders: the shipped models."""
    return list(MODELS)


def load(name_or_path: str | Path | None = None, sha256: str | None = None, trust_unsigned: bool = False,
         engine: str = "auto", threads: int | None = None, precision: str | None = None) -> Model | MoodModel:
    """A verified model: a shipped one by name ("husky", the default, or "mood") or an export folder.

    A folder's card is trusted when its sha256 is ``sha256`` (or the model's pin variable), it carries this
    machine's signature, or ``trust_unsigned`` is given; every file must match the card and every graph keep to
    the graph policy, or IntegrityError says why in one line. ``engine``: "auto" (ONNX Runtime on the export's
    graph), "onnx" or "torch"; ``threads``: ONNX Runtime's threads for one call (default: every core);
    ``precision``: "fp32" or "int8" (an export's model.int8.onnx). A folder named like a shipped model is
    written with a path: ``./mood``."""
    if name_or_path is not None and str(name_or_path) == "mood":
        return load_mood(sha256=sha256, trust_unsigned=trust_unsigned)
    return Model(name_or_path, engine, sha256=sha256, trust_unsigned=trust_unsigned, threads=threads,
                 precision=precision, torch_engine=TorchEngine)


@dataclass
class TrainResult:
    folder: Path  # the export folder, ready for huskyai.load(folder)
    card: dict  # its model card, as written to model.json

    @property
    def metrics(self) -> dict:
        """validation (and holdout, cv) metrics from the card."""
        return self.card["metrics"]


def default_out(kind: str = "husky") -> Path:
    """The folder a training run of ``kind`` ("husky" or "mood") writes to when none is named: DEFAULT_OUT now."""
    return Path(DEFAULT_OUT.format(kind=kind, time=datetime.now().strftime("%Y%m%d-%H%M%S")))


def train(data: str | Path | list[str | Path], out: str | Path | None = None, report=print,
          replace_shipped: bool = False, **options) -> TrainResult:
    """Train on ``data`` (a folder with one sub-folder per label, e.g. husky/ and not_husky/, or several
    such folders) and export to ``out`` (default: a new runs/husky-<date>-<time>), signed with this
    machine's key. ``options`` are TrainConfig's fields (``epochs=1``, ``holdout=0.2``, ``cv=3``, ...).
    The shipped model's folder is refused as ``out`` unless ``replace_shipped`` is given (then the package's
    pin no longer matches it). A folder that cannot be used fails before torch and fastai are imported; a
    missing training extra fails with one line naming it (MissingExtraError)."""
    from huskyai.training.run import train as run

    out = default_out() if out is None else Path(out)
    card = run(data, out, report=report, replace_shipped=replace_shipped, **options)
    return TrainResult(out.resolve(), card)


def sign(folder: str | Path | None = None, replace_signature: bool = False,
         redteam_report: str | Path | None = None, int8_data: Sequence[str | Path] | None = None,
         reduce_range: bool = False, int8_photos: int | None = None) -> SignResult:
    """Sign an export's card with this machine's key (made on first use), after verify's checks.

    ``redteam_report``: a red-team summary.json made for these weights, hashed into the card as redteam.json.
    An export made before model.onnx shipped gets it, built from its verified weights (needs the train extra).
    ``int8_data`` (the training photo folders): the export also gets model.int8.onnx, calibrated on
    ``int8_photos`` training photos (default 128) that are not among the card's held-out ones
    (``reduce_range``: 7-bit weights, for AVX2 CPUs without VNNI). IntegrityError with every problem when
    verify would refuse the export."""
    if int8_data:  # onnxruntime's quantizer needs sympy, which the train extra brings (through torch)
        require("train", "INT8 quantization (sign --int8)")

    def build(card: dict, files: dict[str, bytes]) -> tuple[dict[str, bytes], dict]:
        made: dict[str, bytes] = {}
        if exports.ONNX_NAME not in files:
            made[exports.ONNX_NAME] = onnx_for(card, files)
        if int8_data:
            from huskyai.training.quantize import int8_for_export

            made[exports.INT8_ONNX_NAME], card = int8_for_export(
                card, made.get(exports.ONNX_NAME) or files[exports.ONNX_NAME], list(int8_data),
                reduce_range=reduce_range, **({"count": int8_photos} if int8_photos else {}))
        return made, card

    return sign_card(folder, replace_signature, redteam_report, build=build)


def load_learner(export_dir: str | Path | None = None, sha256: str | None = None, trust_unsigned: bool = False):
    """fastai's ``Learner`` for an export, trusted and verified as :func:`load` does and rebuilt from its
    safetensors weights: nothing is unpickled. Needs the train extra."""
    require("train", "huskyai.load_learner")
    from huskyai.training.dataloaders import load_learner as rebuild  # fastai, imported only when asked for

    return rebuild(export_dir, sha256, trust_unsigned)
