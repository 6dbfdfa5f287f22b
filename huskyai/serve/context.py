"""What every part of serving shares: the model, the settings, the audit log, the upload registry, the one
prediction call, the metrics, the readiness and the limits store, held in one :class:`ServeContext` instead of
being passed one by one.

It also holds the rules every door applies the same way: which client a request is charged to
(huskyai.serve.limits.clients, behind the trusted proxies the settings name, as a pseudonym of the audit log),
and how a refusal made before any image was read is recorded (an audit line, and its kind in the metrics).

Certified answers (huskyai.inference.certify) come from the optional noise-trained model, ``robust``, loaded in
the background at start-up (huskyai.serve.startup) from ``settings.robust_model``. Both doors that certify (the
lean route's ?certify=1 and the page's opt-in) go through :meth:`ServeContext.certify`: the server's own number
of samples, one certification at a time (each keeps every core busy for seconds), and one audit line; and both
charge the same per-client budget, ``certify_limiter``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from huskyai.api import Model
from huskyai.audit import AuditLog, audited_predict, model_trust
from huskyai.inference.batching import shared_predict
from huskyai.inference.certify import DEFAULT_N0, Certificate
from huskyai.inference.predictor import Prediction, Predictor
from huskyai.serve.health import Readiness
from huskyai.serve.limits.clients import client_address
from huskyai.serve.limits.ratelimit import RateLimiter
from huskyai.serve.limits.store import LimitsStore
from huskyai.serve.limits.uploads import UploadRegistry
from huskyai.serve.metrics import ServeMetrics
from huskyai.serve.refusals import Refusal
from huskyai.serve.startup import BackgroundModel, robust_in_background
from huskyai.settings import Settings

CERTIFY_WAIT = 120.0  # seconds a certification waits for the one before it, before it is turned away as busy
NO_CERTIFIED_ANSWERS = ("This server gives no certified answers: it has no model trained under noise "
                        "(the shipped export-robust/, or HUSKYAI_ROBUST_MODEL).")
CERTIFIER_LOADING = "Certified answers are starting: the noise-trained model is still being loaded and verified."


class CertifyBusy(Exception):
    """Another certification kept the engine for longer than CERTIFY_WAIT: ask again later."""


@dataclass(frozen=True)
class ServeContext:
    """The serving state of one app. ``predict`` is the app's one prediction call (the shared engine queue when
    ``settings.engine_batch`` is on, its engine calls timed into the metrics); ``uploads`` is None where nothing
    is uploaded (a page built in a test); ``store`` holds every per-client budget (made from
    ``settings.limits_storage`` when not given)."""

    model: Predictor
    settings: Settings = field(default_factory=Settings)
    audit: AuditLog = field(default_factory=AuditLog)
    uploads: UploadRegistry | None = None
    predict: Callable[..., Prediction] | None = None
    metrics: ServeMetrics = field(default_factory=ServeMetrics)
    readiness: Readiness = field(default_factory=lambda: Readiness("the page's server is not started"))
    store: LimitsStore | None = None
    # the model that certifies (None: no certified answers); made from settings.robust_model when not given
    robust: BackgroundModel | None = None
    certify_limiter: RateLimiter = field(init=False, repr=False)
    _certifying: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.predict is None:
            timed = self.metrics.timed_engine(self.model)
            object.__setattr__(self, "predict", shared_predict(timed, self.settings.engine_batch))
        if self.store is None:
            object.__setattr__(self, "store", LimitsStore(self.settings.limits_storage,
                                                          on_change=self.metrics.limits_store_up.set))
        if self.robust is None and isinstance(self.model, Model):
            object.__setattr__(self, "robust", robust_in_background(self.settings, self.model))
        object.__setattr__(self, "certify_limiter", RateLimiter(self.settings.certify_rate_limit, self.store,
                                                                name="certifications"))
        self.metrics.describe_model(self.model)
        self.metrics.ready.set_function(lambda: 1.0 if self.readiness.ready else 0.0)
        if self.uploads is not None:
            self.metrics.watch(uploads=self.uploads)

    def address(self, peer: str | None, forwarded_for: Iterable[str]) -> str:
        """The address a request is charged to (the key of every per-client budget)."""
        return client_address(peer, forwarded_for, self.settings.trusted_proxy_hops)

    def request_address(self, request: Any) -> str:
        """The address of a gradio or starlette request (anything with ``headers`` and ``client``)."""
        if request is None:
            return "unknown"
        headers = request.headers
        forwarded = headers.getlist("x-forwarded-for") if hasattr(headers, "getlist") else \
            [headers.get("x-forwarded-for") or ""]
        return self.address(request.client.host if request.client else None, forwarded)

    def client(self, request: Any) -> str:
        """The pseudonymous client of a request, as the audit log names it."""
        return self.audit.client_id(self.request_address(request))

    def refused(self, client: str, kind: Refusal, reason: str, source: str = "app") -> None:
        """A refusal made before any image was read: an audit line with ``reason`` (``client`` is already
        pseudonymous), and one more of ``kind`` in the metrics."""
        self.metrics.refused(kind)
        self.audit.record(source=source, client=client, data=None, model_sha256=self.model.model_sha256,
                          trust=model_trust(self.model), latency_ms=0.0, refused=reason)

    # ---- certified answers ----------------------------------------------------------------------------------

    def certifier(self) -> Model | None:
        """The loaded noise-trained model, or None (none, still loading, or refused)."""
        return self.robust.get() if self.robust is not None else None

    def certify_unavailable(self) -> tuple[str, bool] | None:
        """Why no certified answer can be given now, and whether it is worth asking again soon; None when one can."""
        if self.certifier() is not None:
            return None
        if self.robust is not None and self.robust.loading:
            return CERTIFIER_LOADING, True
        problem = self.robust.problem if self.robust is not None else None
        if problem:
            return f"This server gives no certified answers: its noise-trained model was refused ({problem})", False
        return NO_CERTIFIED_ANSWERS, False

    def estimated_certify_seconds(self) -> float | None:
        """About how long one certified answer takes here (measured when the model was warmed up), else None."""
        per_sample = self.robust.seconds_per_sample if self.robust is not None else None
        if per_sample is None:
            return None
        return per_sample * (DEFAULT_N0 + self.settings.certify_n)

    def certify(self, data: bytes, *, name: str, source: str, client: str) -> Certificate:
        """The certified answer for a photo's bytes, with ``settings.certify_n`` samples, one certification at a
        time in this process, audited as one line of ``source`` (its label, or "abstain"). InvalidImageError
        for an unreadable photo (audited), CertifyBusy when the engine stayed busy for CERTIFY_WAIT seconds."""
        model = self.certifier()
        if model is None:
            raise RuntimeError("certify() needs the noise-trained model: check certify_unavailable() first")
        made: list[Certificate] = []

        def certified(data: bytes, name: str | None = None) -> Prediction:
            made.append(model.certify(data, n=self.settings.certify_n, name=name))
            return made[-1].prediction()

        if not self._certifying.acquire(timeout=CERTIFY_WAIT):
            raise CertifyBusy("the server is busy with other certified answers; try again in a minute")
        try:
            audited_predict(model, data, name=name, source=source, client=client, log=self.audit, predict=certified)
        finally:
            self._certifying.release()
        return made[-1]
