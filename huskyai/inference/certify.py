"""Certified answers by randomized smoothing (Cohen, Rosenfeld and Kolter, 2019): CERTIFY and PREDICT.

The smoothed classifier g answers, for a photo x, the class the base classifier f decides most often on
x + N(0, sigma^2 I). Here f is the export's own decision (the class :meth:`Predictor.to_prediction` decides
against the card's threshold) and x is the photo as the network sees it before normalising: the centre crop
resized to the card's input size, as pixels in [0, 1] (huskyai.inference.preprocess ``crop_resize`` then
``to_unit``). The noise is added there, without clipping (as in the paper), and each noisy copy is then
normalised with the card's mean and std and run through the model's engine (ONNX Runtime), in batches.

CERTIFY draws ``n0`` noisy copies to guess the top class cA, then ``n`` fresh ones to count cA's votes;
pA_lower is the one-sided Clopper-Pearson lower bound at level 1 - alpha on cA's share of those ``n``. If
pA_lower < 1/2 it abstains; otherwise g(x + d) = cA for every d with ||d||_2 < sigma * Phi^-1(pA_lower), with
probability at least 1 - alpha over the noise drawn (Cohen et al., Theorem 1 and Proposition 2). The radius
is an L2 norm in [0, 1] pixel units at the model's input size (``input_size`` x ``input_size`` x 3 values): a
change to the original photo is covered when what it does to that resized 8-bit crop is within the radius.
Cropping only drops pixels, and bilinear downscaling averages them, but the crop is rounded to 8 bits after
resizing, which can move each value by up to 1/255 whatever the change was; so no radius in the original
photo's own pixels is claimed.

PREDICT (:func:`smoothed_predict`) answers g's class without a radius: cA when a two-sided binomial test at
1/2 of the top two counts rejects at ``alpha``, else abstain (its answer differs from g's with probability at
most alpha).

The statistics need no scipy: the Clopper-Pearson bound solves I_p(k, n - k + 1) = alpha for p by bisection,
with the regularised incomplete beta function I from its continued fraction (Lentz's method) in log space,
and Phi^-1 is :class:`statistics.NormalDist`'s. Only numpy and the standard library here: serving never
imports torch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from huskyai.errors import CertifyError, NotCertifiableError
from huskyai.images.decode import ImageInput, load_image
from huskyai.inference.predictor import Prediction, Predictor

ABSTAIN = "abstain"
DEFAULT_N0 = 100  # selection samples (Cohen et al.'s choice)
DEFAULT_N = 1000
DEFAULT_ALPHA = 0.001
DEFAULT_BATCH = 100  # noisy copies per engine call: at 288 px a batch of 100 is 100 MB of float32
SIGMA_KEY = "noise_sigma"  # the card's key: the noise the network was trained under, pixels in [0, 1]
_NORMAL = NormalDist()

# a function that decides a class index for each row of an NCHW float32 batch of noisy [0, 1] pixels
Decide = Callable[[np.ndarray], np.ndarray]


# ---- the statistics -----------------------------------------------------------------------------------------

_TINY = 1e-300
_EPS = 1e-15


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (Lentz's method, as in Numerical Recipes'
    ``betacf``); it converges fast for x < (a + 1) / (a + b + 2), in O(sqrt(max(a, b))) steps."""
    max_steps = 1000 + int(20 * math.sqrt(a + b))
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, max_steps + 1):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _TINY else _TINY
            step = c * d
            h *= step
        if abs(step - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"the incomplete beta function's continued fraction did not converge (a={a}, b={b}, "
                          f"x={x})")


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the regularised incomplete beta function (the beta distribution's CDF), for a, b > 0."""
    if a <= 0 or b <= 0:
        raise ValueError(f"I_x(a, b) needs a, b > 0 (got a={a}, b={b})")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def binomial_upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): I_p(k, n - k + 1) for 0 < k <= n."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return regularized_beta(p, k, n - k + 1)


def _check_counts(k: int, n: int) -> None:
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1 (got k={k}, n={n})")


def clopper_pearson_lower(k: int, n: int, alpha: float) -> float:
    """The one-sided Clopper-Pearson lower confidence bound, at level 1 - ``alpha``, on p from ``k`` successes in
    ``n`` trials: the p at which P(X >= k) = alpha, i.e. the beta distribution's alpha quantile
    Beta(k, n - k + 1) (0 for k = 0). Found by bisection down to the floats' resolution, and the lower end of
    the last bracket is returned, so the bound errs on the low side (never above the exact one)."""
    _check_counts(k, n)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if k == 0:
        return 0.0
    lo, hi = 0.0, 1.0  # P(X >= k) rises with p: <= alpha at lo, > alpha at hi
    while True:
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            return lo
        if binomial_upper_tail(k, n, mid) <= alpha:
            lo = mid
        else:
            hi = mid


def binomial_test_half(k: int, n: int) -> float:
    """The two-sided p-value of ``k`` successes in ``n`` trials against p = 1/2 (as scipy's ``binomtest``): twice
    the tail of the larger side, at most 1."""
    _check_counts(k, n)
    return min(1.0, 2.0 * binomial_upper_tail(max(k, n - k), n, 0.5))


def radius_for(p_lower: float, sigma: float) -> float:
    """Cohen et al.'s certified L2 radius sigma * Phi^-1(pA_lower), for pA_lower in (1/2, 1)."""
    return sigma * _NORMAL.inv_cdf(p_lower)


# ---- the answers --------------------------------------------------------------------------------------------

def title(label: str, positive: str | None) -> str:
    """A class as a person reads it: "Husky", "Not a husky" (two classes), else the label in words."""
    if positive is not None and label != positive:
        return f"Not a {positive.replace('_', ' ')}"
    return label.replace("_", " ").capitalize()


def floor_to(value: float, places: int = 2) -> float:
    """``value`` rounded down to ``places`` decimals: a radius shown must never exceed the one proven."""
    scale = 10 ** places
    return math.floor(value * scale) / scale


@dataclass(frozen=True)
class Certificate:
    """A certified answer: ``label`` (or "abstain") and its L2 ``radius`` (0 when abstaining), in [0, 1] pixel units
    at ``input_size`` x ``input_size``, proven with probability at least 1 - ``alpha`` over the noise drawn."""
    label: str  # the certified class, or ABSTAIN
    radius: float  # sigma * Phi^-1(p_lower); 0.0 when abstaining
    sigma: float  # the Gaussian noise, pixels in [0, 1]
    n0: int  # selection samples
    n: int  # estimation samples
    alpha: float
    p_lower: float  # the Clopper-Pearson lower bound on the guessed class's vote share under noise
    counts: dict[str, int]  # the estimation samples' votes, by class
    seconds: float
    guess: str  # the selection samples' top class (what was certified, or failed to be)
    input_size: int | None = None  # the model's input size: where the radius is measured
    positive: str | None = field(default=None, repr=False)  # the positive class of a two-class model

    @property
    def certified(self) -> bool:
        return self.label != ABSTAIN

    def describe(self) -> str:
        """The answer in words a person understands, with what the radius measures."""
        where = (f"L2 over the {self.input_size}x{self.input_size} crop the model sees, each pixel value in [0, 1]"
                 if self.input_size else "L2 over the model's input pixels, each in [0, 1]")
        confidence = f"{(1 - self.alpha) * 100:.4f}".rstrip("0").rstrip(".") + "%"
        if not self.certified:
            return (f"No certified answer: under noise of sigma {self.sigma:g} the model's answers were too split "
                    f"to prove either class with {confidence} confidence ({self.n} noisy copies).")
        shown = floor_to(self.radius)
        name = title(self.label, self.positive)
        if shown <= 0:
            return (f"{name}, but certified only within a radius below 0.01: a very small change could flip it. "
                    f"The radius is {where}.")
        return (f"{name}, certified within radius {shown:.2f} (no change of at most {shown:.2f} in L2 to this photo "
                f"flips it). The radius is {where}; proven with {confidence} confidence from {self.n} noisy copies.")

    def prediction(self) -> Prediction:
        """The certificate as a Prediction (for the audit log): the label (or "abstain"), and each class's share
        of the estimation votes in place of probabilities."""
        shares = {c: v / self.n for c, v in self.counts.items()}
        positive = self.positive if self.positive is not None else self.guess
        return Prediction(self.label, shares.get(positive, 0.0), shares)


@dataclass(frozen=True)
class SmoothedPrediction:
    """PREDICT's answer: the smoothed classifier's class, or "abstain", wrong with probability at most alpha."""
    label: str
    n: int
    alpha: float
    p_value: float  # the two-sided binomial test of the top two counts at 1/2
    counts: dict[str, int]
    seconds: float
    sigma: float


# ---- sampling -----------------------------------------------------------------------------------------------

def noisy_votes(decide: Decide, pixels: np.ndarray, sigma: float, num: int, n_classes: int,
                rng: np.random.Generator, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """How often ``decide`` picks each class on ``num`` copies of ``pixels`` (CHW float32 in [0, 1]) under
    Gaussian noise of ``sigma``, drawn from ``rng`` in batches of ``batch_size`` (one buffer, reused)."""
    counts = np.zeros(n_classes, np.int64)
    buffer = np.empty((min(batch_size, max(num, 1)), *pixels.shape), np.float32)
    remaining = num
    while remaining > 0:
        batch = buffer[:min(batch_size, remaining)]
        rng.standard_normal(out=batch, dtype=np.float32)
        batch *= np.float32(sigma)
        batch += pixels
        chosen = np.asarray(decide(batch))
        counts += np.bincount(chosen, minlength=n_classes)[:n_classes]
        remaining -= len(batch)
    return counts


def check_arguments(sigma: float, n0: int, n: int, alpha: float, batch_size: int) -> None:
    """CertifyError for a request the procedure cannot honour."""
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise CertifyError(f"sigma must be a positive number, got {sigma!r}")
    for name, value in (("n0", n0), ("n", n), ("batch_size", batch_size)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise CertifyError(f"{name} must be a whole number of at least 1, got {value!r}")
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 0.5):
        raise CertifyError(f"alpha must be between 0 and 0.5, got {alpha!r}")


def certify_votes(decide: Decide, pixels: np.ndarray, sigma: float, classes: list[str], n0: int = DEFAULT_N0,
                  n: int = DEFAULT_N, alpha: float = DEFAULT_ALPHA, batch_size: int = DEFAULT_BATCH,
                  rng: np.random.Generator | None = None, positive: str | None = None) -> Certificate:
    """CERTIFY (Cohen et al., 2019) for the base classifier ``decide`` at ``pixels``: ``n0`` selection samples
    guess cA, ``n`` independent estimation samples bound its probability, and the answer is cA with radius
    sigma * Phi^-1(pA_lower), or "abstain" when pA_lower < 1/2."""
    check_arguments(sigma, n0, n, alpha, batch_size)
    rng = rng if rng is not None else np.random.default_rng()
    start = time.perf_counter()
    selection = noisy_votes(decide, pixels, sigma, n0, len(classes), rng, batch_size)
    guess = int(selection.argmax())
    estimation = noisy_votes(decide, pixels, sigma, n, len(classes), rng, batch_size)
    p_lower = clopper_pearson_lower(int(estimation[guess]), n, alpha)
    certified = p_lower >= 0.5
    return Certificate(
        label=classes[guess] if certified else ABSTAIN,
        radius=radius_for(p_lower, sigma) if certified else 0.0,
        sigma=float(sigma), n0=n0, n=n, alpha=alpha, p_lower=p_lower,
        counts={c: int(v) for c, v in zip(classes, estimation)},
        seconds=time.perf_counter() - start, guess=classes[guess],
        input_size=int(pixels.shape[-1]), positive=positive if len(classes) == 2 else None)


def predict_votes(decide: Decide, pixels: np.ndarray, sigma: float, classes: list[str], n: int = DEFAULT_N,
                  alpha: float = DEFAULT_ALPHA, batch_size: int = DEFAULT_BATCH,
                  rng: np.random.Generator | None = None) -> SmoothedPrediction:
    """PREDICT (Cohen et al., 2019): the top class of ``n`` noisy votes when a two-sided binomial test of the
    top two counts at 1/2 gives a p-value of at most ``alpha``, else "abstain"."""
    check_arguments(sigma, 1, n, alpha, batch_size)
    rng = rng if rng is not None else np.random.default_rng()
    start = time.perf_counter()
    counts = noisy_votes(decide, pixels, sigma, n, len(classes), rng, batch_size)
    top_two = np.argsort(-counts, kind="stable")[:2]
    n_a, n_b = int(counts[top_two[0]]), int(counts[top_two[1]]) if len(top_two) > 1 else 0
    p_value = binomial_test_half(n_a, n_a + n_b)
    return SmoothedPrediction(classes[top_two[0]] if p_value <= alpha else ABSTAIN, n, alpha, p_value,
                              {c: int(v) for c, v in zip(classes, counts)}, time.perf_counter() - start, float(sigma))


# ---- the model as the base classifier -------------------------------------------------------------------------

def decided_classes(model: Predictor, probs: np.ndarray) -> np.ndarray:
    """The class index :meth:`Predictor.to_prediction` decides for each row of probabilities: with two classes the
    positive one when its probability (as a float64, as there) reaches the card's threshold, else the argmax."""
    probs = np.asarray(probs)
    if len(model.classes) == 2:
        positive = model.classes.index(model.positive)
        return np.where(probs[:, positive].astype(np.float64) >= model.threshold, positive, 1 - positive)
    return probs.argmax(axis=1)


def base_classifier(model: Predictor) -> Decide:
    """f: noisy [0, 1] pixels (NCHW float32, normalised in place) -> the model's decided class indices."""
    mean, std = model.preprocessing.mean_array, model.preprocessing.std_array

    def decide(batch: np.ndarray) -> np.ndarray:
        batch -= mean
        batch /= std
        return decided_classes(model, model.probabilities(batch))

    return decide


def card_sigma(card: dict) -> float:
    """The noise the card's network was trained under (``noise_sigma``); NotCertifiableError without one."""
    sigma = card.get(SIGMA_KEY)
    if not isinstance(sigma, (int, float)) or isinstance(sigma, bool) or not sigma > 0:
        raise NotCertifiableError("this model was not trained under noise (its card has no noise_sigma), so its "
                                  "answers cannot be certified: load the noise-trained model, huskyai.load(\"robust\") "
                                  "(or an export trained with noise_sigma=...)")
    return float(sigma)


def photo_pixels(model: Predictor, source: ImageInput, name: str | None = None) -> np.ndarray:
    """The photo as the network sees it before normalising: CHW float32 pixels in [0, 1] at the card's size."""
    return model.preprocessing.pixels(load_image(source, name))


def certify(model: Predictor, source: ImageInput, sigma: float | None = None, n0: int = DEFAULT_N0,
            n: int = DEFAULT_N, alpha: float = DEFAULT_ALPHA, batch_size: int = DEFAULT_BATCH,
            seed: int | None = None, name: str | None = None) -> Certificate:
    """CERTIFY ``source`` (a path, bytes, a PIL image or an HxWx3 uint8 array) with ``model`` as the base
    classifier under noise ``sigma`` (default: the card's noise_sigma). ``seed`` makes it reproducible."""
    sigma = card_sigma(model.card) if sigma is None else sigma
    check_arguments(sigma, n0, n, alpha, batch_size)
    pixels = photo_pixels(model, source, name)
    return certify_votes(base_classifier(model), pixels, sigma, model.classes, n0, n, alpha, batch_size,
                         np.random.default_rng(seed), positive=model.positive)


def smoothed_predict(model: Predictor, source: ImageInput, sigma: float | None = None, n: int = DEFAULT_N,
                     alpha: float = DEFAULT_ALPHA, batch_size: int = DEFAULT_BATCH, seed: int | None = None,
                     name: str | None = None) -> SmoothedPrediction:
    """PREDICT ``source`` with ``model`` under noise ``sigma`` (default: the card's noise_sigma)."""
    sigma = card_sigma(model.card) if sigma is None else sigma
    check_arguments(sigma, 1, n, alpha, batch_size)
    pixels = photo_pixels(model, source, name)
    return predict_votes(base_classifier(model), pixels, sigma, model.classes, n, alpha, batch_size,
                         np.random.default_rng(seed))
