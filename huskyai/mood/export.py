"""Train on a diary and write the mood export: model.json (the card), mood.onnx and two PNGs, all hashed,
all written through huskyai.trust.writer (never through a link planted in the folder).

The card holds everything serving needs besides the ONNX graph: the diary's columns and which of them a
person controls, the lag rules, the preprocessing (means, stds, categories), the typical day, the
validation numbers of every model against the baselines, the winner, the importance, and whether the
diary was synthetic. It is signed with this machine's key like the husky model's (huskyai.trust.exports).
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timezone
from importlib import metadata
from importlib.resources import files
from pathlib import Path

import numpy as np

from huskyai.errors import DataError, MissingExtraError
from huskyai.extras import missing, require
from huskyai.mood.diary import DiaryError, read_diary
from huskyai.mood.features import LagRules
from huskyai.mood.model import shipped_folder
from huskyai.mood.models import FAST_MODELS, MODELS, to_onnx
from huskyai.mood.plots import importance_png, validation_png
from huskyai.mood.sample import read_truth
from huskyai.mood.train import BASELINES, fit_final, validate
from huskyai.trust import exports, keys, writer

ONNX_FILE, IMPORTANCE_FILE, VALIDATION_FILE = exports.MOOD_NAMES
KIND = "mood"


def installed_models() -> tuple[str, ...]:
    """The candidate models whose packages are installed: fastai's needs the train extra besides the mood one."""
    return MODELS if not missing("train") else FAST_MODELS


def default_schema() -> dict:
    """The shipped column schema (huskyai/mood/diary-schema.json): units, and what a person controls."""
    return json.loads(files("huskyai.mood").joinpath("diary-schema.json").read_text())


def train_export(csv: str | Path, out: str | Path, target: str = "mood", models: tuple[str, ...] = MODELS,
                 folds: int = 4, seed: int = 0, schema: dict | None = None, sign: bool = True,
                 replace_shipped: bool = False) -> dict:
    """Validate ``models`` on the diary by time, refit the winner on every day, and export it to ``out``.
    The shipped mood model's folder is refused unless ``replace_shipped`` (rebuilding it, then re-pinning it)."""
    if Path(out).resolve() == shipped_folder().resolve() and not replace_shipped:
        raise DataError(f"{out}: that is the shipped mood model, which the package pins; choose another folder "
                        "(replace_shipped=True only to rebuild the shipped model)")
    started = time.perf_counter()
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise DiaryError(f"unknown model(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(MODELS)}")
    require("mood", "training the mood model")
    if "fastai" in models:
        try:
            require("train", "the mood model's fastai candidate")
        except MissingExtraError as err:
            raise MissingExtraError(f"{err}; or leave it out: --models {','.join(FAST_MODELS)}") from None
    diary = read_diary(csv, target)
    out = _clean_folder(Path(out))
    rules = LagRules(days_since=tuple(c for c in LagRules().days_since if c in diary.numeric))
    result = validate(diary, models, folds, rules, seed)
    winner = result.winner(models)
    model, prep, final_seconds = fit_final(diary, winner, rules, seed)
    graph = to_onnx(winner, model, len(prep.columns))
    truth = read_truth(csv)
    synthetic = truth is not None
    writer.write_files(out, {
        ONNX_FILE: graph,
        VALIDATION_FILE: validation_png(result.dates, result.actual, result.predictions[winner], winner,
                                        result.predictions["mean_7_days"], synthetic),
        IMPORTANCE_FILE: importance_png(result.importance, synthetic)})
    card = _card(diary, result, winner, prep, rules, schema or default_schema(), truth)
    card["training"] |= {"final_fit_seconds": round(final_seconds, 2),
                         "total_seconds": round(time.perf_counter() - started, 2), "data_sha256": _sha256(csv)}
    card["onnx_check"] = _onnx_check(graph, model, prep, diary, rules)
    return writer.write_card(out, card, keys.signing_key(create=True) if sign else None)


def _card(diary, result, winner: str, prep, rules: LagRules, schema: dict, truth: dict | None) -> dict:
    """The model card: what serving needs (columns, lag rules, preprocessing) and what was measured."""
    target = diary.target
    controls = schema["columns"]
    return {
        "kind": KIND, "model": winner, "onnx": ONNX_FILE, "target": target,
        "target_range": [float(result.actual.min()), float(result.actual.max())],
        "features": {"numeric": diary.numeric, "categorical": diary.categorical,
                     "controls": [c for c in diary.features if controls.get(c, {}).get("controls") is True]},
        "units": {c: controls[c]["unit"] for c in diary.features if "unit" in controls.get(c, {})},
        "lag_rules": rules.to_dict(), "preprocessing": prep.to_dict() | {"columns": prep.columns},
        "typical_day": _typical_day(diary),
        "validation": {"folds": result.folds, "days": len(result.actual), "metrics": result.metrics(),
                       "winner": winner, "baselines": list(BASELINES), "fit_seconds": result.seconds},
        "importance": result.importance,
        "training": {"days": int(diary.days[target].notna().sum()), "first_day": str(diary.days.index[0].date()),
                     "last_day": str(diary.days.index[-1].date()), "problems_skipped": len(diary.problems)},
        "data": truth or {"synthetic": False},
        "library_versions": _versions(winner), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _clean_folder(out: Path) -> Path:
    """The export folder, created; refuses one that holds a husky export or a link (or anything but a regular
    file) under an export's name, removes a previous mood export."""
    out.mkdir(parents=True, exist_ok=True)
    writer.check_destinations(out, writer.NAMES)
    if (out / exports.WEIGHTS_NAME).exists() or (out / exports.ONNX_NAME).exists():
        raise DiaryError(f"{out}: holds a husky model export; write the mood model to its own folder")
    for name in (exports.CARD_NAME, *exports.MOOD_NAMES):
        (out / name).unlink(missing_ok=True)
    return out


def _typical_day(diary) -> dict:
    """The median day (the mode for categories): the app's defaults and the reasons' reference."""
    days = diary.days
    typical = {c: round(float(days[c].median()), 2) for c in diary.numeric}
    return typical | {c: str(days[c].mode().iloc[0]) for c in diary.categorical if days[c].notna().any()}


def _onnx_check(graph: bytes, model, prep, diary, rules: LagRules) -> dict:
    """The ONNX graph against the fitted model on every training day: what serving runs is what was scored."""
    from huskyai.inference.engine import ort_session
    from huskyai.mood.train import training_frame

    X = prep.transform(training_frame(diary, rules)[0])
    session = ort_session(graph)
    diff = np.abs(session.run(None, {"x": X})[0].reshape(-1) - model.predict(X))
    if float(diff.max()) > 1e-3:
        raise RuntimeError(f"the ONNX graph differs from the model by up to {diff.max():.4g}; not exported")
    return {"days": len(X), "max_abs_diff": float(f"{diff.max():.3g}")}


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _versions(winner: str) -> dict:
    names = ["numpy", "pandas", "scikit-learn", "onnxruntime"] + (["torch", "fastai"] if winner == "fastai"
                                                                 else ["skl2onnx"])
    return {name: metadata.version(name) for name in names}
