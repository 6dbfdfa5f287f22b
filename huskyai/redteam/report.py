"""Running the first-round attacks and writing their evidence: JSON, Markdown and pictures in one folder
(huskyai.redteam.suite runs them all). The perturbation report also measures a noise-trained model's
certified answers and attacks them through their noise (huskyai.redteam.smoothing) when one is given."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from huskyai.images.folders import Sample, scan_many  # noqa: E402
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


def _balanced(samples: Sequence[Sample], positive: str, limit: int, seed: int) -> tuple[list[Path], list[str]]:
    """Up to ``limit`` of ``samples``, half from the positive class where there are enough (seeded shuffle)."""
    rng = random.Random(seed)
    pos = [s for s in samples if s.label == positive]
    neg = [s for s in samples if s.label != positive]
    rng.shuffle(pos)
    rng.shuffle(neg)
    chosen = pos[: limit // 2] + neg[: limit - min(len(pos), limit // 2)]
    return [s.path for s in chosen], [s.label for s in chosen]


def _sample(data: Path | Sequence[Path], model: Predictor, limit: int, seed: int = 0) -> tuple[list[Path], list[str]]:
    """Up to ``limit`` labelled photos from one folder or several, half from the positive class where there are
    enough."""
    photos = scan_many(data, model.positive, report=lambda m: None)
    return _balanced(photos.samples, model.positive, limit, seed)


def _held_out_sample(data: Path | Sequence[Path], model: Predictor, limit: int,
                     seed: int = 0) -> tuple[list[Path], list[str], bool]:
    """As :func:`_sample`, from the photos ``model``'s card lists as held out of its training where it lists any of
    these folders' photos (then the third value is True), else from all of them."""
    from huskyai.redteam.photos import held_out

    roots = [Path(data)] if isinstance(data, (str, Path)) else [Path(d) for d in data]
    photos = scan_many(roots, model.positive, report=lambda m: None)
    keys = [s.key if s.source else f"{roots[0].resolve().name}/{s.key}" for s in photos.samples]
    listed = held_out(model, keys)
    pool = [s for s, o in zip(photos.samples, listed) if o] if any(listed) else photos.samples
    return (*_balanced(pool, model.positive, limit, seed), any(listed))


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


def run_perturb(model: Predictor, data: Path | Sequence[Path], out: Path, limit: int = 16, steps: int = 10,
                robust: Predictor | None = None, n: int | None = None, certify_limit: int | None = None,
                draws: int | None = None, judge_n: int | None = None) -> dict:
    """FGSM and PGD under L-infinity on ``model``; with ``robust`` (a noise-trained model), also its certified
    accuracy and EOT-PGD against its smoothed classifier, beside ``model`` under the same attacks
    (:func:`run_smoothing`: ``n``, ``certify_limit``, ``draws`` and ``judge_n`` are its options)."""
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
    markdown = (
        f"# White-box perturbations (L-infinity)\n\n{r['n']} photos; clean accuracy {r['clean_accuracy']:.2f}. "
        f"Accuracy under attack (PGD: {r['steps']} steps, random start):\n\n| attack | {head} |\n"
        f"|---|{'---|' * len(r['epsilons'])}\n{rows}\n\nBefore and after PGD at "
        f"{max(r['epsilons'])}/255:\n\n![examples](perturb_examples.png)\n")
    if robust is not None:
        options = {"n": n, "certify_limit": certify_limit, "draws": draws, "judge_n": judge_n}
        smoothing, section = run_smoothing(robust, model, data, out, limit=limit, steps=steps,
                                           **{k: v for k, v in options.items() if v is not None})
        r["smoothing"] = smoothing
        r |= _smoothing_headline(smoothing)
        markdown += "\n" + section
    return save_report(out, "perturb", r, markdown=markdown)


def run_smoothing(robust: Predictor, fast: Predictor, data: Path | Sequence[Path], out: Path, limit: int = 16,
                  certify_limit: int | None = None, n: int | None = None, steps: int = 10,
                  draws: int | None = None, judge_n: int | None = None) -> tuple[dict, str]:
    """Randomized smoothing measured: CERTIFY on ``certify_limit`` photos (at least ``limit``) with ``n`` samples,
    and EOT-PGD against the smoothed ``robust`` model and plain PGD against ``fast`` on ``limit`` of them (L2
    radii and L-infinity eps of huskyai.redteam.smoothing and whitebox). Photos are ``robust``'s held-out ones
    where its card lists them, half huskies where there are enough. Writes smoothing_curve.png; returns the
    result and its Markdown section."""
    from huskyai.redteam import smoothing as sm

    certify_limit = max(limit, certify_limit or 0)  # every attacked photo is certified too
    cert_photos, cert_labels, held = _held_out_sample(data, robust, certify_limit)
    attack_photos, attack_labels = _balanced_subset(cert_photos, cert_labels, robust.positive, limit)
    started = time.time()
    certified = sm.certified_accuracy(robust, cert_photos, cert_labels, **({"n": n} if n else {}))
    attack_options = {"steps": steps} | ({"draws": draws} if draws else {}) | ({"judge_n": judge_n} if judge_n else {})
    smoothed = sm.smoothed_under_attack(robust, attack_photos, attack_labels, **attack_options)
    fast_r = sm.fast_under_attack(fast, attack_photos, attack_labels, steps=steps)
    certificates = [certified["rows"][cert_photos.index(p)] for p in attack_photos]
    fast_clean = [p.label == t for p, t in zip(fast.predict_batch(cert_photos), cert_labels)]
    r = {"robust_model": str(robust.export_dir), "robust_model_sha256": robust.model_sha256,
         "fast_model": str(fast.export_dir), "photos": "held out of the noise-trained model's training" if held
         else "sampled from the folders (the card lists no held-out photos among them)",
         "certified": certified, "smoothed_under_attack": smoothed, "fast_under_attack": fast_r,
         "certified_under_attack": sm.certified_within(certificates, attack_labels, robust.classes, smoothed),
         "flipped_inside_certificates": sm.flipped_inside(certificates, smoothed),
         "fast_clean_accuracy_on_certified_photos": float(np.mean(fast_clean)) if fast_clean else None,
         "seconds": round(time.time() - started, 1)}
    _smoothing_curve(robust, r, out / "smoothing_curve.png")
    return r, _smoothing_markdown(robust, fast, r)


def _balanced_subset(photos: list[Path], labels: list[str], positive: str, limit: int) -> tuple[list, list]:
    """``limit`` of a sample made by :func:`_balanced`, still half positives where there are enough, in its order."""
    pos = [i for i, lab in enumerate(labels) if lab == positive]
    neg = [i for i, lab in enumerate(labels) if lab != positive]
    keep = sorted(pos[: limit // 2] + neg[: limit - min(len(pos), limit // 2)])
    return [photos[i] for i in keep], [labels[i] for i in keep]


def _smoothing_headline(s: dict) -> dict:
    """The smoothing numbers the command prints: certified accuracy by radius, clean smoothed accuracy, and the
    accuracies under the strongest attacks run."""
    c, a, f = s["certified"], s["smoothed_under_attack"]["accuracy"], s["fast_under_attack"]["accuracy"]
    head = {f"certified_accuracy_r{r}": v["all"] for r, v in c["certified_accuracy"].items()}
    head |= {"smoothed_clean_accuracy": c["clean_accuracy"]["all"], "smoothed_abstain_rate": c["abstain_rate"]["all"],
             "noise_sigma": c["sigma"]}
    for name in a:
        if name != "none":
            key = name.lower().replace(" ", "_").replace("/", "_")
            head[f"smoothed_eot_{key}"], head[f"fast_pgd_{key}"] = a[name]["all"], f[name]["all"]
    return head


def _cell(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _smoothing_markdown(robust: Predictor, fast: Predictor, r: dict) -> str:
    from huskyai.redteam.smoothing import implied_linf

    c, sa, fa = r["certified"], r["smoothed_under_attack"], r["fast_under_attack"]
    classes = [robust.positive] + [k for k in robust.classes if k != robust.positive]
    radii = list(c["certified_accuracy"])
    counts = c["counts"] | {"all": c["n_photos"]}
    rows = [f"| {who} | {counts[who]} | "
            + " | ".join(_cell(c["certified_accuracy"][rad][who]) for rad in radii)
            + f" | {_cell(c['clean_accuracy'][who])} | {_cell(c['abstain_rate'][who])} |" for who in ["all", *classes]]
    columns = list(sa["accuracy"])
    lower = r["certified_under_attack"]
    attack_rows = [f"| smoothed, certified (lower bound), {who} | " + " | ".join(_cell(lower[col][who])
                                                                               for col in columns) + " |"
                   for who in ["all", *classes]]
    attack_rows += [f"| smoothed under EOT-PGD, {who} | " + " | ".join(_cell(sa["accuracy"][col][who])
                                                                      for col in columns) + " |"
                    for who in ["all", *classes]]
    attack_rows.append("| smoothed under EOT-PGD: abstained | " + " | ".join(_cell(sa["abstain_rate"][col])
                                                                            for col in columns) + " |")
    attack_rows += [f"| fast model under PGD, {who} | " + " | ".join(_cell(fa["accuracy"][col][who])
                                                                   for col in columns) + " |"
                    for who in ["all", *classes]]
    flips = r["flipped_inside_certificates"]
    size = c["input_size"]
    half = implied_linf(0.5, size)
    need = round(1 / 255 * (3 * size * size) ** 0.5, 2)
    covered = sum(1 for row in c["rows"] if row["label"] == row["truth"] and row["radius"] >= need)
    return (
        f"## Randomized smoothing: certified answers and attacks through the noise\n\n"
        f"The noise-trained model `{Path(r['robust_model']).name}` (sigma {c['sigma']:g}, {size} px; card sha256 "
        f"{r['robust_model_sha256'][:12]}...) answers as a smoothed classifier: the class its network decides most "
        f"often under Gaussian noise of sigma {c['sigma']:g}. Photos: {r['photos']}. Every radius is an L2 norm over "
        f"the model's input, the {size} x {size} crop, 3 x {size} x {size} values each in [0, 1].\n\n"
        f"**Certified accuracy** (CERTIFY, Cohen et al. 2019: n0 = {c['n0']}, n = {c['n']}, alpha = {c['alpha']:g}; "
        f"{c['seconds_per_photo']:.1f} s a photo, {c['seconds']:.0f} s in all): the share of photos answered with "
        f"their true label and a radius of at least r (an abstention counts as wrong). \"clean\" is the smoothed "
        f"classifier's accuracy as CERTIFY answers; the fast model gets "
        f"{_cell(r['fast_clean_accuracy_on_certified_photos'])} on the same photos.\n\n"
        f"| photos | n | " + " | ".join(f"r = {rad}" for rad in radii) + " | clean (smoothed) | abstained |\n"
        f"|---|---|{'---|' * len(radii)}---|---|\n" + "\n".join(rows) + "\n\n"
        f"A certificate is an L2 one: radius 0.5 covers L-infinity changes only up to {half:.5f} "
        f"({half * 255:.2f}/255) at {size} px, and covering 1/255 needs radius {need}: "
        f"{covered} of {c['n_photos']} photos have it. It says nothing about changes made before the crop and "
        f"resize (image-scaling attacks), nor about physical patches.\n\n"
        f"**Under white-box attack** ({sa['n_photos']} of those photos; empirical accuracy, an upper bound on the "
        f"robust accuracy). Against the smoothed classifier, PGD climbs the margin of the log of its mean softmax "
        f"over {sa['draws']} fresh noise draws per step (expectation over transformation, as SmoothAdv, Salman et al. "
        f"2019), {sa['steps']} steps from a random start; each attacked photo is then judged by CERTIFY with n = "
        f"{sa['judge_n']} (abstaining is wrong; \"none\" is the unattacked photo judged the same way). Against the "
        f"fast "        f"model (`{Path(r['fast_model']).name}`, {fa['input_size']} px, its own {fa['input_size']} x "
        f"{fa['input_size']} input), the same PGD without noise, judged by its own answer. "
        f"{sa['seconds']:.0f} s and {fa['seconds']:.0f} s.\n\n"
        f"| model, photos | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns) + "\n"
        + "\n".join(attack_rows) + "\n\n"
        "The certified rows hold against every attack of the column's size (an L-infinity column needs an L2 radius "
        f"of eps x {(3 * size * size) ** 0.5:.0f}); the EOT-PGD rows are what one attack achieved, judged with fewer "
        "samples, so they may fall below the certified ones by abstaining. What must never happen is an attack "
        "inside a photo's certified radius answered with the other class: it happened to "
        f"**{flips['flipped']} of {flips['covered']}** attacked photos that a certificate covered (every attack, "
        f"unattacked included; each certificate holds with probability 1 - {c['alpha']:g}).\n\n"
        "![certified accuracy against radius](smoothing_curve.png)\n")


def _smoothing_curve(robust: Predictor, r: dict, path: Path) -> None:
    """Certified accuracy against the L2 radius (overall and per class), with the EOT-PGD accuracies of the smoothed
    model and the PGD accuracies of the fast model at the attacked L2 radii."""
    c = r["certified"]
    rows = c["rows"]
    top = max([1.0] + [row["radius"] for row in rows])
    grid = np.linspace(0, top * 1.05, 200)
    fig, ax = plt.subplots(figsize=(6, 4))
    groups = (("all", "-", rows), (robust.positive, "--", [row for row in rows if row["truth"] == robust.positive]),
              (f"not {robust.positive}", ":", [row for row in rows if row["truth"] != robust.positive]))
    for name, style, chosen in groups:
        if chosen:
            curve = [np.mean([row["label"] == row["truth"] and row["radius"] >= g for row in chosen]) for g in grid]
            ax.plot(grid, curve, style, color="C0", label=f"certified, {name} (n={len(chosen)})")
    for key, marker, color, label in (
            ("fast_under_attack", "x", "C3", f"fast model under PGD ({r['fast_under_attack']['input_size']} px)"),
            ("smoothed_under_attack", "o", "C1", "smoothed under EOT-PGD")):
        points = [(float(name.split()[1]), v["all"]) for name, v in r[key]["accuracy"].items()
                  if name.startswith("L2 ")]
        if points:
            ax.plot(*zip(*points), marker, color=color, markersize=8, markerfacecolor="none", label=label)
    ax.set_xlabel(f"L2 radius (pixels in [0, 1], {c['input_size']} px input)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Randomized smoothing, sigma {c['sigma']:g}, n = {c['n']}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


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
