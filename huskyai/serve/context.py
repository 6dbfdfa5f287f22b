"""What every part of serving shares: the model, the settings, the audit log, the upload registry, the one
prediction call, the metrics, the readiness and the limits store, held in one :class:`ServeContext` instead of
being passed one by one.

It also holds the rules every door applies the same way: which client a request is charged to
(huskyai.serve.limits.clients, behind the trusted proxies the settings name, as a pseudonym of the audit log),
and how a refusal made before any image was read is recorded (an audit line, and its kind in the metrics).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from huskyai.audit import AuditLog, model_trust
from huskyai.inference.batching import shared_predict
from huskyai.inference.predictor import Prediction, Predictor
from huskyai.serve.health import Readiness
from huskyai.serve.limits.clients import client_address
from huskyai.serve.limits.store import LimitsStore
from huskyai.serve.limits.uploads import UploadRegistry
from huskyai.serve.metrics import ServeMetrics
from huskyai.serve.refusals import Refusal
from huskyai.settings import Settings


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

    def __post_init__(self) -> None:
        if self.predict is None:
            timed = self.metrics.timed_engine(self.model)
            object.__setattr__(self, "predict", shared_predict(timed, self.settings.engine_batch))
        if self.store is None:
            object.__setattr__(self, "store", LimitsStore(self.settings.limits_storage,
                                                          on_change=self.metrics.limits_store_up.set))
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
