"""The audit log: one JSON line per prediction (or heatmap) served by the app or the CLI (repudiation defence).

Each line: UTC time, source, client id (a salted hash of the IP in the app), the image's sha256,
size, format and pixel size, the answer (label, probability) or the refusal, latency, the
model's sha256 and how the model was verified ("trust"). Refusals made before an image is read
(rate limit, requests in flight, body too large, queue full) get a line too, without image fields.
The image itself is never written anywhere.

Path: $HUSKYAI_AUDIT_LOG (default ~/.local/state/huskyai/audit.jsonl; "off" disables it). The file
rotates at $HUSKYAI_AUDIT_MAX_BYTES (default 10 MB), keeping 5 old files. Client ids are salted with
$HUSKYAI_AUDIT_SALT, or with a random salt kept beside the log (mode 600), so the same client gets
the same id across restarts while the log holds no IP address.
"""

from __future__ import annotations

import hashlib
import json
import logging
import logging.handlers
import os
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from .images import describe
from .predictor import Prediction, Predictor


def default_path() -> Path | None:
    value = os.environ.get("HUSKYAI_AUDIT_LOG", "")
    if value.lower() == "off":
        return None
    return Path(value) if value else Path.home() / ".local" / "state" / "huskyai" / "audit.jsonl"


class AuditLog:
    def __init__(self, path: Path | None | str = "default", max_bytes: int | None = None, backups: int = 5):
        self.path = default_path() if path == "default" else (Path(path) if path else None)
        self._logger: logging.Logger | None = None
        self._salt = b""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        max_bytes = max_bytes or int(os.environ.get("HUSKYAI_AUDIT_MAX_BYTES", 10 * 1024 * 1024))
        handler = logging.handlers.RotatingFileHandler(self.path, maxBytes=max_bytes, backupCount=backups,
                                                       encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._logger = logging.getLogger(f"huskyai.audit.{self.path}")
        self._logger.handlers[:] = [handler]
        self._logger.setLevel(logging.INFO)
        self._logger.propagate = False
        self._salt = self._load_salt()

    def _load_salt(self) -> bytes:
        if os.environ.get("HUSKYAI_AUDIT_SALT"):
            return os.environ["HUSKYAI_AUDIT_SALT"].encode()
        salt_file = self.path.with_name(self.path.name + ".salt")
        try:
            return salt_file.read_bytes()
        except FileNotFoundError:
            salt = secrets.token_hex(16).encode()
            fd = os.open(salt_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(salt)
            return salt

    def client_id(self, address: str) -> str:
        """A stable pseudonym for an IP address: linkable across requests, not reversible without the salt."""
        return "ip:" + hashlib.sha256(self._salt + address.encode()).hexdigest()[:16]

    def record(self, *, source: str, client: str, data: bytes | None, model_sha256: str, latency_ms: float,
               prediction: Prediction | None = None, refused: str | None = None, trust: str | None = None) -> dict:
        entry = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "source": source,
            "client": client,
            "image_sha256": hashlib.sha256(data).hexdigest() if data is not None else None,
            "image_bytes": len(data) if data is not None else None,
            **describe(data),
            "label": prediction.label if prediction else None,
            "probability": round(prediction.positive_probability, 6) if prediction else None,
            "refused": refused,
            "latency_ms": round(latency_ms, 2),
            "model_sha256": model_sha256,
            "trust": trust,
        }
        if self._logger:
            self._logger.info(json.dumps(entry, separators=(",", ":")))
        return entry


def audited_predict(model: Predictor, data: bytes, *, name: str, source: str, client: str,
                    log: AuditLog, predict: Callable[..., Prediction] | None = None) -> Prediction:
    """``model.predict`` (or ``predict``, e.g. a shared engine queue's) on encoded image bytes, with one audit
    line whether it answers or refuses."""
    from .images import InvalidImageError

    start = time.perf_counter()
    trust = model_trust(model)
    try:
        prediction = (predict or model.predict)(data, name=name)
    except InvalidImageError as err:
        log.record(source=source, client=client, data=data, model_sha256=model.model_sha256, trust=trust,
                   latency_ms=(time.perf_counter() - start) * 1000, refused=str(err))
        raise
    log.record(source=source, client=client, data=data, model_sha256=model.model_sha256, trust=trust,
               latency_ms=(time.perf_counter() - start) * 1000, prediction=prediction)
    return prediction


def audited_explain(model: Predictor, data: bytes, *, name: str, source: str, client: str, log: AuditLog,
                    method: str = "auto", detail: str = "full"):
    """``huskyai.explain.explain`` on encoded image bytes, audited as one prediction (its own answer), whether
    it answers or refuses. Returns the Explanation."""
    from .explain import explain

    made = []

    def predict(data: bytes, name: str | None = None) -> Prediction:
        made.append(explain(model, data, name, method=method, detail=detail))
        return made[-1].prediction

    audited_predict(model, data, name=name, source=source, client=client, log=log, predict=predict)
    return made[-1]


def model_trust(model: Predictor) -> str:
    """How the model was verified when it was loaded (``Predictor.trust``), in a few words."""
    trust = getattr(model, "trust", None)
    return str(trust) if trust else "verified against its card (no trust level reported)"
