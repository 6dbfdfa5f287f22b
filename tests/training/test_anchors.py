"""The zero-shot anchor in cross-validation reports: the rule itself and the paired difference against it."""

import numpy as np
import pytest


@pytest.mark.slow  # imports torch (the training layer, inside the test so collection does not)
def test_zero_shot_rule_is_husky_or_eskimo_dog_on_top():
    from huskyai.network.net import ESKIMO_DOG, MALAMUTE, SIBERIAN_HUSKY
    from huskyai.training.validation import zero_shot_rule

    logprobs = np.full((4, 1000), -10.0)
    for row, top in enumerate((SIBERIAN_HUSKY, ESKIMO_DOG, MALAMUTE, 3)):
        logprobs[row, top] = -0.1
    assert zero_shot_rule(logprobs).tolist() == [True, True, False, False]


@pytest.mark.slow  # imports torch (the training layer, inside the test so collection does not)
def test_paired_difference_of_a_rule_with_itself_is_exactly_zero_and_a_better_rule_is_above_zero():
    from huskyai.training.validation import paired_difference, summarise

    rng = np.random.default_rng(0)
    truth = rng.random(400) < 0.2
    noisy = truth ^ (rng.random(400) < 0.15)
    better = truth ^ (rng.random(400) < 0.02)
    same = paired_difference(noisy[None], noisy[None], truth)
    assert all(same[k] == {"mean": 0.0, "ci95": [0.0, 0.0]} for k in same)
    diff = paired_difference(better[None], noisy[None], truth)
    assert diff["f1"]["ci95"][0] > 0 and diff["accuracy"]["ci95"][0] > 0
    # the point difference is the difference of the two rules' own metrics
    assert abs(diff["f1"]["mean"] - (summarise(better[None], truth)["f1"]["mean"]
                                     - summarise(noisy[None], truth)["f1"]["mean"])) < 1e-3


@pytest.mark.slow  # imports torch (the training layer, inside the test so collection does not)
def test_cv_report_carries_the_anchor_per_source_beside_the_model():
    from huskyai.training.validation import cv_report

    rng = np.random.default_rng(1)
    truth = rng.random(200) < 0.3
    decisions = np.stack([truth ^ (rng.random(200) < 0.05) for _ in range(3)])
    anchor = truth ^ (rng.random(200) < 0.3)
    sources = ["crops"] * 120 + ["web"] * 80
    report = cv_report(decisions, truth, sources, anchor)
    assert set(report["zero_shot_rule"]) == set(report["minus_zero_shot_rule"]) == {"all", "crops", "web"}
    assert report["zero_shot_rule"]["web"]["n"] == 80
    assert report["minus_zero_shot_rule"]["all"]["f1"]["mean"] > 0
    assert "zero_shot_rule" not in cv_report(decisions, truth, sources)
