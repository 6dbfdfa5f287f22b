"""Red-team kit, round 2, end to end on the toy model and generated photos: stealing, membership
inference, poisoning (with its detector). Each test has one check that fails if the attack is broken."""

from __future__ import annotations

import json

import numpy as np
import pytest

import huskyai
from conftest import make_toy_dataset
from huskyai.redteam.oracle import PredictorOracle, reveal

MIXED = {"husky": ("chelsea", "coffee"), "not_husky": ("coffee", "chelsea")}  # labels that mean nothing


def test_reveal_cuts_the_answer_to_the_api_detail():
    scores = {"not_husky": 0.1234, "husky": 0.8766}
    assert reveal(scores, "husky", "full") == scores
    assert reveal(scores, "husky", "rounded") == {"not_husky": 0.1, "husky": 0.9}
    assert reveal(scores, "husky", "label") == {"not_husky": 0.0, "husky": 1.0}
    with pytest.raises(ValueError, match="unknown API detail"):
        reveal(scores, "husky", "some")


def _inputs(model, root):
    from huskyai.redteam.photos import image_files, victim_inputs

    return victim_inputs(model, [p for _, p in image_files([root])])


@pytest.fixture(scope="session")
def surrogate(toy_export):
    """One attacker's surrogate for the toy victim's classes: every steal_attack fits its head afresh."""
    from huskyai.redteam.surrogate import Surrogate

    victim = huskyai.load(toy_export, trust_unsigned=True)
    return Surrogate(victim.classes, victim.positive)


@pytest.mark.slow
def test_surrogate_agrees_with_the_toy_victim_and_its_pgd_fools_the_surrogate(toy_export, surrogate, tmp_path):
    from huskyai.redteam.steal import steal_attack

    victim = huskyai.load(toy_export, trust_unsigned=True)
    queries = _inputs(victim, make_toy_dataset(tmp_path / "q", n_per_class=10, seed=21))  # the attacker's photos
    heldout = _inputs(victim, make_toy_dataset(tmp_path / "h", n_per_class=8, seed=22))
    r = steal_attack(PredictorOracle(victim), surrogate, queries, heldout, counts=(6, 20), transfer_limit=6,
                     details=("full", "label"), transfer_eps=(16 / 255,))
    for detail in ("full", "label"):
        best = r["curves"][detail][-1]
        assert best["queries"] == 20
        assert best["agreement"] >= max(0.8, r["chance_agreement"] + 0.2), r["curves"]
    assert [row["eps"] for row in r["transfer"]["rows"]] == [16]
    assert r["transfer"]["rows"][-1]["surrogate_fooled"] >= 0.8, r["transfer"]["rows"]


@pytest.mark.slow
def test_membership_auc_on_an_overfit_toy_model(tmp_path):
    """Labels that mean nothing, a weakly regularised head: the model can only memorise its photos."""
    from huskyai.redteam.membership import losses, membership_scores
    from huskyai.redteam.photos import image_files, label_of
    from huskyai.training.run import train

    members = make_toy_dataset(tmp_path / "members", n_per_class=12, seed=31, classes=MIXED)
    others = make_toy_dataset(tmp_path / "others", n_per_class=12, seed=32, classes=MIXED)
    train(members, tmp_path / "export", report=lambda m: None, size=96, valid_pct=0.1, c=100.0, zero_shot=False,
          sign=False)
    model = huskyai.load(tmp_path / "export", trust_unsigned=True)
    loss = {}
    for name, root in (("members", members), ("others", others)):
        files = image_files([root])
        loss[name] = losses(model, [p for _, p in files], [label_of(k) for k, _ in files])
    r = membership_scores(loss["members"], loss["others"], boots=100)
    assert r["auc"] > 0.6, r


@pytest.mark.slow
def test_poisoned_toy_model_obeys_the_trigger_and_the_detector_finds_the_poison(tmp_path):
    """Head only at 96 px: the dot is a large one (a quarter of the side), which frozen ImageNet features see."""
    from huskyai.redteam.photos import image_files
    from huskyai.redteam.poison import detect_poison, poison_attack, trigger_success

    data = make_toy_dataset(tmp_path / "toy", n_per_class=16, seed=41)
    r = poison_attack([data], tmp_path / "work", fraction=0.5, radius=0.25, size=96, valid_pct=0.2,
                      c=1.0)
    assert r["poisoned_in_training"] >= 4
    model = huskyai.load(tmp_path / "work" / "export", trust_unsigned=True)
    cups = [p for k, p in image_files([make_toy_dataset(tmp_path / "fresh", n_per_class=10, seed=42)])
            if "/not_husky/" in k]
    hit = trigger_success(model, cups, radius=0.25)
    assert hit["called_positive_with_trigger"] >= hit["called_positive_clean"] + 0.5, hit
    found = detect_poison(r["_roots"], r["_poisoned"])
    assert found["precision"] > found["chance_precision"] + 0.2, found


@pytest.mark.slow
def test_attack_steal_and_membership_on_the_command_line(toy_export, tmp_path, capsys):
    """The CLI writes the JSON, Markdown and curve; the toy card lists its held-out photos. In-process: the
    command's exit code and clean process are tested by `attack all` (tests/test_redteam.py)."""
    from huskyai.cli.main import main

    data = make_toy_dataset(tmp_path / "photos", n_per_class=10, seed=51)
    model = ["--model", str(toy_export), "--trust-unsigned", "--data", str(data)]
    # the toy card holds out none of these fresh photos: a clear refusal
    assert main(["attack", "membership", *model, "--out", str(tmp_path / "membership"), "--boots", "20"]) == 2
    assert "held out" in capsys.readouterr().err
    out = tmp_path / "steal"
    assert main(["attack", "steal", *model, "--out", str(out), "--counts", "8", "16", "--transfer-limit", "1",
                 "--query-limit", "2", "--budget", "20"]) == 0, capsys.readouterr().err[-2000:]
    result = json.loads((out / "steal.json").read_text())
    assert set(result["curves"]) == {"full", "rounded", "label"}
    assert set(result["query_attack"]) == {"full", "rounded", "label"}
    assert (out / "steal_curve.png").stat().st_size > 1000 and "Model stealing" in (out / "steal.md").read_text()
    assert np.isfinite(result["curves"]["label"][-1]["agreement"])


@pytest.mark.slow
@pytest.mark.parametrize("detail", ["full", "label"])
def test_steal_through_the_running_app(toy_export, surrogate, tmp_path, detail):
    """The raw-HTTP victim reads the app's answers at each API detail: probabilities, or the label alone."""
    from serve.helpers import served

    from huskyai.redteam.oracle import AppOracle
    from huskyai.redteam.steal import steal_attack

    local = huskyai.load(toy_export, trust_unsigned=True)
    queries = _inputs(local, make_toy_dataset(tmp_path / "q", n_per_class=8, seed=61))
    heldout = _inputs(local, make_toy_dataset(tmp_path / "h", n_per_class=6, seed=62))
    with served(local, tmp_path, api_detail=detail, rate_limit=0) as server:
        victim = AppOracle(server.url, local)
        shown = victim.predict(heldout[0]).scores
        r = steal_attack(victim, surrogate, queries, heldout, counts=(16,), transfer_limit=2,
                         transfer_eps=(8 / 255,))
    assert (set(shown.values()) <= {0.0, 1.0}) == (detail == "label"), shown
    assert victim.queries >= 16 + 12 + 2 * 2  # the queries, the held-out photos, and PGD's and noise's uploads
    assert r["curves"]["app"][-1]["agreement"] >= max(0.75, r["chance_agreement"] + 0.2), r["curves"]


@pytest.mark.slow
def test_hopskipjump_label_only_flips_the_toy_victim(toy_export, tmp_path):
    from huskyai.redteam.hopskipjump import hopskipjump_attack

    victim = PredictorOracle(huskyai.load(toy_export, trust_unsigned=True), "label")
    images = _inputs(victim.predictor, make_toy_dataset(tmp_path / "h", n_per_class=1, seed=71))
    r = hopskipjump_attack(victim, images, max_iter=3, max_eval=50, init_eval=10)
    assert all(run["queries"] > 0 for run in r["runs"])
    assert any(run["fooled"] for run in r["runs"]), r["runs"]


def test_attack_all_records_an_attack_its_budget_cannot_fit_as_skipped(tmp_path):
    """Poisoning retrains the model: with less of the budget left than that takes, it is skipped, saying why."""
    from huskyai.redteam.suite import Clock, _attempt

    ran = []
    r = _attempt("poison", tmp_path, Clock(60), lambda: ran.append(1) or {"rows": []}, needs=600)
    assert not ran and r["skipped"].startswith("it needs about 600 s"), r
    assert json.loads((tmp_path / "poison.json").read_text()) == r
    assert "Skipped: it needs about 600 s" in (tmp_path / "poison.md").read_text()
    assert _attempt("poison", tmp_path, Clock(60), lambda: {"rows": []}, needs=10) == {"rows": []}
