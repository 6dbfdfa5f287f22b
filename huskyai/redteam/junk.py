"""Junk images: the brute-force attack of the original Husky AI, which called a plain white image a husky."""

from __future__ import annotations

from huskyai.training.junk import KINDS, junk_images


def junk_attack(model, n: int = 1000, seed: int = 0) -> dict:
    """The false-husky rate on ``n`` junk images, per kind, with the worst offenders."""
    images = junk_images(n, seed)
    preds = model.predict_batch([img for _, img in images])
    scored = sorted(((p.positive_probability, kind, i) for i, ((kind, _), p) in enumerate(zip(images, preds))),
                    reverse=True)
    per_kind = {}
    for kind in KINDS:
        probs = [p.positive_probability for (k, _), p in zip(images, preds) if k == kind]
        per_kind[kind] = {"n": len(probs), "called_positive": sum(p.label == model.positive
                                                                  for (k, _), p in zip(images, preds) if k == kind),
                          "max_probability": max(probs) if probs else 0.0}
    positives = sum(p.label == model.positive for p in preds)
    return {
        "n": n, "seed": seed, "called_positive": positives, "false_positive_rate": positives / n,
        "per_kind": per_kind,
        "worst": [{"index": i, "kind": k, "probability": round(p, 6)} for p, k, i in scored[:9]],
        "_images": images,
    }
