"""How good the trained model is: metrics on the validation set and the holdout, and honest validation of
the head by repeated stratified cross-validation with 95% confidence intervals.

Each repeat splits the photos into folds stratified by label and source; every fold refits the whole
recipe (head, zero-shot stage, threshold by inner CV) on the other folds and decides its own photos.
The point estimate is the mean over repeats; the interval is a percentile bootstrap over photos (a
resampled photo keeps its decisions from every repeat), so it reflects how few huskies there are.
"""

from __future__ import annotations

import numpy as np
from fastprogress.fastprogress import progress_bar

from huskyai.evaluation.metrics import binary_metrics, format_metrics
from huskyai.network.net import ESKIMO_DOG, SIBERIAN_HUSKY
from huskyai.training.head import fit_binary_head

METRICS = ("accuracy", "precision", "recall", "f1")


def _scores(tp, fp, tn, fn) -> dict[str, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {"accuracy": (tp + tn) / (tp + fp + tn + fn), "precision": precision, "recall": recall, "f1": f1}


def summarise(decisions: np.ndarray, truth: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict:
    """Mean over repeats and a 95% bootstrap interval for each metric; ``decisions`` is (repeats, photos)."""
    def counts(d, t):
        return (d & t).sum(-1), (d & ~t).sum(-1), (~d & ~t).sum(-1), (~d & t).sum(-1)

    point = {k: float(v.mean()) for k, v in _scores(*counts(decisions, truth[None])).items()}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(truth), (n_boot, len(truth)))
    boot = _scores(*[c.sum(1) for c in counts(decisions[:, idx].transpose(1, 0, 2), truth[idx][:, None])])
    out = {"n": int(len(truth)), "positives": int(truth.sum())}
    for k in METRICS:
        lo, hi = np.percentile(boot[k], [2.5, 97.5])
        out[k] = {"mean": round(point[k], 4), "ci95": [round(float(lo), 4), round(float(hi), 4)]}
    return out


def paired_difference(a: np.ndarray, b: np.ndarray, truth: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict:
    """Metric of ``a`` minus metric of ``b`` (decisions, (repeats, photos) each, means over repeats) with a 95%
    interval from one bootstrap over photos shared by both: the paired comparison of two rules on the same photos."""
    def scores(d, idx):
        dd, t = d[:, idx].transpose(1, 0, 2), truth[idx][:, None]
        counts = [(dd & t).sum(-1), (dd & ~t).sum(-1), (~dd & ~t).sum(-1), (~dd & t).sum(-1)]
        return {k: v.mean(-1) for k, v in _scores(*counts).items()}

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(truth), (n_boot, len(truth)))
    everything = np.arange(len(truth))[None]
    point_a, point_b, boot_a, boot_b = scores(a, everything), scores(b, everything), scores(a, idx), scores(b, idx)
    out = {}
    for k in METRICS:
        lo, hi = np.percentile(boot_a[k] - boot_b[k], [2.5, 97.5])
        diff = float(point_a[k][0] - point_b[k][0])
        out[k] = {"mean": round(diff, 4), "ci95": [round(float(lo), 4), round(float(hi), 4)]}
    return out


def zero_shot_rule(logprobs: np.ndarray) -> np.ndarray:
    """The backbone's own ImageNet answer, untrained: husky when its top-1 class is Siberian husky or Eskimo dog."""
    return np.isin(logprobs.argmax(1), (ESKIMO_DOG, SIBERIAN_HUSKY))


def cross_validate(x_views: np.ndarray, is_pos: np.ndarray, margins: np.ndarray | None, strata: list[str],
                   repeats: int = 3, folds: int = 5, c: float = 0.01, seed: int = 0) -> np.ndarray:
    """Out-of-fold decisions, (repeats, photos), of the two-class recipe refitted in every fold."""
    from sklearn.model_selection import StratifiedKFold

    decisions = np.zeros((repeats, len(is_pos)), bool)
    splits = [(r, tr, te) for r in range(repeats)
              for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed + r).split(x_views[0], strata)]
    for r, tr, te in progress_bar(splits):
        head = fit_binary_head(x_views[:, tr], is_pos[tr], None if margins is None else margins[tr], c, seed + r)
        decisions[r, te] = head.predict(x_views[0][te], None if margins is None else margins[te])
    return decisions


def cv_report(decisions: np.ndarray, is_pos: np.ndarray, sources: list[str], anchor: np.ndarray | None = None) -> dict:
    """The card's "cv" entry: all photos, and each source separately when there are several; with ``anchor`` (the
    backbone's zero-shot decisions on the same photos) also the anchor's metrics ("zero_shot_rule") and the paired
    differences, model minus anchor ("minus_zero_shot_rule"), per part."""
    parts = {"all": np.ones(len(is_pos), bool)}
    names = sorted(set(sources) - {""})
    if len(names) > 1:
        parts |= {name: np.array([s == name for s in sources]) for name in names}
    report = {name: summarise(decisions[:, mask], is_pos[mask]) for name, mask in parts.items()}
    if anchor is not None:
        fixed = np.broadcast_to(anchor, decisions.shape)
        report["zero_shot_rule"] = {name: summarise(fixed[:, mask], is_pos[mask]) for name, mask in parts.items()}
        report["minus_zero_shot_rule"] = {name: paired_difference(decisions[:, mask], fixed[:, mask], is_pos[mask])
                                          for name, mask in parts.items()}
    return report


def cross_validate_head(learn, x_views: np.ndarray, y: np.ndarray, kept: list, repeats: int, c: float, seed: int,
                        report=print) -> dict:
    """The card's {"cv": ...}: ``repeats`` x 5 folds of the whole head recipe over the training photos,
    stratified by label and source; {} for more than two classes."""
    from huskyai.training.head import margins

    model, items = learn.model, learn.dls.train.items
    if len(model.head.bias) != 2:
        return {}
    source = {str(s.path): s.source for s in kept}
    sources = [source.get(path, "") for path, _ in items]
    strata = [f"{label}|{src}" for (_, label), src in zip(items, sources)]
    is_pos = y == len(learn.dls.vocab) - 1
    report(f"repeated cross-validation of the head: {repeats} x 5 folds over {len(strata)} training photos")
    decisions = cross_validate(x_views, is_pos, margins(model, x_views[0]) if model.zero_shot else None, strata,
                               repeats=repeats, c=c, seed=seed)
    anchor = None
    if model.backbone.num_classes == 1000:  # an ImageNet head: its zero-shot rule is the anchor to beat
        start = model.backbone.num_features
        anchor = zero_shot_rule(x_views[0][:, start:start + 1000])
    result = cv_report(decisions, is_pos, sources, anchor)
    for group, prefix in ((result, "cv"), (result.get("zero_shot_rule", {}), "zero-shot rule"),
                          (result.get("minus_zero_shot_rule", {}), "cv minus zero-shot rule")):
        for name, m in group.items():
            if isinstance(m, dict) and "f1" in m:
                report(f"{prefix} {name}: " + ", ".join(
                    f"{k} {m[k]['mean']:+.3f} [{m[k]['ci95'][0]:+.3f}, {m[k]['ci95'][1]:+.3f}]" if "minus" in prefix
                    else f"{k} {m[k]['mean']:.3f} [{m[k]['ci95'][0]:.3f}, {m[k]['ci95'][1]:.3f}]" for k in METRICS))
    return {"cv": result | {"repeats": repeats, "folds": 5}}


def _metrics_for(probs: np.ndarray, labels: list[str], classes: list[str]) -> dict:
    positive = len(classes) - 1
    return binary_metrics([lab == classes[positive] for lab in labels], list(probs.argmax(1) == positive))


def validate(learn, held: list, report=print) -> tuple[np.ndarray, dict]:
    """(validation probabilities, {"validation": metrics[, "holdout": metrics]}) of the trained Learner."""
    classes = list(learn.dls.vocab)
    valid_probs = learn.get_preds(dl=learn.dls.valid.new(shuffle=False, drop_last=False))[0].numpy()
    metrics = {"validation": _metrics_for(valid_probs, [label for _, label in learn.dls.valid.items], classes)}
    report("validation: " + format_metrics(metrics["validation"]))
    if held:
        dl = learn.dls.test_dl([[str(s.path), s.label] for s in held], with_labels=True)
        metrics["holdout"] = _metrics_for(learn.get_preds(dl=dl)[0].numpy(), [s.label for s in held], classes)
        report("holdout:    " + format_metrics(metrics["holdout"]))
    return valid_probs, metrics
