"""The Python API, small as openai/CLIP's: load a model, then train, evaluate, verify, sign and score.

    import huskyai
    model = huskyai.load()                                # the shipped husky model (huskyai.available_models())
    print(model.predict("photo.jpg"))                     # Prediction(label='husky', positive_probability=0.97, ...)
    robust = huskyai.load("robust")                       # trained under noise: answers with a certified radius
    print(robust.certify("photo.jpg").describe())         # "Husky, certified within radius 0.31 (...)"
    run = huskyai.train("photos", "my_export", epochs=1)  # keywords: huskyai.TrainConfig's fields
    metrics = huskyai.evaluate("my_export", "test_photos", sheet="errors.png")
    checked = huskyai.verify("my_export")                 # .ok, .problems, .findings, .trust, .pickle_note
    huskyai.sign("my_export")                             # this machine's key; IntegrityError if verify refuses
    huskyai.sign("my_export", key="private.pem")          # model.sig: anyone with the public key can check it
    huskyai.push("my_export", "me/husky")                 # to the Hugging Face Hub: no pickle
    model = huskyai.load("hf://me/husky@COMMIT", public_key="team.pub")
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

from huskyai.errors import IntegrityError, NotCertifiableError, SettingsError
from huskyai.evaluation.evaluate import evaluate
from huskyai.evaluation.score import ScoreSummary, score
from huskyai.explain.explanation import Explanation, explain
from huskyai.extras import require
from huskyai.images.decode import ImageInput
from huskyai.inference import certify as smoothing
from huskyai.inference.certify import Certificate
from huskyai.inference.predictor import Predictor
from huskyai.mood import MoodModel
from huskyai.mood import load as load_mood
from huskyai.network.runtime import TorchEngine, onnx_for
from huskyai.training.config import DoctorConfig, TrainConfig
from huskyai.trust import exports
from huskyai.trust.push import PushResult, push
from huskyai.trust.signing import KeySignResult, SignResult, VerifyResult, sign_with_key, verify
from huskyai.trust.signing import sign as sign_card

# where training writes when no folder is named, relative to the working directory: a new folder per run
# ({kind}: husky or mood; {time}: the start, to the second), so a first run never lands on a shipped export
DEFAULT_OUT = "runs/{kind}-{time}"
MODELS = {"husky": "is this a husky? (photos)",
          "robust": "is this a husky? trained under noise, for certified answers (model.certify; slower)",
          "mood": "a day's mood from a diary (tabular; synthetic data)"}

__all__ = ["load", "available_models", "Model", "train", "TrainResult", "TrainConfig", "DoctorConfig", "evaluate",
           "verify", "VerifyResult", "sign", "SignResult", "KeySignResult", "push", "PushResult", "score",
           "ScoreSummary", "load_learner", "DEFAULT_OUT", "default_out"]


class Model(Predictor):
    """A loaded husky model: ``predict``, ``predict_batch``, and ``explain`` (where it looked). ``trust`` says
    why it was believed; ``origin`` is hf://OWNER/NAME@COMMIT for a model from the Hub (else None)."""

    def __init__(self, export: exports.VerifiedExport, engine: str = "auto", threads: int | None = None,
                 precision: str | None = None):
        super().__init__(export, engine, threads=threads, precision=precision, torch_engine=TorchEngine)
        self.origin: str | None = export.origin

    def explain(self, source: ImageInput, name: str | None = None, method: str = "auto") -> Explanation:
        """The prediction with a heatmap over the network's input and an overlay at most 1024 px long.
        "grad-cam" needs the explain extra (torch); "occlusion" runs on this engine; "auto" picks grad-cam when it
        can."""
        return explain(self, source, name, method)

    def certify(self, photo: ImageInput, n: int = smoothing.DEFAULT_N, n0: int = smoothing.DEFAULT_N0,
                alpha: float = smoothing.DEFAULT_ALPHA, batch_size: int = smoothing.DEFAULT_BATCH,
                seed: int | None = None, name: str | None = None) -> Certificate:
        """A certified answer by randomized smoothing (Cohen et al.'s CERTIFY): the label, or "abstain", and an L2
        radius within which no change to the model's input (the crop resized to the card's size, pixels in
        [0, 1]) flips it, proven with probability 1 - ``alpha`` from ``n0`` + ``n`` noisy copies under the noise
        the network was trained with (the card's noise_sigma). ``describe()`` says it in words; ``seed`` makes
        it reproducible. NotCertifiableError for a model not trained under noise: load "robust"."""
        return smoothing.certify(self, photo, smoothing.card_sigma(self.card), n0=n0, n=n, alpha=alpha,
                                 batch_size=batch_size, seed=seed, name=name)

    @property
    def noise_sigma(self) -> float | None:
        """The noise the network was trained under (pixels in [0, 1]), or None: only then can it certify."""
        try:
            return smoothing.card_sigma(self.card)
        except NotCertifiableError:
            return None


def available_models() -> list[str]:
    """The names :func:`load` knows besides folders: the shipped models."""
    return list(MODELS)


def load(name_or_path: str | Path | None = None, sha256: str | None = None, trust_unsigned: bool = False,
         engine: str = "auto", threads: int | None = None, precision: str | None = None,
         public_key: str | Path | bytes | None = None) -> Model | MoodModel:
    """A verified model: a shipped one by name ("husky", the default; "robust", trained under noise for
    ``certify``; or "mood"), an export folder, or a model on
    the Hugging Face Hub, ``"hf://OWNER/NAME@REVISION"`` (fetched through huggingface_hub: the export's own file
    names only, never a pickle; the revision, resolved to a commit, is in ``model.origin`` and ``model.trust``).

    The card is trusted when it is signed by ``public_key``'s holder (a PEM file, or $HUSKYAI_MODEL_PUBLIC_KEY:
    model.sig, an OMS signature, is checked before a byte of the model is read, and must hold), its sha256 is
    ``sha256`` (or the model's pin variable), it is the shipped one, it carries this machine's signature, or
    ``trust_unsigned`` is given; every file must match the card and every graph keep to the graph policy, or
    IntegrityError says why in one line ("robust" has its own pin variable, $HUSKYAI_ROBUST_MODEL_SHA256).
    ``engine``: "auto" (ONNX Runtime on the export's graph), "onnx" or
    "torch"; ``threads``: ONNX Runtime's threads for one call (default: every core); ``precision``: "fp32" or
    "int8" (an export's model.int8.onnx). A folder named like a shipped model is written with a path:
    ``./mood``."""
    if name_or_path is not None and str(name_or_path) == "mood":
        if public_key is not None:
            raise SettingsError("public_key= checks the husky model's signature; pin the mood model with sha256=")
        return load_mood(sha256=sha256, trust_unsigned=trust_unsigned)
    robust = exports.resolve(exports.ROBUST_NAME)
    if name_or_path is not None and str(name_or_path) == exports.ROBUST_NAME and \
            not (robust / exports.CARD_NAME).is_file():
        raise IntegrityError(f"{robust}: the noise-trained model (\"robust\") is not in this installation; train one "
                             "with huskyai.train(DATA, OUT, epochs=N, noise_sigma=0.25) and load OUT")
    export = exports.open_export(name_or_path, sha256=sha256, trust_unsigned=trust_unsigned, public_key=public_key,
                                 pin_env=exports.pin_env_for_name(name_or_path))
    return Model(export, engine, threads=threads, precision=precision)


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
         reduce_range: bool = False, int8_photos: int | None = None, key: str | Path | bytes | None = None,
         key_password: bytes | None = None) -> SignResult:
    """Sign an export's card with this machine's key (made on first use), after verify's checks; with ``key``
    (a PEM private key, P-256 for instance) write model.sig instead, an OMS signature of the card and every file
    it lists that anyone checks with the public key (``huskyai.load(DIR, public_key=...)``, ``model_signing
    verify``); ``key_password`` if the key is encrypted.

    ``redteam_report``: a red-team summary.json made for these weights, hashed into the card as redteam.json.
    An export made before model.onnx shipped gets it, built from its verified weights (needs the train extra).
    ``int8_data`` (the training photo folders): the export also gets model.int8.onnx, calibrated on
    ``int8_photos`` training photos (default 128) that are not among the card's held-out ones
    (``reduce_range``: 7-bit weights, for AVX2 CPUs without VNNI). With ``key``, a card that must change for
    these is signed with this machine's key first, then with ``key``. IntegrityError with every problem when
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

    card_changes = redteam_report or int8_data or _lacks_graph(folder)
    done = None
    if key is None or card_changes:
        done = sign_card(folder, replace_signature, redteam_report, build=build, key_signature_follows=key is not None)
    if key is None:
        return done
    signed = sign_with_key(folder, key, key_password)
    return SignResult(signed.folder, signed.card_sha256, str(key) if not isinstance(key, bytes) else "the given key",
                      done is not None and done.added_onnx, done is not None and done.added_int8,
                      fingerprint=signed.fingerprint)


def _lacks_graph(folder: str | Path | None) -> bool:
    """Whether the export's card lists no model.onnx (signing adds it); False when the card cannot be read (the
    signing that follows says why)."""
    card = exports.read_card(folder)
    return card is not None and exports.ONNX_NAME not in card["files"]


def load_learner(export_dir: str | Path | None = None, sha256: str | None = None, trust_unsigned: bool = False):
    """fastai's ``Learner`` for an export, trusted and verified as :func:`load` does and rebuilt from its
    safetensors weights: nothing is unpickled. Needs the train extra."""
    require("train", "huskyai.load_learner")
    from huskyai.training.dataloaders import load_learner as rebuild  # fastai, imported only when asked for

    return rebuild(export_dir, sha256, trust_unsigned)
