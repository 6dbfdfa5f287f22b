"""Binary metrics for the positive class, shared by training reports and `huskyai evaluate`."""

from __future__ import annotations

from collections.abc import Sequence


def binary_metrics(truth: Sequence[bool], predicted: Sequence[bool]) -> dict:
    """n, accuracy, precision, recall, f1 and the confusion counts, positive class = True."""
    pairs = [(bool(t), bool(p)) for t, p in zip(truth, predicted, strict=True)]
    tp = sum(t and p for t, p in pairs)
    fp = sum(p and not t for t, p in pairs)
    fn = sum(t and not p for t, p in pairs)
    tn = len(pairs) - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "n": len(pairs),
        "accuracy": (tp + tn) / len(pairs) if pairs else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "confusion": {"tp": tp, "fp": fp, "tn": tn, "fn": fn},
    }


def format_metrics(m: dict) -> str:
    c = m["confusion"]
    return (f"n={m['n']}  accuracy={m['accuracy']:.3f}  precision={m['precision']:.3f}  "
            f"recall={m['recall']:.3f}  f1={m['f1']:.3f}  (tp={c['tp']} fp={c['fp']} tn={c['tn']} fn={c['fn']})")


def format_evaluation(result: dict) -> str:
    """What `huskyai evaluate` prints: the metrics, by source when there are several, and every error."""
    lines = [format_metrics(result)]
    lines += [f"  {source}: {format_metrics(m)}" for source, m in result.get("by_source", {}).items()]
    lines += [f"  wrong: {e['file']}  truth={e['truth']}  predicted={e['predicted']}  p={e['probability']:.3f}"
              for e in result["errors"]]
    return "\n".join(lines)
