"""Serving the mood model: a verified export, its card's preprocessing, and ONNX Runtime. No torch, no
scikit-learn, nothing unpickled: the card and mood.onnx are read once, hashed, and used from those bytes.

``predict`` takes one day as a dict, or a DataFrame of days. Days with a ``date`` are put on the calendar,
so that a frame of consecutive days (with their moods, when known) gives each day its yesterday and its
rolling means; a lone day has no past, so its lags take the training means (or the values you pass,
under the feature names the card lists, e.g. ``mood_yesterday``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from huskyai.errors import IntegrityError
from huskyai.inference.engine import ort_session
from huskyai.mood.diary import DATE, DiaryError
from huskyai.mood.features import DAY_OF_WEEK, WEEKDAYS, LagRules, Preprocessing, check_days, engineer, input_ranges
from huskyai.mood.importance import reasons
from huskyai.trust import exports

FOLDER_NAME = "export-mood"
WHEEL_NAME = "export_mood"  # a wheel carries export-mood/ as the package data huskyai/export_mood


def shipped_folder() -> Path:
    """export-mood/ inside an installed wheel (as huskyai/export_mood), else beside the source tree."""
    package = Path(__file__).resolve().parent.parent
    inside = package / WHEEL_NAME
    return inside if (inside / exports.CARD_NAME).is_file() else package.parent / FOLDER_NAME


@dataclass
class MoodPrediction:
    mood: float  # the model's estimate, within the training range
    score: int  # rounded to the diary's scale
    date: str | None = None
    reasons: list[dict] = field(default_factory=list)  # per diary column: its push on this day, largest first


class MoodModel:
    def __init__(self, folder: str | Path | None = None, sha256: str | None = None, trust_unsigned: bool = False):
        folder = shipped_folder() if folder is None or str(folder) == "mood" else Path(folder)
        verified = exports.open_export(folder, sha256=sha256, trust_unsigned=trust_unsigned,
                                         pin_env=exports.MOOD_MODEL_SHA256_ENV)
        card = verified.card
        if card.get("kind") != "mood" or card.get("onnx") not in verified.files:
            raise IntegrityError(f"{folder}: not a mood model export (its card is not of kind 'mood')")
        self.card, self.trust, self.model_sha256 = card, verified.trust, verified.card_sha256
        self.artifacts = verified.files
        prep = dict(card["preprocessing"])
        self.columns = prep.pop("columns")
        self.prep = Preprocessing(**prep)
        self.rules = LagRules(**{k: tuple(v) if isinstance(v, list) else v for k, v in card["lag_rules"].items()})
        self.numeric, self.categorical = card["features"]["numeric"], card["features"]["categorical"]
        self.target = card["target"]
        self.ranges = input_ranges(self.prep, self.target)  # every input is checked against its range first
        self.session = ort_session(verified.files[card["onnx"]])
        self.sources = self.prep.column_sources()
        self.reference = self.prep.reference()

    @property
    def synthetic(self) -> bool:
        return bool(self.card.get("data", {}).get("synthetic"))

    def raw(self, X: np.ndarray) -> np.ndarray:
        """The model's unclipped output for input rows."""
        return self.session.run(None, {"x": np.asarray(X, np.float32)})[0].reshape(-1)

    def scores(self, X: np.ndarray) -> np.ndarray:
        return np.clip(self.raw(X), *self.card["target_range"])

    def matrix(self, days: dict[str, Any] | pd.DataFrame) -> tuple[np.ndarray, list[str | None]]:
        """The model's input rows for one day (dict) or several (DataFrame), and each row's date."""
        days = check_days(days, self.ranges)
        frame = pd.DataFrame([days]) if isinstance(days, dict) else days.copy()
        if frame.index.name == DATE:
            frame = frame.reset_index()
        frame = self._typed(frame)
        dated = DATE in frame and frame[DATE].notna().all()
        if dated and frame[DATE].duplicated().any():
            raise DiaryError(f"two rows for {frame[DATE][frame[DATE].duplicated()].iloc[0].date()}; one per day")
        if dated:
            missing = {c: np.nan for c in self.numeric if c not in frame}
            frame = frame.assign(**missing, **{c: pd.NA for c in self.categorical if c not in frame})
            frame = frame.astype({c: "string" for c in self.categorical})
            by_day = frame.set_index(DATE).sort_index()
            features, _ = engineer(by_day, self.numeric, self.categorical, self.target, self.rules)
            return self.prep.transform(features), [str(d.date()) for d in features.index]
        rows = [self._undated(row) for _, row in frame.iterrows()]
        return np.concatenate(rows), [None] * len(rows)

    def _undated(self, row: pd.Series) -> np.ndarray:
        """One day without a calendar: its own values, plus any engineered values given by name."""
        values = {c: row.get(c, np.nan) for c in self.numeric} | {c: row.get(c, pd.NA) for c in self.categorical}
        features = pd.DataFrame([values]).astype({c: "string" for c in self.categorical})
        for name in self.prep.numeric:
            if name not in features:
                features[name] = float(row[name]) if name in row and pd.notna(row[name]) else np.nan
        day = row.get(DAY_OF_WEEK)
        features[DAY_OF_WEEK] = pd.Series([day if day in WEEKDAYS else pd.NA], dtype="string")
        return self.prep.transform(features)

    def _typed(self, frame: pd.DataFrame) -> pd.DataFrame:
        known = {DATE, self.target, DAY_OF_WEEK, *self.numeric, *self.categorical, *self.prep.numeric}
        unknown = [str(c) for c in frame.columns if c not in known]
        if unknown:
            raise DiaryError(f"unknown column(s) {', '.join(unknown)}; this model knows "
                             f"{', '.join(self.numeric + self.categorical)} (and {DATE}, {self.target})")
        for column in frame.columns:
            if column in self.categorical or column in (DATE, DAY_OF_WEEK):
                continue
            values = pd.to_numeric(frame[column], errors="coerce")
            bad = values.isna() & frame[column].notna() & (frame[column].astype("string").str.strip() != "")
            if bad.any():
                raise DiaryError(f"row {int(np.argmax(bad.to_numpy()))+1}, column '{column}': "
                                 f"{str(frame[column][bad].iloc[0])[:40]!r} is not a number")
            frame[column] = values.astype(float)
        if DATE in frame:
            frame[DATE] = pd.to_datetime(frame[DATE], errors="coerce", format="ISO8601").dt.normalize()
        return frame

    def predict(self, days: dict[str, Any] | pd.DataFrame, explain: bool = True
                ) -> MoodPrediction | list[MoodPrediction]:
        """The predicted mood of one day (dict -> one MoodPrediction) or of each day of a DataFrame (a list)."""
        X, dates = self.matrix(days)
        lo, hi = self.card["target_range"]
        out = []
        for x, mood, date in zip(X, self.scores(X), dates):
            why = reasons(self.scores, x, self.reference, self.sources) if explain else []
            out.append(MoodPrediction(round(float(mood), 3), int(np.clip(np.round(mood), lo, hi)), date, why))
        return out[0] if isinstance(days, dict) else out


def load(folder: str | Path | None = None, sha256: str | None = None, trust_unsigned: bool = False) -> MoodModel:
    """The mood model in ``folder`` (default: the shipped one, trained on a SYNTHETIC diary), verified.
    ``sha256`` pins its card (default: $HUSKYAI_MOOD_MODEL_SHA256; the husky model's pin does not apply here)."""
    return MoodModel(folder, sha256, trust_unsigned)
