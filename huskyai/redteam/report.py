"""Running the first-round attacks and writing their evidence: JSON, Markdown and pictures in one folder
(huskyai.redteam.suite runs them all)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from huskyai.images.folders import scan  # noqa: E402
from huskyai.inference.predictor import Predictor  # noqa: E402
from huskyai.settings import DEFAULT_RATE_LIMIT  # noqa: E402


def save_report(out: Path, name: str, result: dict, markdown: str | None = None) -> dict:
    """``name``.json (the result without its private ``_`` keys) and, when given, ``name``.md; the public result."""
    public = {k: v for k, v in result.items() if not k.startswith("_")}
    (out / f"{name}.json").write_text(json.dumps(public, indent=2, default=float) + "\n")
    if markdown is not None:
        (out / f"{name}.md").write_text(markdown)
    return public


def _grid(images: list, titles: list[str], path: Path, cols: int = 3) -> None:
    rows = (len(images) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, images, titles):
        ax.imshow(img)
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def _sample(data: Path, model: Predictor, limit: int, seed: int = 0) -> tuple[list[Path], list[str]]:
    """Up to ``limit`` labelled photos, half from the positive class where there are enough."""
    photos = scan(data, model.positive, report=lambda m: None)
    rng = random.Random(seed)
    pos = [s for s in photos.samples if s.label == model.positive]
    neg = [s for s in photos.samples if s.label != model.positive]
    rng.shuffle(pos)
    rng.shuffle(neg)
    chosen = pos[: limit // 2] + neg[: limit - min(len(pos), limit // 2)]
    return [s.path for s in chosen], [s.label for s in chosen]


def run_junk(model: Predictor, out: Path, n: int = 1000, seed: int = 0) -> dict:
    from huskyai.redteam.junk import junk_attack

    r = junk_attack(model, n, seed)
    worst = r["worst"]
    _grid([r["_images"][w["index"]][1] for w in worst], [f"{w['kind']} p={w['probability']:.3f}" for w in worst],
          out / "junk_worst.png")
    rows = "\n".join(f"| {k} | {v['n']} | {v['called_positive']} | {v['max_probability']:.3f} |"
                     for k, v in r["per_kind"].items())
    (out / "junk.md").write_text(
        f"# Junk images\n\n{r['called_positive']} of {n} generated junk images called {model.positive} "
        f"(false-{model.positive} rate {r['false_positive_rate']:.1%}).\n\n"
        f"| kind | n | called {model.positive} | highest probability |\n|---|---|---|---|\n{rows}\n\n"
        "The nine most husky-like:\n\n![worst junk](junk_worst.png)\n")
    return save_report(out, "junk", r)


def run_perturb(model: Predictor, data: Path, out: Path, limit: int = 16, steps: int = 10) -> dict:
    from huskyai.redteam.whitebox import perturb_attack

    photos, labels = _sample(data, model, limit)
    r = perturb_attack(model, photos, labels, steps=steps)
    ex = r["_examples"]
    if ex:
        images, titles = [], []
        for i in range(len(ex["labels"])):
            for kind, probs in (("clean", ex["clean_probs"]), ("adversarial", ex["adv_probs"])):
                images.append(ex[kind][i].transpose(1, 2, 0))
                pred = model.classes[int(np.argmax(probs[i]))]
                titles.append(f"{kind}: {pred} ({probs[i].max():.2f})\ntruth {ex['labels'][i]}")
        _grid(images, titles, out / "perturb_examples.png", cols=4)
    head = " | ".join(f"{e}/255" for e in r["epsilons"])
    rows = "\n".join(f"| {name.upper()} | " + " | ".join(f"{v:.2f}" for v in accs.values()) + " |"
                     for name, accs in r["attacks"].items())
    return save_report(out, "perturb", r, markdown=(
        f"# White-box perturbations (L-infinity)\n\n{r['n']} photos; clean accuracy {r['clean_accuracy']:.2f}. "
        f"Accuracy under attack (PGD: {r['steps']} steps, random start):\n\n| attack | {head} |\n"
        f"|---|{'---|' * len(r['epsilons'])}\n{rows}\n\nBefore and after PGD at "
        f"{max(r['epsilons'])}/255:\n\n![examples](perturb_examples.png)\n"))


def run_query(model: Predictor, data: Path, out: Path, limit: int = 8, budget: int = 300,
              rate_limit: int = DEFAULT_RATE_LIMIT) -> dict:
    from huskyai.redteam.blackbox import query_attack

    photos, labels = _sample(data, model, limit, seed=1)
    r = query_attack(model, photos, labels, budget=budget, rate_limit_per_minute=rate_limit)
    runs = r["_runs"][:6]
    _grid([run["adversarial"] for run in runs],
          [f"truth {run['label']}: {'fooled' if run['success'] else 'held'} after {run['queries']} queries"
           for run in runs], out / "query_examples.png")
    mq = r["median_queries"]
    (out / "query.md").write_text(
        f"# Black-box query attack\n\nSquare-patch random search at {r['eps']}/255 with {budget} queries per "
        f"photo, seeing only the probability: {r['success_rate']:.0%} of {r['n']} photos flipped, median "
        f"{mq if mq is not None else '-'} queries for a success. At the app's limit of {rate_limit} requests a "
        f"minute per client, a success costs one client about "
        f"{r['minutes_per_success_one_client'] or 0:.1f} minutes, and this whole run "
        f"{r['minutes_for_all_one_client'] or 0:.0f} minutes.\n\n![examples](query_examples.png)\n")
    return save_report(out, "query", r)


def run_scaling(model: Predictor, out: Path, cover: Image.Image, hidden: Image.Image) -> dict:
    from huskyai.redteam.scaling import scaling_attack

    r = scaling_attack(model, cover, hidden)
    im = r["_images"]
    im["attack"].save(out / "scaling_attack.png")
    _grid([im["attack"], im["naive"], im["huskyai"]],
          [f"the attack image ({r['attack_size']} px)",
           f"naive NEAREST downscale:\n{r['naive_prediction']['label']} "
           f"({r['naive_prediction']['probability']:.2f})",
           f"Husky AI's preprocessing:\n{r['huskyai_prediction']['label']} "
           f"({r['huskyai_prediction']['probability']:.2f})"], out / "scaling.png")
    (out / "scaling.md").write_text(
        f"# Image-scaling attack\n\nA {r['attack_size']} px image that looks like the cover (mean difference "
        f"{r['attack_vs_cover_mae']:.1f} grey levels) but whose nearest-neighbour downscale is the hidden image "
        f"(difference {r['naive_vs_hidden_mae']:.1f}). Husky AI's bilinear preprocessing sees the cover "
        f"(difference {r['huskyai_vs_cover_mae']:.1f}; from the hidden image {r['huskyai_vs_hidden_mae']:.1f}).\n\n"
        "![scaling](scaling.png)\n")
    return save_report(out, "scaling", r)


def run_tamper(export_dir: Path, out: Path) -> dict:
    from huskyai.redteam.tamper import tamper_attack

    r = tamper_attack(export_dir, out / "tamper_work")
    lines = [f"| {attack} | {check} | {outcome.split(':')[0] if isinstance(outcome, str) else outcome} |"
             for attack in ("bias_backdoor", "bias_backdoor_rehashed", "pickle_payload")
             for check, outcome in r[attack].items()]
    (out / "tamper.md").write_text(
        "# Tampered model files\n\nOn copies of the export: the final layer's bias shifted towards the positive "
        "class (in the weights and the ONNX graph; then again with the card's hashes rewritten to match), and an "
        "`os.system` payload injected into a learner pickle with fickling, the card rehashed and the folder "
        "trusted explicitly.\n\n"
        "| attack | check | outcome |\n|---|---|---|\n" + "\n".join(lines) +
        f"\n\nEverything refused and no payload ran: **{r['all_refused']}**.\n")
    return save_report(out, "tamper", r)
