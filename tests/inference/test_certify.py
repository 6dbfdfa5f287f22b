"""Certified answers (huskyai.inference.certify, Model.certify): the statistics against scipy, the procedure
against Cohen, Rosenfeld and Kolter's CERTIFY and PREDICT, abstentions where they should be, and the model as
the base classifier (the noise added to [0, 1] pixels, then normalised, decided as to_prediction decides)."""

from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist

import numpy as np
import pytest
from certify_helpers import SIGMA, SIZE, noise_trained_export, photo
from scipy import stats

import huskyai
from huskyai.errors import CertifyError, IntegrityError, NotCertifiableError
from huskyai.inference.certify import (
    ABSTAIN,
    Certificate,
    base_classifier,
    binomial_test_half,
    certify,
    certify_votes,
    clopper_pearson_lower,
    decided_classes,
    floor_to,
    noisy_votes,
    predict_votes,
    smoothed_predict,
)
from huskyai.trust import exports

CLASSES = ["a", "b"]
PIXELS = np.full((1, 2, 2), 0.5, np.float32)  # a 2x2 one-channel "photo": the base classifiers below read it


@pytest.fixture(scope="session")
def robust_export(tmp_path_factory, toy_data):
    return noise_trained_export(tmp_path_factory, toy_data)


def bernoulli(p: float, seed: int = 0):
    """A base classifier that says "a" with probability ``p`` whatever it is shown."""
    rng = np.random.default_rng(seed)
    return lambda batch: np.where(rng.random(len(batch)) < p, 0, 1)


def halfplane(batch: np.ndarray) -> np.ndarray:
    """f(x) = "a" when the first pixel is above 1/2: under N(0, sigma^2 I) it says "a" with probability
    Phi((x0 - 1/2) / sigma), and the smoothed classifier's boundary is the same plane, |x0 - 1/2| away."""
    return np.where(batch[:, 0, 0, 0] > 0.5, 0, 1)


def at_distance(d: float) -> np.ndarray:
    x = PIXELS.copy()
    x[0, 0, 0] = 0.5 + d
    return x


# ---- the statistics, against scipy ------------------------------------------------------------------------------

def test_clopper_pearson_lower_bound_is_scipys_beta_quantile_over_many_cases():
    rng = np.random.default_rng(0)
    cases = 0
    for n in (1, 2, 3, 7, 10, 50, 100, 101, 999, 1000, 10_000, 100_000, 1_000_000):
        ks = {0, 1, n // 2, n - 1, n, int(0.9 * n), int(0.99 * n), *rng.integers(0, n + 1, 4).tolist()}
        for k in sorted(k for k in ks if 0 <= k <= n):
            for alpha in (1e-6, 1e-3, 0.01, 0.05, 0.2, 0.49):
                expected = 0.0 if k == 0 else stats.beta.ppf(alpha, k, n - k + 1)
                assert clopper_pearson_lower(k, n, alpha) == pytest.approx(expected, rel=1e-8, abs=1e-14), \
                    (k, n, alpha)
                cases += 1
    assert cases > 500


def test_clopper_pearson_closed_forms_and_bounds():
    assert clopper_pearson_lower(10, 10, 0.001) == pytest.approx(0.001 ** (1 / 10), rel=1e-12)  # p^n = alpha
    assert clopper_pearson_lower(0, 10, 0.001) == 0.0
    assert clopper_pearson_lower(1000, 1000, 0.001) < 1.0
    with pytest.raises(ValueError):
        clopper_pearson_lower(11, 10, 0.001)
    with pytest.raises(ValueError):
        clopper_pearson_lower(5, 10, 0.0)


def test_the_bound_covers_the_true_probability_at_least_1_minus_alpha_of_the_time():
    rng = np.random.default_rng(1)
    alpha, trials = 0.05, 600
    for p, n in ((0.7, 100), (0.95, 500), (0.5, 30)):
        above = sum(clopper_pearson_lower(int(k), n, alpha) > p for k in rng.binomial(n, p, trials))
        assert above / trials <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials), (p, n, above)


def test_binomial_test_is_scipys_two_sided_binomtest():
    for k, n in ((5, 10), (0, 10), (10, 10), (60, 100), (520, 1000), (7, 9), (1, 1), (5000, 9990)):
        assert binomial_test_half(k, n) == pytest.approx(stats.binomtest(k, n, 0.5).pvalue, rel=1e-9)


# ---- CERTIFY and PREDICT, against the paper -----------------------------------------------------------------

def test_certify_answers_the_papers_radius_for_a_base_classifier_of_known_probability():
    sigma, n, alpha = 0.25, 1000, 0.001
    cert = certify_votes(bernoulli(0.9), PIXELS, sigma, CLASSES, n0=100, n=n, alpha=alpha,
                         rng=np.random.default_rng(0))
    k = cert.counts["a"]
    assert cert.label == "a" and cert.guess == "a" and sum(cert.counts.values()) == n
    assert cert.p_lower == pytest.approx(stats.beta.ppf(alpha, k, n - k + 1), rel=1e-8)
    assert cert.radius == pytest.approx(sigma * stats.norm.ppf(cert.p_lower), rel=1e-9)
    assert cert.radius == sigma * NormalDist().inv_cdf(cert.p_lower)
    assert 0.2 < cert.radius < sigma * NormalDist().inv_cdf(0.9)  # pA_lower sits below the true 0.9
    assert (cert.sigma, cert.n0, cert.n, cert.alpha) == (sigma, 100, n, alpha)


def test_selection_and_estimation_samples_are_separate():
    """CERTIFY guesses cA from the n0 selection samples only, and bounds it from the n estimation samples only:
    a base classifier that says "a" for the first n0 copies and "b" after certifies nothing (the guess "a"
    has no estimation votes), where pooling the samples, or guessing from the estimation, would certify."""
    seen = []

    def first_a_then_b(batch):
        start = sum(seen)
        seen.append(len(batch))
        return np.where(np.arange(start, start + len(batch)) < 100, 0, 1)

    cert = certify_votes(first_a_then_b, PIXELS, 0.25, CLASSES, n0=100, n=1000, batch_size=64)
    assert sum(seen) == 1100 and max(seen) <= 64
    assert cert.guess == "a" and cert.counts == {"a": 0, "b": 1000}
    assert cert.label == ABSTAIN and cert.radius == 0.0 and cert.p_lower == 0.0


def test_votes_split_near_half_abstain():
    for seed in range(5):
        cert = certify_votes(bernoulli(0.5, seed), PIXELS, 0.25, CLASSES, rng=np.random.default_rng(seed))
        assert cert.label == ABSTAIN and not cert.certified and cert.radius == 0.0
        assert cert.describe().startswith("No certified answer: under noise of sigma 0.25 the model's answers were "
                                          "too split to prove either class with 99.9% confidence")
    alternating = certify_votes(lambda b: np.arange(len(b)) % 2, PIXELS, 0.25, CLASSES, n0=10, n=1000)
    assert alternating.counts == {"a": 500, "b": 500} and alternating.label == ABSTAIN


def test_few_samples_at_alpha_0001_abstain_or_certify_a_tiny_radius():
    """Unanimous votes prove little from few samples: pA_lower = alpha^(1/n)."""
    unanimous = lambda batch: np.zeros(len(batch), int)  # noqa: E731
    five = certify_votes(unanimous, PIXELS, 0.25, CLASSES, n0=5, n=5, alpha=0.001)
    assert five.counts == {"a": 5, "b": 0} and five.label == ABSTAIN  # 0.001 ** (1/5) = 0.25 < 1/2
    ten = certify_votes(unanimous, PIXELS, 0.25, CLASSES, n0=5, n=10, alpha=0.001)
    assert ten.label == "a" and ten.radius == pytest.approx(0.25 * NormalDist().inv_cdf(0.001 ** 0.1), rel=1e-9)
    assert ten.radius < 0.001
    assert "certified only within a radius below 0.01" in ten.describe()
    many = certify_votes(unanimous, PIXELS, 0.25, CLASSES, n0=5, n=100_000, alpha=0.001, batch_size=10_000)
    assert many.radius == pytest.approx(0.25 * NormalDist().inv_cdf(0.001 ** 1e-5), rel=1e-9)


def test_the_certified_radius_never_exceeds_the_true_one_and_nothing_inside_it_flips():
    """For the half-plane base classifier the smoothed classifier's exact robust radius is known (the distance
    to the plane, Cohen et al.'s linear case). Every certificate stays within it, comes close to it with many
    samples, and the worst change inside it (straight toward the plane) leaves PREDICT's answer as it was (or
    abstaining), never the other class."""
    sigma, alpha = 0.25, 1e-6
    for i, d in enumerate((0.05, 0.2, 0.4, -0.3)):
        cert = certify_votes(halfplane, at_distance(d), sigma, CLASSES, n0=100, n=20_000, alpha=alpha,
                             batch_size=5000, rng=np.random.default_rng(i))
        assert cert.label == ("a" if d > 0 else "b")
        assert cert.radius <= abs(d), (d, cert.radius)
        assert cert.radius > abs(d) - 0.05, (d, cert.radius)
        moved = at_distance(d - math.copysign(0.99 * cert.radius, d))  # the worst change of norm < radius
        again = predict_votes(halfplane, moved, sigma, CLASSES, n=2000, alpha=0.001, rng=np.random.default_rng(i))
        assert again.label in (cert.label, ABSTAIN)


def test_predict_abstains_on_a_split_and_answers_a_clear_majority():
    split = predict_votes(bernoulli(0.5), PIXELS, 0.25, CLASSES, n=200, alpha=0.001, rng=np.random.default_rng(0))
    assert split.label == ABSTAIN and split.p_value > 0.001
    clear = predict_votes(bernoulli(0.8), PIXELS, 0.25, CLASSES, n=200, alpha=0.001, rng=np.random.default_rng(0))
    assert clear.label == "a"
    assert clear.p_value == pytest.approx(stats.binomtest(clear.counts["a"], 200, 0.5).pvalue, rel=1e-9)


def test_noise_is_gaussian_of_sigma_around_the_pixels_and_seedable():
    shown = []

    def record(batch):
        shown.append(batch.copy())
        return np.zeros(len(batch), int)

    noisy_votes(record, PIXELS, 0.3, 20_000, 2, np.random.default_rng(7), batch_size=5000)
    noise = np.concatenate(shown) - PIXELS
    assert noise.shape == (20_000, 1, 2, 2) and noise.dtype == np.float32
    assert abs(noise.mean()) < 0.01 and noise.std() == pytest.approx(0.3, rel=0.01)
    again = []
    noisy_votes(lambda b: again.append(b.copy()) or np.zeros(len(b), int), PIXELS, 0.3, 20_000, 2,
                np.random.default_rng(7), batch_size=5000)
    assert np.array_equal(np.concatenate(again), np.concatenate(shown))


@pytest.mark.parametrize("bad", [dict(n=0), dict(n0=0), dict(alpha=0.0), dict(alpha=0.5), dict(sigma=0.0),
                                 dict(sigma=float("nan")), dict(batch_size=0), dict(n=2.5)])
def test_a_request_the_procedure_cannot_honour_is_one_clear_error(bad):
    arguments = dict(sigma=0.25, n0=10, n=10, alpha=0.001, batch_size=10) | bad
    with pytest.raises(CertifyError):
        certify_votes(bernoulli(1.0), PIXELS, arguments.pop("sigma"), CLASSES, **arguments)


# ---- what a person reads --------------------------------------------------------------------------------------

def certificate(label: str, radius: float, **kwargs) -> Certificate:
    fields = dict(sigma=0.25, n0=100, n=1000, alpha=0.001, p_lower=0.9, counts={"not_husky": 50, "husky": 950},
                  seconds=1.0, guess="husky", input_size=288, positive="husky") | kwargs
    return Certificate(label, radius, **fields)


def test_describe_says_the_answer_and_never_shows_more_radius_than_proven():
    said = certificate("husky", 0.3199).describe()
    assert said.startswith("Husky, certified within radius 0.31 (no change of at most 0.31 in L2 to this photo flips "
                           "it).")
    assert "288x288 crop the model sees, each pixel value in [0, 1]" in said and "99.9% confidence" in said
    assert certificate("not_husky", 0.5).describe().startswith("Not a husky, certified within radius 0.50")
    assert certificate(ABSTAIN, 0.0).describe().startswith("No certified answer")
    assert floor_to(0.3199) == 0.31 and floor_to(0.31) == 0.31 and floor_to(0.009) == 0.0


def test_a_certificate_is_audited_as_its_label_and_its_vote_shares():
    told = certificate("husky", 0.3).prediction()
    assert (told.label, told.positive_probability, told.scores) == ("husky", 0.95, {"not_husky": 0.05, "husky": 0.95})
    assert certificate(ABSTAIN, 0.0).prediction().label == ABSTAIN


# ---- the model as the base classifier ---------------------------------------------------------------------------

def test_the_base_classifier_decides_exactly_as_to_prediction(shipped):
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.random(200), [shipped.threshold, np.nextafter(np.float32(shipped.threshold), 0)]])
    positive = shipped.classes.index(shipped.positive)
    probs = np.zeros((len(p), 2), np.float32)
    probs[:, positive], probs[:, 1 - positive] = p, 1 - p
    decided = [shipped.classes[i] for i in decided_classes(shipped, probs)]
    assert decided == [shipped.to_prediction(row).label for row in probs]


def test_noise_is_added_to_unit_pixels_then_normalised_and_run_through_the_engine(shipped):
    """The votes equal a computation written out here: pixels in [0, 1] at the card's size, plus sigma times
    the seed's normal draws, normalised with the card's mean and std, decided by to_prediction."""
    x = shipped.preprocessing.pixels(huskyai.images.decode.load_image(photo("chelsea")))
    sigma, n = 0.5, 6
    votes = noisy_votes(base_classifier(shipped), x, sigma, n, 2, np.random.default_rng(3), batch_size=4)
    draws = np.random.default_rng(3)
    noisy = [x + np.float32(sigma) * draws.standard_normal((k, *x.shape), dtype=np.float32) for k in (4, 2)]
    labels = [shipped.to_prediction(row).label for row in shipped.probabilities(
        shipped.preprocessing.normalise(np.concatenate(noisy)))]
    assert {c: int(v) for c, v in zip(shipped.classes, votes)} == {c: labels.count(c) for c in shipped.classes}


def test_tiny_noise_certifies_the_plain_answer_with_a_radius_in_unit_pixels(shipped):
    """With sigma far below a pixel step every noisy copy gets the photo's own answer: CERTIFY returns it, with
    radius sigma * Phi^-1(alpha^(1/n)), from a seed that repeats it exactly."""
    data = photo("coffee")
    plain = shipped.predict(data)
    cert = certify(shipped, data, sigma=1e-4, n0=5, n=20, alpha=0.01, batch_size=8, seed=1)
    assert cert.label == plain.label and cert.counts[plain.label] == 20 and cert.input_size == shipped.size
    assert cert.radius == pytest.approx(1e-4 * NormalDist().inv_cdf(0.01 ** (1 / 20)), rel=1e-9)
    assert certify(shipped, data, sigma=1e-4, n0=5, n=20, alpha=0.01, batch_size=8, seed=1).counts == cert.counts


def test_a_model_not_trained_under_noise_cannot_certify(shipped):
    with pytest.raises(NotCertifiableError, match=r'load the noise-trained model, huskyai.load\("robust"\)'):
        shipped.certify(photo())
    assert shipped.noise_sigma is None


def test_robust_is_a_shipped_name_with_its_own_pin(monkeypatch, tmp_path):
    assert "robust" in huskyai.available_models() and huskyai.available_models()[0] == "husky"
    monkeypatch.setitem(exports.SHIPPED_FOLDERS, "robust", tmp_path / "export-robust")
    with pytest.raises(IntegrityError, match=r'the noise-trained model \("robust"\) is not in this installation'):
        huskyai.load("robust")
    assert exports.resolve("robust") == tmp_path / "export-robust"
    assert exports.pin_env_for_name("robust") == "HUSKYAI_ROBUST_MODEL_SHA256"
    assert exports.pin_env_for_name("husky") == exports.pin_env_for_name("somewhere/else") == "HUSKYAI_MODEL_SHA256"


@pytest.mark.slow  # trains the noise-trained export (about 25 s, once per run)
def test_a_noise_trained_export_certifies_with_its_cards_sigma(robust_export):
    model = huskyai.load(robust_export)
    assert model.noise_sigma == SIGMA and model.size == SIZE
    cert = model.certify(photo("coffee"), n=200, n0=50, seed=0)
    assert cert.sigma == SIGMA and (cert.n, cert.n0, cert.alpha) == (200, 50, 0.001)
    assert sum(cert.counts.values()) == 200 and cert.input_size == SIZE and cert.seconds > 0
    assert cert.label in (*model.classes, ABSTAIN)
    if cert.certified:
        assert cert.radius == pytest.approx(SIGMA * NormalDist().inv_cdf(cert.p_lower))
    again = model.certify(photo("coffee"), n=200, n0=50, seed=0)
    assert dataclasses.replace(again, seconds=cert.seconds) == cert  # the same seed, the same certificate
    assert smoothed_predict(model, photo("coffee"), n=100, seed=0).sigma == SIGMA


@pytest.mark.slow  # trains the noise-trained export (about 25 s, once per run)
def test_robust_loads_by_name_under_its_own_pin_whatever_the_fast_models_pin_says(robust_export, monkeypatch):
    monkeypatch.setitem(exports.SHIPPED_FOLDERS, "robust", robust_export)
    digest = exports.sha256((robust_export / "model.json").read_bytes())
    monkeypatch.setenv("HUSKYAI_MODEL_SHA256", exports.SHIPPED_CARD_SHA256)  # the fast model's pin
    monkeypatch.setenv("HUSKYAI_ROBUST_MODEL_SHA256", digest)
    model = huskyai.load("robust")
    assert model.trust == "card sha256 pinned by the operator" and model.noise_sigma == SIGMA
    monkeypatch.setenv("HUSKYAI_ROBUST_MODEL_SHA256", "0" * 64)
    with pytest.raises(IntegrityError, match="HUSKYAI_ROBUST_MODEL_SHA256"):
        huskyai.load("robust")


@pytest.mark.skipif(not (exports.ROBUST_EXPORT / exports.CARD_NAME).is_file(), reason="export-robust/ is not shipped")
def test_the_shipped_robust_model_is_pinned_in_the_package_and_trained_under_noise():
    assert exports.ROBUST_CARD_SHA256 == exports.sha256((exports.ROBUST_EXPORT / exports.CARD_NAME).read_bytes())
    model = huskyai.load("robust")
    assert model.trust == "the shipped model: its card's sha256 is pinned in the huskyai package"
    assert model.noise_sigma is not None and model.export_dir == exports.ROBUST_EXPORT
