"""Reading a mood diary: a CSV with one row per day, a ``date`` column, any feature columns and a target.

Every column other than the date and the target becomes a feature: numeric when most of its cells are
numbers, categorical otherwise. What can be skipped is skipped and reported, one line per problem, naming
the CSV line and the column: a bad date, a duplicate date, a missing or non-numeric target, a non-numeric
cell in a numeric column (then treated as missing). Missing days are reported too; the features of the
day after a gap treat the gap as unknown. What cannot be skipped raises DiaryError: no such file, no date
column, an unknown target, too few days left.

The values a day can have come from one place, the column schema (huskyai/mood/diary-schema.json, each
column's ``range``): :func:`column_ranges` reads them, :func:`checked_number` holds one value to them
(refusing it with :class:`OutOfRangeError`, naming the column and its range), and a diary's cell outside
its column's range is reported and treated as missing, like a cell that is not a number. A column the
schema does not list may hold any finite number up to :data:`ANY_NUMBER` in size.
"""

from __future__ import annotations

import functools
import io
import json
import math
import numbers
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd

from huskyai.clienttext import one_line
from huskyai.errors import DataError

DATE = "date"
DEFAULT_TARGET = "mood"
MIN_DAYS = 30  # below this, a time split leaves too few days to learn or to judge anything
NUMERIC_SHARE = 0.8  # a column is numeric when at least this share of its filled cells are numbers
MAX_BYTES = 20 * 1024 * 1024  # a diary of decades is under 1 MB
SCHEMA_FILE = "diary-schema.json"
ANY_NUMBER = 1e12  # the size limit of a column the schema does not list: float32 holds it, and no diary needs more
SHOWN = 40  # characters of a refused value repeated in a message
UNITLESS = ("count", "category", "units")


class DiaryError(DataError):
    """A diary that cannot be used, with a message naming the file, the line and the column."""


class OutOfRangeError(DiaryError):
    """A value no day can have (outside its column's range, not finite, not a number); ``column`` names it."""

    def __init__(self, column: str, message: str):
        super().__init__(message)
        self.column = column


@dataclass(frozen=True)
class Range:
    """The smallest and largest value of a column, both allowed, and its unit."""
    low: float
    high: float
    unit: str = ""

    def __str__(self) -> str:
        unit = f" {self.unit}" if self.unit and self.unit not in UNITLESS else ""
        return f"{self.low:g} to {self.high:g}{unit}"


ANY = Range(-ANY_NUMBER, ANY_NUMBER)


def schema() -> dict:
    """The shipped column schema (huskyai/mood/diary-schema.json): units, ranges, and what a person controls."""
    return json.loads(files("huskyai.mood").joinpath(SCHEMA_FILE).read_text())


@functools.cache
def column_ranges() -> dict[str, Range]:
    """Each schema column's range (numeric columns only), and the target's scale under its name."""
    shipped = schema()
    ranges = {name: Range(float(spec["range"][0]), float(spec["range"][1]), spec.get("unit", ""))
              for name, spec in shipped["columns"].items() if "range" in spec}
    scale = shipped["target_scale"]
    return ranges | {shipped["target"]: Range(float(scale["min"]), float(scale["max"]))}


def range_of(column: str) -> Range:
    """``column``'s range in the schema; :data:`ANY` for a column it does not list."""
    return column_ranges().get(column, ANY)


def checked_number(column: str, value: object, allowed: Range, blank_nan: bool = False) -> float | None:
    """``value`` as a float within ``allowed``, or None for a blank (unknown). Anything else (not a number,
    infinite, NaN unless ``blank_nan``, outside the range, an integer too large for a float) raises
    OutOfRangeError with one line naming ``column`` and its range."""
    if value is None or value is pd.NA or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):  # a number written out, as a CSV or a form has it
        try:
            value = float(value.strip()) if len(value) <= SHOWN else value
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise OutOfRangeError(column, f"{column}: {shown(value)} is not a number; give a number from {allowed}")
    if value != value:  # NaN
        if blank_nan:
            return None
        raise OutOfRangeError(column, f"{column}: NaN is not a number; give a number from {allowed}, "
                                      "or leave it empty for unknown")
    if not allowed.low <= value <= allowed.high:  # exact for any int, however large, and for infinities
        raise OutOfRangeError(column, f"{column}: {shown(value)} is outside its range, {allowed}")
    return float(value)


@dataclass
class Diary:
    """The usable days, sorted by date (index), with the target and feature columns typed."""
    days: pd.DataFrame
    target: str
    numeric: list[str]
    categorical: list[str]
    problems: list[str] = field(default_factory=list)  # what was skipped or treated as missing

    @property
    def features(self) -> list[str]:
        return self.numeric + self.categorical


def read_diary(source: str | Path | pd.DataFrame, target: str = DEFAULT_TARGET, min_days: int = MIN_DAYS,
               require_target: bool = True) -> Diary:
    """The diary in ``source`` (a CSV path or a DataFrame with a date column), checked.
    ``require_target=False`` reads days to predict, which have no target yet."""
    raw, name = _raw_frame(source)
    if DATE not in raw.columns:
        raise DiaryError(f"{name}: no '{DATE}' column (columns: {', '.join(raw.columns)})")
    has_target = target in raw.columns
    if require_target and not has_target:
        raise DiaryError(f"{name}: the target '{target}' is not a column; choose one with --target "
                         f"(columns: {', '.join(c for c in raw.columns if c != DATE)})")
    problems: list[str] = []
    raw = raw.assign(_line=np.arange(len(raw)) + 2)  # CSV line numbers: the header is line 1
    raw = _parse_dates(raw, name, problems)
    if has_target:
        raw[target] = _numeric(raw, target, name, problems, checked=False)  # its scale is the diary's own
        if require_target:
            _report_missing_target(raw, target, name, problems)
    features = [c for c in raw.columns if c not in (DATE, target, "_line")]
    numeric = [c for c in features if _is_numeric(raw[c])]
    for column in features:
        _report_missing(raw, column, name, problems)
    for column in numeric:
        raw[column] = _numeric(raw, column, name, problems)
    categorical = [c for c in features if c not in numeric]
    for column in categorical:
        raw[column] = raw[column].astype("string").str.strip()
    days = raw.set_index(DATE).sort_index().drop(columns="_line")
    problems += _missing_days(days.index, name)
    usable = int(days[target].notna().sum()) if require_target else len(days)
    if usable < min_days:
        raise DiaryError(f"{name}: only {usable} usable days; at least {min_days} are needed to train and "
                         "validate by time" + (f" ({len(problems)} problems: {problems[0]} ...)" if problems else ""))
    return Diary(days, target, numeric, categorical, problems)


def _raw_frame(source: str | Path | pd.DataFrame) -> tuple[pd.DataFrame, str]:
    if isinstance(source, pd.DataFrame):
        return source.reset_index(drop=source.index.name != DATE).astype("string"), "the diary"
    path = Path(source)
    try:
        data = path.read_bytes()[:MAX_BYTES + 1]
    except OSError as err:
        raise DiaryError(f"{path}: cannot read the diary ({err.strerror})") from None
    if len(data) > MAX_BYTES:
        raise DiaryError(f"{path}: more than {MAX_BYTES // 2**20} MB; a diary is a small CSV")
    try:
        frame = pd.read_csv(io.BytesIO(data), dtype="string", skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DiaryError(f"{path}: not a readable CSV ({str(err).strip()})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame, str(path)


def _parse_dates(raw: pd.DataFrame, name: str, problems: list[str]) -> pd.DataFrame:
    dates = pd.to_datetime(raw[DATE], errors="coerce", format="ISO8601")
    for line, cell in zip(raw["_line"][dates.isna()], raw[DATE][dates.isna()]):
        problems.append(f"{name} line {line}, column '{DATE}': {shown(cell)} is not a date (YYYY-MM-DD); "
                        "row skipped")
    raw = raw.assign(**{DATE: dates.dt.normalize()})[dates.notna()]
    duplicated = raw[DATE].duplicated(keep="first")
    for line, day in zip(raw["_line"][duplicated], raw[DATE][duplicated]):
        first = raw["_line"][raw[DATE] == day].iloc[0]
        problems.append(f"{name} line {line}, column '{DATE}': {day.date()} is a duplicate of line {first}; "
                        "row skipped (the first one is kept)")
    return raw[~duplicated]


def _is_numeric(cells: pd.Series) -> bool:
    filled = cells.dropna()
    filled = filled[filled.str.strip() != ""]
    return len(filled) > 0 and pd.to_numeric(filled, errors="coerce").notna().mean() >= NUMERIC_SHARE


def _numeric(raw: pd.DataFrame, column: str, name: str, problems: list[str], checked: bool = True) -> pd.Series:
    """The column as floats; each cell that is filled but not a number, or (when ``checked``) outside the
    column's range, is reported and becomes missing."""
    values = pd.to_numeric(raw[column], errors="coerce").astype(float)
    values[~np.isfinite(values)] = np.nan
    bad = values.isna() & raw[column].notna() & (raw[column].str.strip() != "")
    for line, cell in zip(raw["_line"][bad], raw[column][bad]):
        problems.append(f"{name} line {line}, column '{column}': {shown(cell)} is not a number; "
                        "treated as missing")
    allowed = range_of(column) if checked else ANY
    outside = values.notna() & ((values < allowed.low) | (values > allowed.high))
    for line, cell in zip(raw["_line"][outside], raw[column][outside]):
        problems.append(f"{name} line {line}, column '{column}': {shown(cell)} is outside its range, {allowed}; "
                        "treated as missing")
    values[outside] = np.nan
    return values


def _report_missing(raw: pd.DataFrame, column: str, name: str, problems: list[str]) -> None:
    """One line per column with blank cells (the lines listed), since they are treated as unknown."""
    lines = raw["_line"][raw[column].isna()].tolist()
    if lines:
        shown = ", ".join(map(str, lines[:8])) + (", ..." if len(lines) > 8 else "")
        problems.append(f"{name}, column '{column}': {len(lines)} blank cell(s) (line {shown}); treated as unknown")


def _report_missing_target(raw: pd.DataFrame, target: str, name: str, problems: list[str]) -> None:
    for line in raw["_line"][raw[target].isna()]:
        problems.append(f"{name} line {line}, column '{target}': no value; not a training day "
                        "(its activities still count as the next days' history)")


def _missing_days(index: pd.Index, name: str) -> list[str]:
    if len(index) < 2:
        return []
    gaps = pd.Series(index[1:] - index[:-1], index=index[1:])
    return [f"{name}: {(gap.days - 1)} missing day(s) before {day.date()}; their features are treated as unknown"
            for day, gap in gaps[gaps > pd.Timedelta(days=1)].items()]


def shown(cell: object) -> str:
    """A value as a message repeats it: a number as written (a huge integer by its size), text quoted, on one
    line of at most SHOWN characters."""
    if isinstance(cell, numbers.Integral) and not isinstance(cell, bool):
        digits = int(int(cell).bit_length() * math.log10(2)) + 1
        return str(cell) if digits <= 15 else f"a number of about {digits} digits"
    if isinstance(cell, numbers.Real) and not isinstance(cell, bool):
        return f"{float(cell):g}"
    return repr(one_line(cell, SHOWN))
