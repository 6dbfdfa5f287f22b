"""What every part of serving shares: the model, the settings, the audit log, the upload registry and the one
prediction call, held in one :class:`ServeContext` instead of being passed one by one.

It also holds the two rules every door applies the same way: which client a request is charged to
(huskyai.serve.limits.clients, behind the trusted proxies the settings name, as a pseudonym of the audit log),
and how a refusal made before any image was read is audited.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from huskyai.audit import AuditLog, model_trust
from huskyai.inference.batching import shared_predict
from huskyai.inference.predictor import Prediction, Predictor
from huskyai.serve.limits.clients import client_address
from huskyai.serve.limits.uploads import UploadRegistry
from huskyai.settings import Settings


@dataclass(frozen=True)
class ServeContext:
    """The serving state of one app. ``predict`` is the app's one prediction call (the shared engine queue when
    ``settings.engine_batch`` is on); ``uploads`` is None where nothing is uploaded (a page built in a test)."""

    model: Predictor
    settings: Settings = field(default_factory=Settings)
    audit: AuditLog = field(default_factory=AuditLog)
    uploads: UploadRegistry | None = None
    predict: Callable[..., Prediction] | None = None

    def __post_init__(self) -> None:
        if self.predict is None:
            object.__setattr__(self, "predict", shared_predict(self.model, self.settings.engine_batch))

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

    def refused(self, client: str, reason: str, source: str = "app") -> None:
        """An audit line for a request refused before any image was read (``client`` is already pseudonymous)."""
        self.audit.record(source=source, client=client, data=None, model_sha256=self.model.model_sha256,
                          trust=model_trust(self.model), latency_ms=0.0, refused=reason)
