"""The husky head: features of every training photo, a class-balanced logistic regression on them,
out-of-fold scores, the decision threshold, and (for the zero-shot stage) the second-level fit.

Everything is folded into the network's own parameters (standardisation buffers, head, stage2,
threshold in the bias), so fastai's ``learn.predict``, the ONNX graph and the app all agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from fastprogress.fastprogress import progress_bar

from huskyai.evaluation.metrics import binary_metrics
from huskyai.network.net import N_ZERO_SHOT, HuskyNet

ZERO_SHOT_WEIGHT = 10.0  # the zero-shot scores enter 10x larger after standardising: a weaker L2 penalty
THRESHOLDS = np.round(np.arange(0.2, 0.951, 0.025), 3)


@torch.no_grad()
def extract_features(model: HuskyNet, dl, views: int = 2, label: str = "features",
                     noise: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Head-input features and targets for every item of ``dl`` (view 2 = mirrored); ``noise``, a per-channel
    standard deviation in the normalised input, adds Gaussian noise to every view (the noise-trained recipe).

    ``dl`` is a validation-mode DataLoader (``dls.test_dl(items, with_labels=True)``): huskyai.training.dataloaders
    builds it from huskyai.inference.preprocess, so the head is fitted on the very arrays the predictor makes."""
    model.eval()
    feats, targets = [[] for _ in range(views)], []
    print(label, flush=True)
    for xb, yb in progress_bar(dl):
        for v in range(views):
            x = xb.flip(3) if v else xb
            if noise is not None:
                x = x + torch.randn_like(x) * noise.reshape(1, -1, 1, 1)
            feats[v].append(model.features(x).float().numpy())
        targets.append(yb.numpy())
    return np.stack([np.concatenate(f) for f in feats]), np.concatenate(targets)


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, class_weight="balanced", max_iter=3000).fit(x, y)


def standardisation(xs: np.ndarray, zero_shot: bool) -> tuple[np.ndarray, np.ndarray]:
    mean, spread = xs.mean(0), xs.std(0)
    # a feature (nearly) constant over the training photos, e.g. a dead channel, must not be divided by ~0: noise
    # training lets batch-norm revive it, and its tiny std would then blow the logits up
    std = np.maximum(spread, 1e-3 * spread.max()) + 1e-6
    if zero_shot:
        std[-N_ZERO_SHOT:] /= ZERO_SHOT_WEIGHT
    return mean, std


def out_of_fold_scores(x_views: np.ndarray, is_pos: np.ndarray, c: float, seed: int, zero_shot: bool = False,
                       folds: int = 5) -> np.ndarray | None:
    """The head's decision score for each photo (first view) from a fit that never saw it; None when a
    class has fewer than two photos. Each fold fits on every view of its training photos."""
    from sklearn.model_selection import StratifiedKFold

    folds = min(folds, int(is_pos.sum()), int((~is_pos).sum()))
    if folds < 2:
        return None
    oof = np.zeros(len(is_pos))
    for train_idx, test_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x_views[0], is_pos):
        xs = np.concatenate([v[train_idx] for v in x_views])
        mean, std = standardisation(xs, zero_shot)
        clf = fit_logistic((xs - mean) / std, np.tile(is_pos[train_idx], len(x_views)), c)
        oof[test_idx] = clf.decision_function((x_views[0][test_idx] - mean) / std)
    return oof


def best_f1_threshold(probabilities: np.ndarray, is_pos: np.ndarray) -> float:
    """The threshold on P(positive) with the best F1 (ties: the one nearest 0.5)."""
    best, best_f1 = 0.5, -1.0
    for t in THRESHOLDS:
        f1 = binary_metrics(is_pos, probabilities >= t)["f1"]
        if f1 > best_f1 + 1e-9 or (abs(f1 - best_f1) <= 1e-9 and abs(t - 0.5) < abs(best - 0.5)):
            best, best_f1 = float(t), f1
    return best


def margins(model: HuskyNet, x_first_view: np.ndarray) -> np.ndarray:
    """ImageNet's husky margins (see huskyai.network.net) from features as ``extract_features`` returns them."""
    from huskyai.network.net import zero_shot_margins

    start = model.backbone.num_features
    return zero_shot_margins(torch.from_numpy(x_first_view[:, start:start + model.backbone.num_classes])).numpy()


@dataclass
class FittedHead:
    """A fitted head on arrays: standardisation, the logistic head, and the optional zero-shot stage."""
    mean: np.ndarray
    std: np.ndarray
    clf: object
    stage: object | None
    threshold: float

    def decision(self, x: np.ndarray, margins: np.ndarray | None) -> np.ndarray:
        """The positive class's logit, before the threshold."""
        z = self.clf.decision_function((x - self.mean) / self.std)
        return z if self.stage is None else self.stage.decision_function(np.column_stack([z, margins]))

    def predict(self, x: np.ndarray, margins: np.ndarray | None) -> np.ndarray:
        return 1 / (1 + np.exp(-self.decision(x, margins))) >= self.threshold


def fit_binary_head(x_views: np.ndarray, is_pos: np.ndarray, margins: np.ndarray | None, c: float = 0.01,
                    seed: int = 42) -> FittedHead:
    """The two-class recipe on arrays: the head on every view, then (with ``margins``, ImageNet's husky
    margins of the first view) the zero-shot stage on its out-of-fold logits; best-F1 threshold."""
    zero_shot = margins is not None
    xs = np.concatenate(list(x_views))
    mean, std = standardisation(xs, zero_shot)
    clf = fit_logistic((xs - mean) / std, np.tile(is_pos, len(x_views)), c)
    oof = out_of_fold_scores(x_views, is_pos, c, seed, zero_shot)
    stage = None
    if zero_shot:
        z = np.column_stack([oof if oof is not None else clf.decision_function((x_views[0] - mean) / std), margins])
        stage = fit_logistic(z, is_pos, 1.0)
        oof = stage.decision_function(z)
    threshold = 0.5 if oof is None else best_f1_threshold(1 / (1 + np.exp(-oof)), is_pos)
    return FittedHead(mean, std, clf, stage, threshold)


def fit_head(model: HuskyNet, x_views: np.ndarray, y: np.ndarray, n_classes: int, positive: int,
             c: float = 0.01, seed: int = 42, report=print) -> float:
    """Fit the head (and the zero-shot stage) into ``model``; returns the threshold folded into its bias."""
    weight, bias = torch.zeros_like(model.head.weight), torch.zeros_like(model.head.bias)
    if n_classes != 2:
        xs = np.concatenate(list(x_views))
        mean, std = standardisation(xs, False)
        clf = fit_logistic((xs - mean) / std, np.tile(y, len(x_views)), c)
        weight[torch.as_tensor(clf.classes_)] = torch.from_numpy(clf.coef_).float()
        bias[torch.as_tensor(clf.classes_)] = torch.from_numpy(clf.intercept_).float()
        threshold = 0.5
    else:
        fitted = fit_binary_head(x_views, y == positive, margins(model, x_views[0]) if model.zero_shot else None,
                                 c, seed)
        mean, std, threshold = fitted.mean, fitted.std, fitted.threshold
        weight[positive] = torch.from_numpy(fitted.clf.coef_[0])
        bias[positive] = float(fitted.clf.intercept_[0])
        # softmax over [0, z] is sigmoid(z); shifting z by logit(t) moves the 0.5 point to t
        shift = math.log(threshold / (1 - threshold))
        if fitted.stage is not None:
            model.stage2.weight.data.copy_(torch.from_numpy(fitted.stage.coef_).float())
            model.stage2.bias.data.fill_(float(fitted.stage.intercept_[0]) - shift)
        else:
            bias[positive] -= shift
    model.feature_mean.copy_(torch.from_numpy(mean))
    model.feature_std.copy_(torch.from_numpy(std))
    model.head.weight.data.copy_(weight)
    model.head.bias.data.copy_(bias)
    report(f"head fitted by logistic regression on {x_views.shape[0] * x_views.shape[1]} feature vectors"
           + ("; zero-shot stage on its out-of-fold logits" if model.zero_shot else "")
           + f"; cross-validated threshold {threshold:.3f} folded into the bias")
    return threshold
