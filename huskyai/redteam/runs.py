"""Round two of the red-team kit, run and written up: stealing (with the API-detail table), membership
inference and poisoning, each as JSON, Markdown and pictures in one folder, like huskyai.redteam.report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from huskyai.inference.predictor import Predictor
from huskyai.redteam.oracle import DETAILS
from huskyai.redteam.report import _grid, plt, save_report
from huskyai.redteam.steal import QUERY_COUNTS, TRANSFER_EPS
from huskyai.settings import DEFAULT_RATE_LIMIT

USER_LOSES = {"full": "nothing", "rounded": "anything finer than 10% (\"about 90%\")",
              "label": "the confidence: {uncertain:.0%} of held-out answers are unsure (20-80%) and now look sure",
              "app": "(the app's own setting)"}


def _split(model: Predictor, folders: Sequence[Path], seed: int = 0) -> tuple[list, list]:
    """The attacker's query photos and the judge's held-out ones: the card's held-out photos where it lists
    them, else a seeded fifth. Labels are not used: the attacker's photos are unlabelled."""
    from huskyai.redteam.photos import held_out, image_files

    files = image_files(folders)
    out = held_out(model, [k for k, _ in files])
    if not any(out) or all(out):
        out = list(np.random.default_rng(seed).random(len(files)) < 0.2)
    return [p for (_, p), o in zip(files, out) if not o], [p for (_, p), o in zip(files, out) if o]


def _correct(model: Predictor, heldout: Sequence[Path], limit: int) -> list[tuple[Path, str]]:
    """Up to ``limit`` held-out photos the model gets right, half of each class where there are enough."""
    from huskyai.redteam.photos import label_of

    right = []
    for label in model.classes:
        photos = [p for p in heldout if label_of(str(p)) == label][: limit * 2]
        right += [(p, label) for p, pr in zip(photos, model.predict_batch(photos)) if pr.label == label][:limit // 2]
    return right


def _query_rows(model: Predictor, victims: dict, heldout: Sequence[Path], limit: int, budget: int,
                rate_limit: int) -> dict:
    """The square-patch query attack against each victim (an API detail level), on photos it gets right."""
    from huskyai.redteam.blackbox import query_attack

    right = _correct(model, heldout, limit)
    return {d: {k: v for k, v in query_attack(v_, [p for p, _ in right], [lab for _, lab in right], budget=budget,
                                              rate_limit_per_minute=rate_limit).items() if not k.startswith("_")}
            for d, v_ in victims.items()}


def run_steal(model: Predictor, folders: Sequence[Path], out: Path, url: str | None = None,
              counts: Sequence[int] = QUERY_COUNTS, transfer_limit: int = 48, query_limit: int = 6,
              budget: int = 300, rate_limit: int = DEFAULT_RATE_LIMIT,
              transfer_eps: Sequence[float] = TRANSFER_EPS) -> dict:
    """Steal through the Python predictor at each emulated API detail, or through the app at ``url`` at its own."""
    from huskyai.redteam.oracle import AppOracle, PredictorOracle
    from huskyai.redteam.photos import victim_inputs
    from huskyai.redteam.steal import steal_attack
    from huskyai.redteam.surrogate import Surrogate

    query_paths, held_paths = _split(model, folders)
    queries = victim_inputs(model, query_paths[: max(counts)])
    heldout = victim_inputs(model, held_paths)
    victim = AppOracle(url, model) if url else PredictorOracle(model)
    r = steal_attack(victim, Surrogate(model.classes, model.positive), queries, heldout, counts, transfer_limit,
                     rate_limit, details=None if url else DETAILS, transfer_eps=transfer_eps)
    victims = {"app": victim} if url else {d: PredictorOracle(model, d) for d in DETAILS}
    r["query_attack"] = _query_rows(model, victims, held_paths, query_limit, budget, rate_limit)
    r["victim"] = url or "python predictor (API detail emulated by huskyai.redteam.oracle.reveal)"
    _write_steal(model, out, r)
    return save_report(out, "steal", r)


def _write_steal(model: Predictor, out: Path, r: dict) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for detail, rows in r["curves"].items():
        ax.plot([x["queries"] for x in rows], [x["agreement"] for x in rows], marker="o", label=detail)
    ax.axhline(r["chance_agreement"], color="grey", ls="--", label="always the majority answer")
    ax.set(xscale="log", xlabel="queries", ylabel="agreement with the victim (held out)", ylim=(0.5, 1.0))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "steal_curve.png", dpi=80)
    plt.close(fig)
    ex = r["_transfer_examples"]
    _grid(list(ex["adversarial"]), [f"victim said {lab}: {'fooled' if f else 'held'}"
                                    for lab, f in zip(ex["labels"], ex["fooled"])], out / "steal_transfer.png")
    details = list(r["curves"])
    curve = "\n".join(f"| {row['queries']} | {row['minutes_at_rate_limit'] or 0:.0f} min | " + " | ".join(
        f"{r['curves'][d][i]['agreement']:.3f} ({r['curves'][d][i]['positive_agreement'] or 0:.2f})" for d in details)
        + " |" for i, row in enumerate(r["curves"][details[0]]))
    moved = "\n".join(f"| {t['eps']}/255 | {t['surrogate_fooled']:.0%} | {t['victim_fooled']:.0%} | "
                      f"{t['random_noise_fooled']:.0%} |" for t in r["transfer"]["rows"])
    detail_rows = "\n".join(
        f"| {d} | {r['curves'][d][-1]['agreement']:.3f} | {q['success_rate']:.0%} of {q['n']} | "
        f"{q['median_queries'] or '-'} | {USER_LOSES[d].format(uncertain=r['heldout_uncertain_share'])} |"
        for d, q in r["query_attack"].items() if d in r["curves"])
    (out / "steal.md").write_text(
        f"# Model stealing\n\nVictim: {r['victim']}. Surrogate: EfficientNet-Lite2 ImageNet features + logistic "
        f"regression, fitted on the victim's answers to up to {r['queries_available']} photos; judged on "
        f"{r['heldout']} held-out photos (answering with the majority label agrees {r['chance_agreement']:.1%}). "
        f"Agreement (in brackets: on the photos the victim calls {model.positive}); minutes at the app's "
        f"{r['rate_limit_per_minute']} a minute; one query took {r['seconds_per_query'] * 1000:.0f} ms here.\n\n"
        f"| queries | at the limit | {' | '.join(details)} |\n|---|---|{'---|' * len(details)}\n{curve}\n\n"
        "![curve](steal_curve.png)\n\nTransfer: PGD (10 steps) on the surrogate "
        f"(fitted on every {r['transfer_from']} answer), uploaded as 8-bit images to the victim, "
        f"{r['transfer']['n']} held-out photos; against random +-eps noise:\n\n"
        f"| eps | surrogate fooled | victim fooled | noise fooled |\n|---|---|---|---|\n{moved}\n\n"
        "![transfer](steal_transfer.png)\n\n## What the API reveals\n\n"
        "| API detail | stolen agreement | query attack (8/255) | median queries | the honest user loses |\n"
        f"|---|---|---|---|---|\n{detail_rows}\n")


def run_membership(model: Predictor, folders: Sequence[Path], out: Path, boots: int = 500) -> dict:
    from huskyai.redteam.membership import membership_attack

    r = membership_attack(model, folders, boots)
    members, others = r["_losses"]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    bins = np.logspace(-6, 1.5, 40)
    for loss, name in ((members, "trained on"), (others, "held out")):
        ax.hist(np.clip(loss, 1e-6, None), bins=bins, density=True, alpha=0.5, label=name)
    ax.set(xscale="log", xlabel="loss of the true label", ylabel="density")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "membership_losses.png", dpi=80)
    plt.close(fig)
    (out / "membership.md").write_text(
        f"# Membership inference\n\nLoss threshold on {r['members']} training photos against {r['non_members']} "
        f"held out (the card's list): AUC {r['auc']:.3f} (95% {r['auc_95'][0]:.3f}-{r['auc_95'][1]:.3f}; 0.5 is "
        f"chance), advantage over chance {r['advantage']:+.3f} (95% {r['advantage_95'][0]:+.3f} to "
        f"{r['advantage_95'][1]:+.3f}) at a threshold calibrated on the other half. Mean loss "
        f"{r['mean_loss_members']:.4f} trained on, {r['mean_loss_non_members']:.4f} held out.\n\n"
        "![losses](membership_losses.png)\n")
    return save_report(out, "membership", r)


def run_poison(folders: Sequence[Path], out: Path, fractions: Sequence[float] = (0.01, 0.03, 0.1),
               epochs: Sequence[int] = (0,), radius: float = 0.05, keep_work: bool = True, **train_options) -> dict:
    """Poison, train and measure at each fraction and epoch count; the detector once per poisoned set (the
    same planted photos whatever the epochs). ``keep_work``: keep each poisoned copy and model in ``out``."""
    import shutil

    from huskyai.redteam.poison import detect_poison, poison_attack

    rows = []
    for fraction in fractions:
        found = None
        for n in epochs:
            work = out / f"poison_work_{fraction}_{n}"
            row = poison_attack(folders, work, fraction, n, radius, **train_options)
            roots, poisoned = row.pop("_roots"), row.pop("_poisoned")
            row["detector"] = found = found or detect_poison(roots, poisoned)
            rows.append(row)
            if not keep_work:
                shutil.rmtree(work)
    (out / "poison.md").write_text(
        "# Backdoor poisoning (purple dot)\n\nNon-husky training photos stamped with a purple dot and labelled "
        "husky; trained with Husky AI's pipeline; measured on the poisoned model's held-out photos (95% Wilson "
        "intervals). Flipped: of the held-out non-huskies called not husky clean, the share the dot turns husky."
        "\n\n" + poison_table(rows) + "\n")
    return save_report(out, "poison", {"radius": radius, "rows": rows})


def _share(rate: float, ci: list[float] | None, form: str = ".0%") -> str:
    return f"{rate:{form}} [{ci[0]:{form}}, {ci[1]:{form}}]" if ci else "-"


def poison_table(rows: Sequence[dict]) -> str:
    """The Markdown table of poisoning runs (poison.json's rows, from one run or several)."""
    lines = ["| poisoned (in training) | epochs | clean accuracy | non-huskies called husky: clean -> with dot "
             "| flipped by the dot | spectral signature: precision / recall (chance) |", "|---|---|---|---|---|---|"]
    for r in rows:
        t, d = r["trigger"], r["detector"]
        lines.append(
            f"| {r['fraction']:.0%}: {r['poisoned']} ({r['poisoned_in_training']}) | {r['epochs']} | "
            f"{_share(r['clean_accuracy'], r.get('clean_accuracy_95'), '.3f')} | {t['called_positive_clean']:.0%} -> "
            f"{t['called_positive_with_trigger']:.0%} | {t.get('flipped', '-')} of {t.get('of_negative', '-')}: "
            f"{_share(t.get('flip_rate', 0), t.get('flip_rate_95'))} | "
            f"{_share(d['precision'], d.get('precision_95'))} / {_share(d['recall'], d.get('recall_95'))} "
            f"({d['chance_precision']:.2f}) |")
    return "\n".join(lines)


def run_hopskipjump(model: Predictor, folders: Sequence[Path], out: Path, url: str | None = None, limit: int = 4,
                    max_iter: int = 10, max_eval: int = 200, rate_limit: int = DEFAULT_RATE_LIMIT,
                    budget: int = 1000) -> dict:
    """Label-only HopSkipJump on held-out photos the model gets right, through the app at ``url`` (run it with
    HUSKYAI_API_DETAIL=label) or the Python predictor answering labels only."""
    from huskyai.redteam.hopskipjump import hopskipjump_attack
    from huskyai.redteam.oracle import AppOracle, PredictorOracle
    from huskyai.redteam.photos import victim_inputs

    _, held_paths = _split(model, folders)
    victim = AppOracle(url, model) if url else PredictorOracle(model, "label")
    right = _correct(model, held_paths, limit)
    if not right:
        raise ValueError("no held-out photo the model gets right, to attack")
    images = victim_inputs(model, [p for p, _ in right])
    # each walks back from a photo of the other class (the attacker owns photos; noise is never a husky)
    starts = [next((im for im, (_, other) in zip(images, right) if other != label), None) for _, label in right]
    r = hopskipjump_attack(victim, images, max_iter=max_iter, max_eval=max_eval, rate_limit=rate_limit,
                           starts=starts, budget=budget)
    rows = "\n".join(f"| {x['label']} | {x['start']} | {x['fooled']} | "
                     + ("-" if x["linf"] is None else f"{x['linf']:.0f}/255") + f" | {x['queries']} |"
                     for x in r["runs"])
    (out / "hopskipjump.md").write_text(
        f"# Label-only HopSkipJump (ART)\n\nVictim: {url or 'the Python predictor, label only'}. {r['n']} photos, "
        f"{max_iter} iterations or {budget} queries: {r['success_rate']:.0%} fooled within {r['eps']}/255; "
        f"median {r['median_queries']:.0f}"
        f" queries a photo, {r['minutes_per_photo_at_rate_limit'] or 0:.0f} minutes at {rate_limit} a minute.\n\n"
        f"| label | started from | fooled | L-inf distance | queries |\n|---|---|---|---|---|\n{rows}\n")
    return save_report(out, "hopskipjump", r)
