"""Pictures of a validation run: the confusion matrix and fastai's top-losses grid."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import matplotlib

matplotlib.use("Agg")  # plots go to files; no display on servers and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from fastai.vision.all import ClassificationInterpretation, Learner  # noqa: E402


def save_confusion_matrix(m: dict, classes: list[str], path: Path | BinaryIO, title: str) -> None:
    c = m["confusion"]
    neg, pos = "not " + classes[-1] if len(classes) > 2 else classes[0], classes[-1]
    grid = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.imshow(grid, cmap="Blues")
    for (i, j), v in np.ndenumerate(grid):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=14,
                color="white" if v > grid.max() / 2 else "black")
    ax.set_xticks([0, 1], [neg, pos])
    ax.set_yticks([0, 1], [neg, pos])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(f"{title}\naccuracy {m['accuracy']:.3f}, precision {m['precision']:.2f}, recall {m['recall']:.2f}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_top_losses(learn: Learner, probs: np.ndarray, path: Path | BinaryIO, k: int = 9) -> None:
    """fastai's top-losses grid (prediction / actual / loss / probability) from validation."""
    dl = learn.dls.valid.new(shuffle=False, drop_last=False)
    targets = torch.tensor([learn.dls.vocab.o2i[label] for _, label in dl.items])
    losses = torch.nn.functional.nll_loss(torch.log(torch.from_numpy(probs).clamp_min(1e-12)), targets,
                                          reduction="none")
    interp = ClassificationInterpretation(learn, dl, losses)
    interp.plot_top_losses(min(k, len(losses)), nrows=3, figsize=(9, 9))
    plt.gcf().savefig(path, dpi=80)
    plt.close("all")
