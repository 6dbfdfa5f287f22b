"""Membership inference: does the model give away which photos it was trained on?

A loss-threshold attack (Yeom et al. 2018): a photo whose true label gets an unusually small loss is
guessed a member. Scored by the ROC AUC of -loss over the training photos against the held-out ones
(the model card lists those), and by the advantage over chance (true-positive rate minus false-positive
rate) at a threshold calibrated on one half of the photos and measured on the other, with bootstrap
95% intervals. Written by hand: it is a dozen lines over scikit-learn's ROC, and ART's black-box
attacks need a trained attack model where the threshold needs none.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from huskyai.inference.predictor import Predictor


def losses(model: Predictor, photos: Sequence, labels: Sequence[str]) -> np.ndarray:
    """Cross-entropy of each photo's true label under the model's probabilities."""
    preds = model.predict_batch(photos)
    return np.array([-np.log(max(p.scores[label], 1e-12)) for p, label in zip(preds, labels)])


def _best_threshold(score: np.ndarray, member: np.ndarray) -> tuple[float, float]:
    """The threshold on ``score`` (member if score >= t) with the largest TPR - FPR, and that advantage."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(member, score)
    best = int(np.argmax(tpr - fpr))
    return float(thresholds[best]), float(tpr[best] - fpr[best])


def _calibrated_advantage(score: np.ndarray, member: np.ndarray, rng: np.random.Generator) -> float:
    """TPR - FPR on one random half at the threshold chosen on the other half (and back), averaged."""
    half = np.zeros(len(score), bool)
    for side in (member, ~member):  # each half gets its share of both sides: neither rate is of nothing
        idx = rng.permutation(np.flatnonzero(side))
        half[idx[: len(idx) // 2]] = True
    out = []
    for fit, test in ((half, ~half), (~half, half)):
        t, _ = _best_threshold(score[fit], member[fit])
        hit = score[test] >= t
        out.append(hit[member[test]].mean() - hit[~member[test]].mean())
    return float(np.mean(out))


def membership_scores(loss_members: np.ndarray, loss_others: np.ndarray, boots: int = 500, seed: int = 0) -> dict:
    """AUC and calibrated advantage of the loss-threshold attack, each with a bootstrap 95% interval."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    score = -np.r_[loss_members, loss_others]
    member = np.r_[np.ones(len(loss_members), bool), np.zeros(len(loss_others), bool)]
    idx_m, idx_o = np.flatnonzero(member), np.flatnonzero(~member)
    aucs, advs = [], []
    for _ in range(boots):  # members and others resampled apart: each side keeps its size
        pick = np.r_[rng.choice(idx_m, len(idx_m)), rng.choice(idx_o, len(idx_o))]
        aucs.append(roc_auc_score(member[pick], score[pick]))
        advs.append(_calibrated_advantage(score[pick], member[pick], rng))
    return {"members": len(loss_members), "non_members": len(loss_others),
            "auc": float(roc_auc_score(member, score)), "auc_95": [float(q) for q in np.percentile(aucs, [2.5, 97.5])],
            "advantage": float(np.mean([_calibrated_advantage(score, member, rng) for _ in range(20)])),
            "advantage_95": [float(q) for q in np.percentile(advs, [2.5, 97.5])],
            "advantage_best_threshold": _best_threshold(score, member)[1],
            "mean_loss_members": float(loss_members.mean()), "mean_loss_non_members": float(loss_others.mean())}


def membership_attack(model: Predictor, folders: Sequence[str | Path], boots: int = 500) -> dict:
    """The attack on the photos under ``folders`` (label/file), split into members and non-members by
    the card's list of held-out photos."""
    from huskyai.redteam.photos import held_out, image_files, label_of

    files = [(k, p) for k, p in image_files(folders) if label_of(k) in model.classes]
    out = held_out(model, [k for k, _ in files])
    if not any(out) or all(out):
        raise ValueError("membership needs photos the card lists as held out and photos it trained on; the card "
                         f"lists {len(model.card.get('training', {}).get('holdout_files', []))} held-out files "
                         f"and {sum(out)} of {len(files)} photos here are among them")
    loss = losses(model, [p for _, p in files], [label_of(k) for k, _ in files])
    out = np.array(out)
    return membership_scores(loss[~out], loss[out], boots) | {"_losses": (loss[~out], loss[out])}
