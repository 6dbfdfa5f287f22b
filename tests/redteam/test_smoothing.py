"""Randomized smoothing from the attacker's side: L2 PGD, the expectation-over-noise attack on the smoothed
classifier, and the honesty checks of certified answers (a photo attacked inside its certified radius never
flips; on the boundary an attack found, CERTIFY abstains), on a real tiny model trained under noise."""

from __future__ import annotations

import json

import numpy as np
import pytest

import huskyai
from conftest import EXPORT, make_toy_dataset

SIGMA = 0.25


@pytest.fixture(scope="session")
def noisy_data(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("noisy_toy"), n_per_class=12, size=96)


@pytest.fixture(scope="session")
def noisy_export(tmp_path_factory, noisy_data):
    """A real noise-trained export (huskyai.train with noise_sigma) at 96 px: about 40 s."""
    out = tmp_path_factory.mktemp("noisy_export")
    huskyai.train(noisy_data, out, report=lambda m: None, size=96, batch_size=6, epochs=3, lr=5e-4,
                  noise_sigma=SIGMA, valid_pct=0.25, cv=0)
    return out


@pytest.fixture(scope="session")
def noisy_model(noisy_export):
    return huskyai.load(noisy_export)


class Linear:
    """Logits linear in the pixels: the L2 optimum of the margin is known in closed form."""

    def __init__(self, seed: int = 0, shape=(3, 8, 8)):
        import torch

        self.w = torch.randn(2, int(np.prod(shape)), generator=torch.Generator().manual_seed(seed))

    def logits(self, x):
        return x.flatten(1) @ self.w.T


def test_l2_pgd_stays_in_its_ball_and_nears_the_linear_optimum():
    """For linear logits the best change of L2 norm eps moves along w_other - w_true and raises the margin by
    eps * |w_other - w_true|_2; PGD must stay within the ball and get most of that (its random start leaves a
    sideways part that each projection only shrinks)."""
    import torch

    from huskyai.redteam.whitebox import margin, pgd

    model = Linear()
    x = torch.full((2, 3, 8, 8), 0.5)  # mid-grey: no clipping to [0, 1] at these radii
    y = torch.tensor([0, 1])
    best = (model.w[1] - model.w[0]).norm()
    for eps in (0.25, 1.0):
        adv = pgd(model, x, y, eps, steps=10, norm="l2")
        assert ((adv - x).flatten(1).norm(dim=1) <= eps + 1e-6).all()
        gain = margin(model.logits(adv), y) - margin(model.logits(x), y)
        assert (gain >= 0.9 * eps * best).all() and (gain <= eps * best + 1e-4).all(), gain / (eps * best)


def test_l2_projection_clips_to_pixels_without_leaving_the_ball():
    import torch

    from huskyai.redteam.whitebox import project

    x = torch.rand((3, 3, 8, 8), generator=torch.Generator().manual_seed(1))
    far = x + 10 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    for eps in (0.1, 0.5, 3.0):
        p = project(far, x, eps, "l2")
        assert ((p - x).flatten(1).norm(dim=1) <= eps + 1e-6).all()
        assert p.min() >= 0 and p.max() <= 1
    with pytest.raises(ValueError, match="unknown norm"):
        project(far, x, 0.1, "l1")


def test_smoothed_logits_are_the_log_mean_softmax_over_the_noise():
    """SmoothedLogits: log of the mean softmax over its draws, the same noise as drawn by hand, with a gradient."""
    import torch

    from huskyai.redteam.smoothing import SmoothedLogits

    model = Linear(seed=3)
    x = torch.rand((2, 3, 8, 8), generator=torch.Generator().manual_seed(4)).requires_grad_(True)
    out = SmoothedLogits(model, sigma=0.5, draws=5, seed=9).logits(x)
    noise = torch.randn((5, 2, 3, 8, 8), generator=torch.Generator().manual_seed(9)) * 0.5
    by_hand = torch.stack([model.logits(x + noise[d]).softmax(1) for d in range(5)]).mean(0).log()
    assert torch.allclose(out, by_hand, atol=1e-5)
    assert torch.allclose(out.exp().sum(1), torch.ones(2), atol=1e-5)
    (grad,) = torch.autograd.grad(out[:, 0].sum(), x)
    assert grad.abs().sum() > 0


@pytest.mark.slow  # trains the noise-trained toy model
def test_l2_pgd_lowers_the_real_networks_margin_inside_its_ball(noisy_model, noisy_data):
    import torch

    from huskyai.inference.certify import photo_pixels
    from huskyai.redteam.whitebox import PixelModel, margin, pgd

    photos = sorted(noisy_data.glob("*/*.jpg"))[::6]
    net = PixelModel(noisy_model)
    x = torch.from_numpy(np.stack([photo_pixels(noisy_model, p) for p in photos]))
    y = torch.tensor([noisy_model.classes.index(p.parent.name) for p in photos])
    with torch.no_grad():
        before = margin(net.logits(x), y)
    for radius in (0.25, 1.0):
        adv = pgd(net, x, y, radius, steps=3, norm="l2")
        assert ((adv - x).flatten(1).norm(dim=1) <= radius + 1e-6).all()
        assert adv.min() >= 0 and adv.max() <= 1
        with torch.no_grad():
            after = margin(net.logits(adv), y)
        assert (after > before).all(), (before, after)


class Halfspace:
    """A linear base classifier f(x) = [w . x + b > 0], whose smoothed classifier is known exactly: it answers
    class 1 where w . x + b > 0 with probability Phi((w . x + b) / (sigma |w|)) under the noise, so a photo at
    distance D from the plane holds its answer for every change shorter than D, and no longer."""

    def __init__(self, x, distance: float, seed: int = 0):
        import torch

        self.w = torch.randn(int(np.prod(x.shape)), generator=torch.Generator().manual_seed(seed))
        self.b = float(distance * self.w.norm() - x.flatten() @ self.w)  # x sits at ``distance`` on the side of 1

    def logits(self, x):  # for the attack: class 1's logit is the signed distance, scaled up (a sure network)
        import torch

        z = 50 * (x.flatten(1) @ self.w + self.b) / self.w.norm()
        return torch.stack([torch.zeros_like(z), z], 1)

    def decide(self, batch: np.ndarray) -> np.ndarray:  # for CERTIFY: the hard decision, in numpy
        return (batch.reshape(len(batch), -1) @ self.w.numpy() + self.b > 0).astype(np.int64)


def test_eot_pgd_on_a_halfspace_flips_beyond_the_distance_and_never_inside_the_certificate():
    """On a smoothed halfspace every number is known: CERTIFY's radius stays below the true distance 0.5,
    EOT-PGD within 0.9 of the radius leaves the answer certified as it was, EOT-PGD at 1.5 times the distance
    crosses the plane and gets the other class certified, and at the plane itself (votes even) CERTIFY abstains."""
    import torch

    from huskyai.inference.certify import ABSTAIN, certify_votes
    from huskyai.redteam.smoothing import SmoothedLogits
    from huskyai.redteam.whitebox import pgd

    x = torch.full((1, 3, 8, 8), 0.5) + 0.1 * torch.rand((1, 3, 8, 8), generator=torch.Generator().manual_seed(1))
    f = Halfspace(x, distance=0.5)
    classes = ["not_husky", "husky"]

    def judge(pixels, n, seed):
        return certify_votes(f.decide, pixels.astype(np.float32), SIGMA, classes, n0=100, n=n,
                             rng=np.random.default_rng(seed))

    cert = judge(x[0].numpy(), 1000, 0)
    assert cert.label == "husky" and 0.3 < cert.radius < 0.5, cert
    smoothed = SmoothedLogits(f, SIGMA, draws=8, seed=2)
    y = torch.tensor([1])
    inside = pgd(smoothed, x, y, 0.9 * cert.radius, steps=10, norm="l2")
    assert (inside - x).norm() <= 0.9 * cert.radius + 1e-6
    assert judge(inside[0].numpy(), 500, 3).label in ("husky", ABSTAIN)
    beyond = pgd(smoothed, x, y, 0.75, steps=10, norm="l2")
    assert judge(beyond[0].numpy(), 500, 4).label == "not_husky"  # 0.25 past the plane: P(husky) = Phi(-1)
    on_plane = x - 0.5 * (f.w / f.w.norm()).reshape(x.shape)
    assert judge(on_plane[0].numpy(), 1000, 5).label == ABSTAIN


def _certified(model, photos, n=500):
    """(photo index, pixels, certificate) of each photo CERTIFY answers (seed: its index)."""
    from huskyai.inference.certify import certify, photo_pixels

    out = []
    for i, p in enumerate(photos):
        cert = certify(model, p, n0=100, n=n, seed=i)
        if cert.certified:
            out.append((i, photo_pixels(model, p), cert))
    return out


@pytest.fixture(scope="session")
def certified_toy(noisy_model, noisy_data):
    return _certified(noisy_model, sorted(noisy_data.glob("*/*.jpg"))[::2])


@pytest.mark.slow  # trains the noise-trained toy model; EOT-PGD on a few photos
def test_certified_photos_attacked_inside_their_radius_never_flip(noisy_model, certified_toy):
    """The certificate's promise against the real network: EOT-PGD against the smoothed classifier within 0.9 of
    each photo's certified radius, then the attacked pixels judged again by CERTIFY. It may abstain (a Monte Carlo
    answer near even does) but must never certify the other class. (The halfspace test shows the same attack
    flipping photos beyond their distance.)"""
    import torch

    from huskyai.inference.certify import ABSTAIN
    from huskyai.redteam.smoothing import SmoothedLogits, certify_at
    from huskyai.redteam.whitebox import PixelModel, pgd

    chosen = sorted(certified_toy, key=lambda item: -item[2].radius)[:4]
    assert len(chosen) >= 3 and chosen[-1][2].radius > 0.05, "too few certified photos for this test to mean much"
    smoothed = SmoothedLogits(PixelModel(noisy_model), SIGMA, draws=8, seed=5)
    for i, pixels, cert in chosen:
        x = torch.from_numpy(pixels[None])
        y = torch.tensor([noisy_model.classes.index(cert.label)])  # attack the certified answer
        inside = pgd(smoothed, x, y, 0.9 * cert.radius, steps=8, seed=i, norm="l2")[0].numpy()
        assert np.linalg.norm(inside - pixels) <= 0.9 * cert.radius + 1e-5
        judged = certify_at(noisy_model, inside, SIGMA, n=500, n0=100, alpha=0.001, batch_size=100, seed=77 + i)
        assert judged.label in (cert.label, ABSTAIN), (i, cert, judged)


@pytest.mark.slow  # trains the noise-trained toy model
def test_certify_abstains_between_photos_certified_as_different_classes(noisy_model, certified_toy):
    """Blend a photo certified as one class into one certified as the other and bisect for the point where the
    smoothed classifier's vote is even: CERTIFY must abstain there, and neither photo's certified radius may
    reach it (nor may the two certificates overlap)."""
    from huskyai.inference.certify import ABSTAIN, base_classifier, noisy_votes
    from huskyai.redteam.smoothing import certify_at

    by_class = {}
    for _, pixels, cert in sorted(certified_toy, key=lambda item: -item[2].radius):
        by_class.setdefault(cert.label, (pixels, cert))
    assert len(by_class) == 2, f"the toy model certified only {list(by_class)}"
    (xa, ca), (xb, cb) = by_class.values()
    a = noisy_model.classes.index(ca.label)
    decide = base_classifier(noisy_model)
    distance = float(np.linalg.norm(xb - xa))
    assert ca.radius + cb.radius < distance

    def share(t: float, seed: int) -> float:
        votes = noisy_votes(decide, xa + t * (xb - xa), SIGMA, 1000, len(noisy_model.classes),
                            np.random.default_rng(seed))
        return votes[a] / votes.sum()

    lo, hi = 0.0, 1.0
    for step in range(14):
        mid = (lo + hi) / 2
        s = share(mid, 10 + step)
        if abs(s - 0.5) < 0.03:
            break
        lo, hi = (mid, hi) if s > 0.5 else (lo, mid)
    assert abs(s - 0.5) < 0.03, f"no even point found between the two photos (last share {s:.2f})"
    judged = certify_at(noisy_model, xa + mid * (xb - xa), SIGMA, n=1000, n0=100, alpha=0.001, batch_size=100,
                             seed=3)
    assert judged.label == ABSTAIN, judged
    assert ca.radius < mid * distance and cb.radius < (1 - mid) * distance, (ca.radius, cb.radius, mid * distance)


@pytest.mark.slow  # trains the noise-trained toy model
def test_perturb_report_gains_the_smoothing_tables(noisy_export, noisy_data, tmp_path):
    """`attack perturb --robust DIR`: certified accuracy by radius and per class, the clean smoothed accuracy,
    EOT-PGD against the smoothed model and PGD against the fast one, the curve, seconds; the command prints the
    headline numbers. A model trained without noise is refused as --robust in one line."""
    from huskyai.cli.main import main

    out = tmp_path / "report"
    code = main(["attack", "perturb", "--data", str(noisy_data), "--out", str(out), "--model", str(noisy_export),
                 "--robust", str(noisy_export), "--limit", "2", "--certify-limit", "4", "--n", "60",
                 "--steps", "1", "--draws", "1", "--judge-n", "30"])
    assert code == 0
    r = json.loads((out / "perturb.json").read_text())
    s = r["smoothing"]
    assert s["certified"]["n_photos"] == 4 and s["certified"]["counts"] == {"not_husky": 2, "husky": 2}
    assert list(s["certified"]["certified_accuracy"]) == ["0", "0.25", "0.5", "1"]
    assert set(s["certified"]["certified_accuracy"]["0"]) == {"all", "husky", "not_husky"}
    columns = ["none", "L2 0.25", "L2 0.5", "L2 1", "Linf 1/255", "Linf 2/255", "Linf 4/255", "Linf 8/255"]
    assert list(s["smoothed_under_attack"]["accuracy"]) == columns
    assert list(s["fast_under_attack"]["accuracy"]) == columns
    assert s["smoothed_under_attack"]["n_photos"] == 2 and s["smoothed_under_attack"]["draws"] == 1
    assert list(s["certified_under_attack"]) == columns
    assert s["flipped_inside_certificates"]["flipped"] == 0
    assert r["noise_sigma"] == SIGMA and 0 <= r["certified_accuracy_r0.5"] <= 1
    md = (out / "perturb.md").read_text()
    for text in ("## Randomized smoothing", "| photos | n | r = 0 | r = 0.25 | r = 0.5 | r = 1 | clean (smoothed) |",
                 "| husky | 2 |", "| smoothed, certified (lower bound), husky |", "| smoothed under EOT-PGD, husky |",
                 "| fast model under PGD, not_husky |", "attacked photos that a certificate covered",
                 "![certified accuracy against radius](smoothing_curve.png)", "image-scaling"):
        assert text in md, text
    assert (out / "smoothing_curve.png").read_bytes()[:4] == b"\x89PNG"

    plain = tmp_path / "plain"
    code = main(["attack", "perturb", "--data", str(noisy_data), "--out", str(plain), "--model", str(noisy_export),
                 "--robust", "none", "--limit", "2", "--steps", "1"])
    assert code == 0 and "smoothing" not in json.loads((plain / "perturb.json").read_text())
    assert "Randomized smoothing" not in (plain / "perturb.md").read_text()


def test_a_model_trained_without_noise_is_refused_as_robust(tmp_path, capsys):
    """--robust names a model with no noise_sigma on its card: one line that says so, before any attack runs."""
    from huskyai.cli.main import main

    data = make_toy_dataset(tmp_path / "data", n_per_class=2, size=48)
    code = main(["attack", "perturb", "--data", str(data), "--out", str(tmp_path / "r"), "--robust", str(EXPORT)])
    assert code != 0
    assert "not trained under noise" in capsys.readouterr().err
    assert not (tmp_path / "r" / "perturb.json").exists()
