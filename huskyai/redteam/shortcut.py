"""Shortcut check: how much does the model lean on the background rather than on the animal?

The husky-vs-wolf classifier of the LIME paper was looking at the snow. This check takes the husky photos
(and the wolf and malamute photos, where the data says which they are), and in the network's input masks
either the animal or the background with the normalisation's mean grey (zero after normalisation), then
reports how P(husky) moves, and how much of the explanation's heatmap (huskyai.explain.explanation) falls on the animal.

Where the animal is: a centre/border split, not a detector (none ships here) and not the heatmap's own peak
(which would make "heat on the animal" true by construction). The "animal" is the centred square holding
half the input's area (side 1/sqrt(2) of the input), the "background" the border around it; photos are
mostly framed on the animal, but not all, so read the numbers as a measurement of centre against
surroundings. A uniform heatmap puts 0.50 of its mass on the centre.
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import numpy as np
from PIL import Image

from huskyai.explain.explanation import explain
from huskyai.images.decode import load_image

CENTRE_SIDE = 1 / math.sqrt(2)  # the centre square holds half the area
FINE_CLASSES = {"siberian_husky": "husky", "wolf": "wolf", "alaskan_malamute": "malamute"}  # MANIFEST.tsv
FOLDERS = {"husky": "husky", "wolf": "wolf", "wolves": "wolf", "malamute": "malamute"}  # without a manifest
GROUPS = ("husky", "wolf", "malamute")
EXAMPLES_PER_GROUP = 4


def shortcut_check(model, data_dir: str | Path, out_dir: str | Path, limit: int = 40, method: str = "auto",
                   seed: int = 0, held_out_only: bool = False) -> dict:
    """Measure ``model`` (a Predictor) on up to ``limit`` photos per group of ``data_dir``; write
    shortcut.json, shortcut.md and shortcut.png (which shows the photos: keep it out of a public repo) to
    ``out_dir``. ``method``: the explanation's, as for huskyai.explain.explanation. ``held_out_only``: only the photos
    the model card lists as held out of training (``training.holdout_files``)."""
    started = time.time()
    keep = set(model.card.get("training", {}).get("holdout_files", [])) if held_out_only else None
    groups = find_groups(Path(data_dir), limit, seed, keep)
    if not groups:
        raise ValueError(f"{data_dir}: no husky, wolf or malamute photos found (a MANIFEST.tsv with fine_class, "
                         "or folders named husky/, wolf/, malamute/" + (", held out of training)" if keep is not None
                                                                        else ")"))
    rows, examples = [], []
    for group, paths in groups.items():
        for k, path in enumerate(paths):
            row, views = measure(model, path, method)
            rows.append({"group": group, "file": str(Path(path).relative_to(data_dir))} | row)
            if k < EXAMPLES_PER_GROUP:
                examples.append((group, row, views))
    summary = {g: summarise([r for r in rows if r["group"] == g], model.threshold) for g in groups}
    result = {"method": rows[0]["method"], "photos": len(rows), "held_out_only": held_out_only,
              "centre_share_of_area": 0.5,
              "threshold": model.threshold, "groups": summary, "rows": rows,
              "headline": "; ".join(headline(g, s) for g, s in summary.items()),
              "seconds": round(time.time() - started, 1)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "shortcut.json").write_text(json.dumps(result, indent=2))
    (out / "shortcut.md").write_text(markdown_table(result))
    draw_examples(examples, out / "shortcut.png", result["method"])
    return result


def find_groups(data_dir: Path, limit: int, seed: int = 0, keep: set[str] | None = None) -> dict[str, list[Path]]:
    """{group: up to ``limit`` photo paths}, groups by MANIFEST.tsv's fine_class when there is one, else by
    folder name; a seeded random draw of each group. ``keep``: only these "FOLDER/label/file" names (as a
    model card lists its held-out photos)."""
    if not data_dir.is_dir():
        raise ValueError(f"{data_dir}: no such folder")
    found: dict[str, list[Path]] = {}
    manifest = data_dir / "MANIFEST.tsv"
    if manifest.is_file():
        with manifest.open(newline="") as f:
            for entry in csv.DictReader(f, delimiter="\t"):
                if entry.get("fine_class") in FINE_CLASSES:
                    found.setdefault(FINE_CLASSES[entry["fine_class"]], []).append(data_dir / entry["file"])
    else:
        for folder in sorted(p for p in data_dir.iterdir() if p.is_dir() and p.name.lower() in FOLDERS):
            found.setdefault(FOLDERS[folder.name.lower()], []).extend(sorted(folder.glob("*.*")))
    if keep is not None:
        found = {g: [p for p in paths if f"{data_dir.name}/{p.relative_to(data_dir).as_posix()}" in keep]
                 for g, paths in found.items()}
    rng = np.random.default_rng(seed)
    return {g: [paths[i] for i in sorted(rng.permutation(len(paths))[:limit])]
            for g, paths in sorted(found.items(), key=lambda kv: GROUPS.index(kv[0])) if paths}


def centre_square(size: int) -> tuple[int, int]:
    """(start, end) of the centre square along one side of a ``size`` input."""
    side = round(size * CENTRE_SIDE)
    start = (size - side) // 2
    return start, start + side


def measure(model, path: Path, method: str) -> tuple[dict, list[Image.Image]]:
    """One photo's probabilities as is, with the background masked and with the animal masked, and the share
    of its heatmap on the centre; also its overlay and the two masked inputs as pictures."""
    photo = load_image(path)
    explanation = explain(model, photo, method=method)
    x = model.preprocess(photo)
    a, b = centre_square(model.size)
    no_background = np.zeros_like(x)
    no_background[:, a:b, a:b] = x[:, a:b, a:b]
    no_animal = x.copy()
    no_animal[:, a:b, a:b] = 0.0
    p = model.probabilities(np.stack([no_background, no_animal]))[:, model.classes.index(model.positive)]
    total = float(explanation.heatmap.sum())  # the map is over the network's input, the same square as x
    on_centre = float(explanation.heatmap[a:b, a:b].sum()) / total if total > 0 else None
    row = {"p": round(explanation.prediction.positive_probability, 4), "p_background_masked": round(float(p[0]), 4),
           "p_animal_masked": round(float(p[1]), 4),
           "heat_on_centre": None if on_centre is None else round(on_centre, 3), "method": explanation.method}
    return row, [explanation.overlay] + [_as_image(model, v) for v in (no_background, no_animal)]


def summarise(rows: list[dict], threshold: float) -> dict:
    """Means over one group, and how often masking changes the decision."""
    def mean(key: str) -> float:
        return round(float(np.mean([r[key] for r in rows])), 3)

    said = [r["p"] >= threshold for r in rows]
    heat = [r["heat_on_centre"] for r in rows if r["heat_on_centre"] is not None]
    return {"n": len(rows), "p": mean("p"), "p_background_masked": mean("p_background_masked"),
            "p_animal_masked": mean("p_animal_masked"),
            "said_husky": round(float(np.mean(said)), 3),
            "flips_background_masked": round(float(np.mean([(r["p_background_masked"] >= threshold) != s
                                                             for r, s in zip(rows, said)])), 3),
            "flips_animal_masked": round(float(np.mean([(r["p_animal_masked"] >= threshold) != s
                                                        for r, s in zip(rows, said)])), 3),
            "heat_on_centre": round(float(np.mean(heat)), 3) if heat else None, "empty_heatmaps": len(rows) - len(heat)}


def headline(group: str, s: dict) -> str:
    return (f"{group} (n={s['n']}): P(husky) {s['p']:.2f}, {s['p_background_masked']:.2f} without background, "
            f"{s['p_animal_masked']:.2f} without animal; heat on centre {s['heat_on_centre']}")


def markdown_table(result: dict) -> str:
    lines = [f"# Shortcut check ({result['method']} heatmaps, centre/border split)", "",
             "Mean P(husky) as is, with the background (border) masked, with the animal (centre square, half the "
             "area) masked; share of photos whose decision flips; mean share of heatmap mass on the centre "
             "(uniform: 0.50).", "",
             "| group | n | said husky | P(husky) | no background | no animal | flips (no bg) | flips (no animal) "
             "| heat on centre |", "|---|---|---|---|---|---|---|---|---|"]
    for group, s in result["groups"].items():
        lines.append(f"| {group} | {s['n']} | {s['said_husky']:.2f} | {s['p']:.3f} | {s['p_background_masked']:.3f} "
                     f"| {s['p_animal_masked']:.3f} | {s['flips_background_masked']:.2f} | "
                     f"{s['flips_animal_masked']:.2f} | {s['heat_on_centre']} |")
    return "\n".join(lines) + "\n"


def draw_examples(examples: list[tuple[str, dict, list[Image.Image]]], path: Path, method: str) -> Path:
    """A contact sheet: per example photo, its overlay, then what the network saw with each half masked."""
    from huskyai.evaluation.sheets import contact_sheet

    tiles = []
    for group, row, (overlay, no_background, no_animal) in examples:
        tiles += [(overlay, [("", f"{group}: P={row['p']:.2f}", "black"),
                                    ("", f"heat on centre {row['heat_on_centre']}", "black")]),
                  (no_background, [("", "background masked", "black"),
                                              ("", f"P={row['p_background_masked']:.2f}", "firebrick")]),
                  (no_animal, [("", "animal masked", "black"),
                                          ("", f"P={row['p_animal_masked']:.2f}", "firebrick")])]
    return contact_sheet(tiles, path, f"shortcut check: {method} overlay, background masked, animal masked")


def _as_image(model, x: np.ndarray) -> Image.Image:
    """A normalised CHW input shown as pixels (masked parts come out as the mean grey)."""
    pixels = np.clip(model.preprocessing.denormalise(x), 0, 1) * 255
    return Image.fromarray(pixels.round().astype(np.uint8).transpose(1, 2, 0))
