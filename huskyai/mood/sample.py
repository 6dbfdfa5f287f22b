"""A SYNTHETIC mood diary: no real personal mood log is public under a usable licence, so Husky AI makes one.

The days follow rules a person would recognise, written down in TRUE_EFFECTS (mood points per unit):
sleep and exercise lift mood, alcohol lowers the next day's, screens and long work days weigh on it,
weekends and sunny days are better, and several columns (money spent, coffee, steps, ...) do nothing at
all. Mood also carries over from yesterday, days go missing, cells are left blank, and the score is
noisy and rounded to 1-5. Tests check that training recovers these effects; nothing here is real data.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

# the diary's columns: unit, and whether the person controls it (what mood-evasion may change)
SCHEMA: dict[str, dict] = {
    "run_km": {"unit": "km", "controls": True}, "bike_km": {"unit": "km", "controls": True},
    "sleep_hours": {"unit": "h", "controls": True}, "violin_min": {"unit": "min", "controls": True},
    "reading_min": {"unit": "min", "controls": True}, "social_interactions": {"unit": "count", "controls": True},
    "money_spent": {"unit": "EUR", "controls": True}, "coffee_cups": {"unit": "cups", "controls": True},
    "alcohol_units": {"unit": "units", "controls": True}, "screen_hours": {"unit": "h", "controls": True},
    "work_hours": {"unit": "h", "controls": True}, "meditation_min": {"unit": "min", "controls": True},
    "outdoor_hours": {"unit": "h", "controls": True}, "steps": {"unit": "count", "controls": True},
    "meals_cooked": {"unit": "count", "controls": True}, "tv_min": {"unit": "min", "controls": True},
    "emails_sent": {"unit": "count", "controls": True}, "commute_min": {"unit": "min", "controls": False},
    "temperature_c": {"unit": "C", "controls": False},
    "weather": {"unit": "category", "controls": False, "levels": ["sunny", "cloudy", "rainy"]},
}
TARGET = "mood"
MOOD_RANGE = (1, 5)
# mood points per unit of each column: the same day's effect and the next day's (carry-over)
TRUE_EFFECTS: dict[str, dict[str, float]] = {
    "sleep_hours": {"same_day": 0.45, "next_day": 0.2}, "run_km": {"same_day": 0.08, "next_day": 0.03},
    "bike_km": {"same_day": 0.03, "next_day": 0.0}, "social_interactions": {"same_day": 0.15, "next_day": 0.0},
    "alcohol_units": {"same_day": 0.0, "next_day": -0.25}, "screen_hours": {"same_day": -0.15, "next_day": 0.0},
    "work_hours": {"same_day": -0.06, "next_day": 0.0}, "meditation_min": {"same_day": 0.01, "next_day": 0.0},
    "outdoor_hours": {"same_day": 0.15, "next_day": 0.0}, "violin_min": {"same_day": 0.004, "next_day": 0.0},
    "reading_min": {"same_day": 0.003, "next_day": 0.0},
}
NO_EFFECT = ("money_spent", "coffee_cups", "steps", "meals_cooked", "tv_min", "emails_sent", "commute_min",
             "temperature_c")
WEEKEND_EFFECT, WEATHER_EFFECT = 0.3, {"sunny": 0.25, "cloudy": 0.0, "rainy": -0.25}
CARRY_OVER, NOISE_SD = 0.4, 0.45  # yesterday's mood surprise carries over; the rest is noise
NOTE = ("SYNTHETIC diary from huskyai.mood.sample (seed {seed}): generated, not anyone's real mood; "
        "the true effects are listed here")


def _activities(rng: np.random.Generator, weekend: np.ndarray) -> dict[str, np.ndarray]:
    n = len(weekend)
    pick = rng.random
    return {
        "run_km": np.where(pick(n) < 0.35, rng.gamma(4, 1.8, n), 0).round(1),
        "bike_km": np.where(pick(n) < np.where(weekend, 0.5, 0.25), rng.gamma(3, 5, n), 0).round(1),
        "sleep_hours": (rng.normal(6.9, 0.9, n) + 0.7 * weekend).clip(3.5, 11).round(1),
        "violin_min": np.where(pick(n) < 0.5, rng.normal(30, 12, n).clip(5), 0).round(),
        "reading_min": rng.gamma(2, 15, n).round(),
        "social_interactions": rng.poisson(np.where(weekend, 4.5, 3.0)),
        "money_spent": rng.lognormal(3.0, 0.9, n).round(2),
        "coffee_cups": rng.poisson(2.2, n), "alcohol_units": rng.poisson(np.where(weekend, 1.8, 0.5)),
        "screen_hours": rng.gamma(4, 0.8, n).clip(0.5, 10).round(1),
        "work_hours": np.where(weekend, rng.gamma(1, 0.7, n) * (pick(n) < 0.2), rng.normal(8, 1.2, n)).clip(0)
        .round(1),
        "meditation_min": np.where(pick(n) < 0.3, rng.normal(15, 5, n).clip(2), 0).round(),
        "outdoor_hours": rng.gamma(2, 0.6 + 0.4 * weekend, n).round(1),
        "steps": rng.normal(8000, 2500, n).clip(500).round(), "meals_cooked": rng.integers(0, 4, n),
        "tv_min": rng.gamma(2, 30, n).round(), "emails_sent": rng.poisson(np.where(weekend, 2, 15)),
        "commute_min": np.where(weekend, 0, rng.normal(35, 10, n).clip(0)).round(),
        "temperature_c": None, "weather": rng.choice(SCHEMA["weather"]["levels"], n, p=[0.35, 0.4, 0.25]),
    }


def _mood(days: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """The true latent mood, then rounded to the 1-5 scale."""
    latent = np.full(len(days), 3.0) + WEEKEND_EFFECT * (days.index.dayofweek >= 5)
    latent += days["weather"].map(WEATHER_EFFECT).to_numpy(float)
    for name, effect in TRUE_EFFECTS.items():
        centred = days[name].to_numpy(float) - days[name].mean()
        latent += effect["same_day"] * centred
        latent[1:] += effect["next_day"] * centred[:-1]
    surprise = np.zeros(len(days))
    for i, noise in enumerate(rng.normal(0, NOISE_SD, len(days))):
        surprise[i] = CARRY_OVER * (surprise[i - 1] if i else 0.0) + noise
    return np.clip(np.round(latent + surprise), *MOOD_RANGE).astype(int)


def generate(days: int = 365, seed: int = 0, start: str = "2026-01-01", missing_days: float = 0.03,
             missing_cells: float = 0.015) -> pd.DataFrame:
    """A synthetic diary of ``days`` calendar days (some of them missing, some cells blank), date as a column."""
    if days < 1:
        raise ValueError(f"days must be at least 1 (got {days})")
    rng = np.random.default_rng(seed)
    index = pd.date_range(start, periods=days, freq="D", name="date")
    weekend = np.asarray(index.dayofweek >= 5)
    columns = _activities(rng, weekend)
    season = np.cos(2 * np.pi * (index.dayofyear.to_numpy() - 200) / 365)
    columns["temperature_c"] = (12 + 10 * season + rng.normal(0, 3, days)).round(1)
    frame = pd.DataFrame(columns, index=index)
    frame[TARGET] = _mood(frame, rng)
    frame = frame.astype(object)
    blank = rng.random(frame.shape) < missing_cells
    blank[:, list(frame.columns).index(TARGET)] &= rng.random(days) < 0.3  # mood is rarely forgotten
    frame = frame.mask(blank)
    kept = rng.random(days) >= missing_days
    kept[:2] = True
    return frame[kept].reset_index()


@dataclass(frozen=True)
class WrittenSample:
    """What :func:`write_sample` wrote; unpacks as ``csv, truth``."""

    csv: Path
    truth: Path  # the .effects.json beside it
    days: int  # the days that have a row
    calendar_days: int  # the span asked for: the days without a row were left out, as in a real diary

    def __iter__(self) -> Iterator[Path]:
        return iter((self.csv, self.truth))


def write_sample(out: str | Path, days: int = 365, seed: int = 0) -> WrittenSample:
    """Write a diary over ``days`` calendar days (a few of them left out, as a real diary has gaps) and,
    beside it, ``<name>.effects.json``: the truth it was generated from."""
    out = Path(out)
    frame = generate(days, seed)
    frame["date"] = frame["date"].dt.strftime("%Y-%m-%d")
    frame.to_csv(out, index=False)
    truth = out.with_name(out.stem + ".effects.json")
    truth.write_text(json.dumps(true_effects(seed), indent=2) + "\n")
    return WrittenSample(out, truth, len(frame), days)


def true_effects(seed: int) -> dict:
    """What the generator did, for the model card and for tests."""
    return {"synthetic": True, "note": NOTE.format(seed=seed), "seed": seed, "effects": TRUE_EFFECTS,
            "no_effect": list(NO_EFFECT), "weekend": WEEKEND_EFFECT, "weather": WEATHER_EFFECT,
            "carry_over": CARRY_OVER, "noise_sd": NOISE_SD}


def read_truth(csv: str | Path) -> dict | None:
    """The ``.effects.json`` written beside a generated diary, if there is one."""
    path = Path(csv).with_name(Path(csv).stem + ".effects.json")
    try:
        truth = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return truth if isinstance(truth, dict) and truth.get("synthetic") is True else None
