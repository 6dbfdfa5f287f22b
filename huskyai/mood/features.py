"""Features from the past only, and the preprocessing that turns them into the model's input matrix.

For each day: the day's own activities; yesterday's mood and activities; the mean of the 3 and the 7
days before (never the day itself); the day of the week; days since the last run. "Yesterday" is the
calendar day before: after a missing day the lags are unknown, and unknown values take the training
mean. Numbers are standardised with the training days' means and stds; categories become one-hot
columns (a level never seen in training is all zeros). All of it is plain pandas and numpy, and
written into the model card, so serving rebuilds exactly the same matrix without the training code.

Every value a day to predict may carry is held to a range before anything is computed (:func:`check_days`):
a diary column to its schema range (huskyai.mood.diary), a feature made from a column to that column's
range, the target's own history to the model's target range. The matrix itself must be finite, as a last
wall for a caller that skipped the check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from huskyai.mood.diary import DiaryError, OutOfRangeError, Range, checked_number, range_of

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DAY_OF_WEEK = "day_of_week"
DAYS_SINCE_CAP = 30  # "a month or more" is all the model needs to know
DAYS_SINCE_PREFIX = "days_since_"
DAYS_SINCE_RANGE = Range(0, 36500, "days")  # given by hand: the model caps it at DAYS_SINCE_CAP


@dataclass
class LagRules:
    """Which past values become features (recorded in the card as the lag rules)."""
    lag_days: int = 1
    windows: tuple[int, ...] = (3, 7)
    days_since: tuple[str, ...] = ("run_km",)  # days since this column was last above zero

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def engineer(days: pd.DataFrame, numeric: list[str], categorical: list[str], target: str,
             rules: LagRules) -> tuple[pd.DataFrame, dict[str, str]]:
    """The feature frame (one row per day of ``days``, same index) and each feature's source column.
    ``days`` is indexed by date; the target column may be missing or partly empty (then lags are unknown)."""
    calendar = pd.date_range(days.index.min(), days.index.max(), freq="D")
    full = days.reindex(calendar)  # missing days become rows of unknowns, so shift(1) is the calendar day
    out: dict[str, pd.Series] = {}
    sources: dict[str, str] = {}
    history = [c for c in numeric] + ([target] if target in full.columns else [])
    for column in history:
        past = full[column].astype(float).shift(rules.lag_days)
        if column != target:
            out[column], sources[column] = full[column].astype(float), column
        out[f"{column}_yesterday"], sources[f"{column}_yesterday"] = past, column
        for window in rules.windows:
            name = f"{column}_mean{window}"
            out[name], sources[name] = past.rolling(window, min_periods=1).mean(), column
    for column in rules.days_since:
        if column in numeric:
            name = f"{DAYS_SINCE_PREFIX}{column}"
            out[name], sources[name] = _days_since(full[column].astype(float)), column
    for column in categorical:
        out[column], sources[column] = full[column].astype("string"), column
    out[DAY_OF_WEEK] = pd.Series([WEEKDAYS[d] for d in calendar.dayofweek], index=calendar, dtype="string")
    sources[DAY_OF_WEEK] = DAY_OF_WEEK
    return pd.DataFrame(out, index=calendar).loc[days.index], sources


def _days_since(values: pd.Series) -> pd.Series:
    """Days since the value was last above zero, before the day itself (capped; unknown before the first)."""
    positions = np.arange(len(values), dtype=float)
    last = pd.Series(np.where(values.to_numpy() > 0, positions, np.nan), index=values.index).ffill().shift(1)
    return (positions - last).clip(upper=DAYS_SINCE_CAP).fillna(DAYS_SINCE_CAP)


@dataclass
class Preprocessing:
    """Fitted on the training days: means and stds of the numbers, levels of the categories."""
    numeric: list[str]
    means: list[float]
    stds: list[float]
    categories: dict[str, list[str]]
    sources: dict[str, str] = field(default_factory=dict)
    shares: dict[str, list[float]] = field(default_factory=dict)  # how often each level was seen

    @classmethod
    def fit(cls, frame: pd.DataFrame, sources: dict[str, str]) -> Preprocessing:
        numeric = [c for c in frame.columns if not pd.api.types.is_string_dtype(frame[c])]
        values = frame[numeric].astype(float)
        means = values.mean().fillna(0.0)
        stds = values.std(ddof=0).fillna(1.0).replace(0.0, 1.0)
        categories = {c: sorted(frame[c].dropna().unique().tolist()) for c in frame.columns if c not in numeric}
        if DAY_OF_WEEK in categories:
            categories[DAY_OF_WEEK] = list(WEEKDAYS)
        shares = {c: [round(float((frame[c] == level).mean()), 6) for level in levels]
                  for c, levels in categories.items()}
        return cls(numeric, means.round(6).tolist(), stds.round(6).tolist(), categories, dict(sources), shares)

    def reference(self) -> np.ndarray:
        """The average training day as an input row: numbers at their mean, categories at their shares."""
        return np.concatenate([np.zeros(len(self.numeric))] +
                              [np.asarray(self.shares[c]) for c in self.categories]).astype(np.float32)

    @property
    def columns(self) -> list[str]:
        """The model's input columns, in order."""
        return self.numeric + [f"{c}={level}" for c, levels in self.categories.items() for level in levels]

    def column_sources(self) -> list[str]:
        """The diary column each input column comes from (what importance and explanations group by)."""
        return [self.sources.get(c.split("=", 1)[0], c.split("=", 1)[0]) for c in self.columns]

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """The float32 matrix the model takes; a feature missing from ``frame`` counts as unknown."""
        numbers = frame.reindex(columns=self.numeric).astype(float).to_numpy()
        means, stds = np.asarray(self.means), np.asarray(self.stds)
        numbers = np.where(np.isnan(numbers), means, numbers)
        blocks = [(numbers - means) / stds]
        for column, levels in self.categories.items():
            cells = frame[column].astype("string") if column in frame else pd.Series([pd.NA] * len(frame))
            blocks.append(np.stack([(cells == level).fillna(False).to_numpy(bool) for level in levels], axis=1))
        with np.errstate(over="ignore"):  # a value float32 cannot hold becomes inf, refused just below
            matrix = np.concatenate(blocks, axis=1).astype(np.float32)
        finite = np.isfinite(matrix)
        if not finite.all():
            column = self.columns[int(np.argmin(finite.all(axis=0)))]
            raise DiaryError(f"{column}: a value too large for the model; check the day's values are in range")
        return matrix

    def to_dict(self) -> dict:
        return asdict(self)


def input_ranges(prep: Preprocessing, target: str) -> dict[str, Range]:
    """The range of every number a day to predict may carry, by name: the diary's columns, the target (a
    frame of days may hold its history; the schema's scale for its target, any finite number for another)
    and the engineered features (``sleep_hours_mean3`` takes the range of ``sleep_hours``, ``mood_yesterday``
    the target's)."""
    ranges = {target: range_of(target)}
    for name in prep.numeric:
        source = prep.sources.get(name, name)
        if name.startswith(DAYS_SINCE_PREFIX):
            ranges[name] = DAYS_SINCE_RANGE
        else:
            ranges[name] = ranges.setdefault(source, range_of(source))
    return ranges


def check_days(days: Mapping[str, Any] | pd.DataFrame, ranges: Mapping[str, Range]
               ) -> dict[str, Any] | pd.DataFrame:
    """``days`` (one day as a dict, or a frame of days) with every number named in ``ranges`` checked and
    made a float; blanks are left out of a dict (unknown). In a frame NaN is a blank, as pandas has it;
    given for one day it is refused. The first value outside its range raises OutOfRangeError naming it."""
    if isinstance(days, Mapping):
        checked = {}
        for name, value in days.items():
            if name in ranges:
                value = checked_number(name, value, ranges[name])
            if value is not None and not (isinstance(value, str) and not value.strip()):
                checked[name] = value
        return checked
    frame = days.copy()
    for name in frame.columns:
        if name in ranges:
            values = []
            for row, value in enumerate(frame[name].tolist(), start=1):
                try:
                    values.append(checked_number(name, value, ranges[name], blank_nan=True))
                except OutOfRangeError as err:
                    raise OutOfRangeError(name, f"row {row}, {err}") from None
            frame[name] = pd.Series(values, index=frame.index, dtype=float)
    return frame
