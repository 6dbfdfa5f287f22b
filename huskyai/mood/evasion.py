"""``attack mood-evasion``: the smallest change to a day that moves the predicted mood by one point,
changing only the columns a person controls (the card's ``features.controls``), as the author would try.

A black-box greedy search through ``MoodModel.scores``: each step moves the one controlled column whose
step (a tenth of its training std, kept at or above zero and within 3 stds of the mean) brings the
prediction furthest toward the goal. The cost of a change is its size in training stds, summed over
columns. The report has the same shape as the image attacks': a JSON summary and a Markdown page.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from huskyai.mood.model import MoodModel


def evade(model: MoodModel, day: dict, goal: float = 1.0, step: float = 0.1, max_steps: int = 300) -> dict:
    """Greedy search for one day: the changed columns, old and new values, and the prediction's move.
    A lone day's input has each controlled column in one standardised position, so the steps are taken
    on the model's input row and scored in one batch per step."""
    controls = [c for c in model.card["features"]["controls"] if c in model.numeric]
    positions = np.array([model.prep.numeric.index(c) for c in controls])
    means = np.array([model.prep.means[i] for i in positions])
    stds = np.array([model.prep.stds[i] for i in positions])
    floor, ceiling = (np.maximum(0.0, means - 3 * stds) - means) / stds, 3.0
    x0 = model.matrix(day)[0][0]
    start = float(model.scores(x0[None])[0])
    sign = 1.0 if start + goal <= model.card["target_range"][1] else -1.0  # up unless there is no room left
    x, now, queries = x0.copy(), start, 1
    moves = np.concatenate([np.eye(len(controls)), -np.eye(len(controls))]) * step
    which = np.arange(len(moves)) % len(controls)
    for _ in range(max_steps):
        candidates = np.repeat(x[None], len(moves), axis=0)
        candidates[:, positions] += moves
        moved = candidates[np.arange(len(moves)), positions[which]]  # only the stepped column must stay in range
        inside = (moved >= floor[which] - 1e-6) & (moved <= ceiling)
        scores = np.where(inside, model.scores(candidates), -sign * np.inf)
        queries += len(moves)
        best = int(np.argmax(sign * scores))
        if sign * (scores[best] - now) <= 0:
            break  # no single step helps any more
        x, now = candidates[best], float(scores[best])
        if sign * (now - start) >= goal:
            break
    shift = (x - x0)[positions]
    changes = {c: {"from": day.get(c), "to": round(float(day.get(c, m) if pd.notna(day.get(c, m)) else m) + d * sd, 2)}
               for c, m, sd, d in zip(controls, means, stds, shift) if abs(d) > 1e-6}
    return {"start": round(start, 3), "end": round(now, 3), "success": bool(sign * (now - start) >= goal),
            "direction": "up" if sign > 0 else "down", "changes": changes,
            "cost_in_stds": round(float(np.abs(shift).sum()), 3), "queries": queries}


def mood_evasion(model: MoodModel, out: str | Path, days: pd.DataFrame | None = None, limit: int = 8,
                 seed: int = 0) -> dict:
    """Attack ``limit`` days (default: a fresh generated diary's) and write mood-evasion.json and .md."""
    from huskyai.mood.sample import generate

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frame = days if days is not None else generate(limit + 5, seed=seed + 100, missing_cells=0)
    keep = [c for c in (*model.numeric, *model.categorical) if c in frame]
    runs = [evade(model, {k: v for k, v in row.items() if pd.notna(v)})
            for row in frame[keep].head(limit).to_dict("records")]
    wins = [r for r in runs if r["success"]]
    result = {"attack": "mood-evasion", "n": len(runs), "success_rate": len(wins) / max(1, len(runs)),
              "median_cost_in_stds": float(np.median([r["cost_in_stds"] for r in wins])) if wins else None,
              "median_columns_changed": float(np.median([len(r["changes"]) for r in wins])) if wins else None,
              "median_queries": float(np.median([r["queries"] for r in runs])) if runs else None,
              "controls": model.card["features"]["controls"], "runs": runs}
    (out / "mood-evasion.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    (out / "mood-evasion.md").write_text(_markdown(result))
    return result


def _markdown(r: dict) -> str:
    lines = ["# Mood evasion", "", f"Greedy black-box search changing only what a person controls: "
             f"{r['success_rate']:.0%} of {r['n']} days moved by a full mood point; median cost "
             f"{r['median_cost_in_stds']} training stds over {r['median_columns_changed']} column(s), "
             f"{r['median_queries']} queries.", "", "| start | end | changes |", "|---|---|---|"]
    for run in r["runs"]:
        moved = ", ".join(f"{c} {v['from']} -> {v['to']}" for c, v in run["changes"].items())
        lines.append(f"| {run['start']} | {run['end']} | {moved or '-'} |")
    return "\n".join(lines) + "\n"
