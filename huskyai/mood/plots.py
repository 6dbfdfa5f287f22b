"""The mood model's two PNGs: predicted and actual mood over the validation months, and the importance."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def _figure(size: tuple[float, float]):
    import matplotlib

    matplotlib.use("Agg")  # no display: training runs headless
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size)


def validation_png(dates: pd.DatetimeIndex, actual: np.ndarray, predicted: np.ndarray, winner: str,
                   baseline: np.ndarray, synthetic: bool) -> bytes:
    """Actual mood (dots), the winner's out-of-fold prediction and the 7-day-mean baseline, by date."""
    fig, ax = _figure((10, 3.6))
    ax.plot(dates, actual, "o", ms=3, color="0.35", label="actual mood")
    ax.plot(dates, predicted, "-", lw=1.4, color="tab:blue", label=f"predicted ({winner})")
    ax.plot(dates, baseline, "-", lw=1, color="tab:orange", alpha=0.8, label="mean of the 7 days before")
    ax.set_ylabel("mood")
    ax.set_title("Validation days (each predicted by a model trained only on earlier days)"
                 + (" - SYNTHETIC diary" if synthetic else ""))
    ax.legend(loc="lower left", fontsize=8, ncol=3)
    fig.autofmt_xdate()
    return _png(fig)


def importance_png(importance: list[dict], synthetic: bool) -> bytes:
    """Permutation importance per diary column: how much the validation MAE grows when it is shuffled."""
    rows = importance[::-1]
    fig, ax = _figure((7, 0.28 * len(rows) + 1.2))
    ax.barh([r["feature"] for r in rows], [r["mae_increase"] for r in rows],
            xerr=[r["std"] for r in rows], color="tab:blue", ecolor="0.6")
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_xlabel("validation MAE increase when shuffled (mood points)")
    ax.set_title("What the mood model relies on" + (" (synthetic diary)" if synthetic else ""))
    ax.tick_params(axis="y", labelsize=8)
    return _png(fig)
