"""Model stealing: query the victim with photos the attacker owns, fit a surrogate on the answers, measure
how often it agrees with the victim on held-out photos (against the number of queries), then craft PGD
examples on the surrogate and count how many fool the victim, which never gave a gradient.

The victim is anything with ``predict(image) -> Prediction`` (huskyai.redteam.oracle): the Python
predictor at an emulated API detail, or a running app. Images are the victim's input (HxWx3 uint8).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from huskyai.redteam.oracle import reveal
from huskyai.settings import DEFAULT_RATE_LIMIT

QUERY_COUNTS = (100, 300, 1000)
TRANSFER_EPS = (4 / 255, 8 / 255, 16 / 255)


def ask(oracle, images: Sequence[np.ndarray]) -> tuple[list, float]:
    """The victim's answers to ``images``, and the seconds each query took."""
    start = time.perf_counter()
    answers = [oracle.predict(im) for im in images]
    return answers, (time.perf_counter() - start) / max(1, len(images))


def stealing_curve(surrogate, q_feats: np.ndarray, q_pos: np.ndarray, h_feats: np.ndarray,
                   h_victim: np.ndarray, counts: Sequence[int] = QUERY_COUNTS, seed: int = 0) -> list[dict]:
    """Agreement with the victim's labels on held-out photos, for surrogates fitted on the first n answers
    (in a seeded order) for each n in ``counts`` (capped at the answers there are)."""
    order = np.random.default_rng(seed).permutation(len(q_feats))
    rows = []
    for n in sorted({min(n, len(order)) for n in counts}):
        surrogate.fit(q_feats[order[:n]], q_pos[order[:n]])
        agree = (surrogate.positive_probability(h_feats) >= 0.5) == h_victim
        rows.append({"queries": n, "agreement": float(agree.mean()),  # and where the victim says "husky":
                     "positive_agreement": float(agree[h_victim].mean()) if h_victim.any() else None})
    return rows


def transfer(surrogate, victim, images: Sequence[np.ndarray], victim_labels: Sequence[str],
             epsilons: Sequence[float] = TRANSFER_EPS, steps: int = 10, seed: int = 0) -> dict:
    """PGD on the surrogate against the victim's own label of each image; how many uploads (8-bit) then
    get another label from the victim, and, as the control, how many random +-eps noise images do."""
    import torch

    from huskyai.redteam.whitebox import pgd

    x = torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).astype(np.float32) / 255)
    y = torch.tensor([surrogate.classes.index(label) for label in victim_labels])
    rng = np.random.default_rng(seed)
    rows, examples = [], {}
    for eps in epsilons:
        adv = torch.cat([pgd(surrogate, x[i:i + 8], y[i:i + 8], eps, steps, seed=seed) for i in range(0, len(x), 8)])
        adv8 = (adv.numpy().transpose(0, 2, 3, 1) * 255 + 0.5).astype(np.uint8)
        with torch.no_grad():
            surrogate_fooled = (surrogate.logits(torch.from_numpy(adv8.transpose(0, 3, 1, 2) / 255).float())
                                .argmax(1) != y).float().mean().item()
        fooled = [victim.predict(a).label != lab for a, lab in zip(adv8, victim_labels)]
        noise = [np.clip(im.astype(int) + round(eps * 255) * rng.choice([-1, 1], size=im.shape), 0, 255)
                 .astype(np.uint8) for im in images]
        noise_fooled = [victim.predict(a).label != lab for a, lab in zip(noise, victim_labels)]
        rows.append({"eps": round(eps * 255), "surrogate_fooled": surrogate_fooled,
                     "victim_fooled": float(np.mean(fooled)), "random_noise_fooled": float(np.mean(noise_fooled))})
        examples = {"adversarial": adv8[:6], "fooled": fooled[:6], "labels": list(victim_labels[:6])}
    return {"n": len(images), "steps": steps, "rows": rows, "_examples": examples}


def steal_attack(victim, surrogate, queries: Sequence[np.ndarray], heldout: Sequence[np.ndarray],
                 counts: Sequence[int] = QUERY_COUNTS, transfer_limit: int = 48,
                 rate_limit: int = DEFAULT_RATE_LIMIT, details: Sequence[str] | None = None,
                 transfer_eps: Sequence[float] = TRANSFER_EPS) -> dict:
    """The stealing curve (and transfer from the largest surrogate, at each of ``transfer_eps``) against ``victim``.

    ``details``: API detail levels to emulate on the victim's full answers (huskyai.redteam.oracle.reveal),
    one curve each; None takes the answers as the victim gives them (a running app's own setting)."""
    answers, seconds = ask(victim, queries)
    held_answers, _ = ask(victim, heldout)  # the judge's view: not charged to the attacker
    h_victim = np.array([a.label == victim.positive for a in held_answers])
    q_feats, h_feats = surrogate.features(queries), surrogate.features(heldout)
    curves, first = {}, None
    for detail in details or [getattr(victim, "detail", "app")]:
        shown = [reveal(a.scores, a.label, detail) for a in answers] if details else [a.scores for a in answers]
        q_pos = np.array([s[victim.positive] for s in shown])
        first = q_pos if first is None else first
        curves[detail] = stealing_curve(surrogate, q_feats, q_pos, h_feats, h_victim, counts)
        for row in curves[detail]:
            row["minutes_at_rate_limit"] = row["queries"] / rate_limit if rate_limit else None
    surrogate.fit(q_feats, first)  # transfer from the surrogate of every query at the first detail level
    n = min(transfer_limit, len(heldout))
    moved = transfer(surrogate, victim, heldout[:n], [a.label for a in held_answers[:n]], transfer_eps)
    examples = moved.pop("_examples")
    p_held = np.array([a.scores[victim.positive] for a in held_answers])
    return {"queries_available": len(queries), "heldout": len(heldout), "rate_limit_per_minute": rate_limit,
            "seconds_per_query": seconds, "chance_agreement": float(max(h_victim.mean(), 1 - h_victim.mean())),
            "heldout_uncertain_share": float(np.mean((p_held > 0.2) & (p_held < 0.8))),
            "curves": curves, "transfer": moved, "transfer_from": list(curves)[0], "_transfer_examples": examples}
