"""The audit log: one JSON line per prediction (or heatmap) served by the app or the CLI (repudiation defence).

Each line: UTC time, source, client id (a salted hash of the IP in the app), the image's sha256,
size, format and pixel size, the answer (label, probability) or the refusal, latency, the
model's sha256, how the model was verified ("trust"), and which replica of the app wrote it ("replica":
HUSKYAI_REPLICA or HOSTNAME:PORT in the app, null in the CLI), so the logs of replicas behind one proxy can be
merged and still say who answered. Refusals made before an image is read
(rate limit, requests in flight, body too large, queue full) get a line too, without image fields.
The image itself is never written anywhere.

A client must not be able to erase the log by filling it, since rotation drops the oldest file. So:

- every line is at most :data:`LINE_CAP` bytes: each field is bounded, and a line still over the cap
  has its longest text cut (it stays valid JSON and says ``"truncated": true``);
- refusals are summarised per client: the first :data:`REFUSALS_PER_MINUTE` of a client's minute are
  written one by one, the rest are counted and written as one line, "N more refusals from client X this
  minute" (``source`` "audit", ``suppressed`` N), when the minute closes (at the next line after it) or
  at shutdown;
- answers are never summarised: the app's per-client rate limit bounds them.

So one client adds at most (rate limit + REFUSALS_PER_MINUTE + 1) lines of at most LINE_CAP bytes a
minute, and the default rotation (:data:`DEFAULT_MAX_BYTES` x :data:`DEFAULT_BACKUPS` old files) keeps
more than a day of that (docs/security.md has the arithmetic; tests/test_audit_flood.py holds it).

Path: $HUSKYAI_AUDIT_LOG (default ~/.local/state/huskyai/audit.jsonl; "off" disables it). The file
rotates at $HUSKYAI_AUDIT_MAX_BYTES (default 10 MiB), keeping 10 old files. Client ids are salted with
$HUSKYAI_AUDIT_SALT, or with a random salt kept beside the log (mode 600), so the same client gets
the same id across restarts while the log holds no IP address. The three variables are read by
huskyai.settings when an AuditLog is made.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import logging.handlers
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from huskyai import settings
from huskyai.clienttext import one_line
from huskyai.images.decode import describe
from huskyai.inference.predictor import Prediction, Predictor

LINE_CAP = 1024  # bytes of one line, its newline included
REFUSALS_PER_MINUTE = 5  # a client's refusals written one by one in a minute; the rest are counted
WINDOW_SECONDS = 60.0
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 10
MAX_OPEN_WINDOWS = 100_000  # clients with a minute of refusals open at once; beyond, the oldest is closed early
# characters kept of each text field (the line cap is the final bound; these keep any one field from crowding
# out the others)
FIELD_LIMITS = {"source": 40, "client": 80, "image_format": 16, "label": 64, "refused": 600,
                "model_sha256": 80, "trust": 200, "replica": 80}
SUMMARY_SOURCE = "audit"


@dataclass
class _Minute:
    """One client's minute of refusals: when it began, how many were written, how many only counted."""
    start: float
    written: int = 0
    suppressed: int = 0
    model_sha256: str | None = None
    trust: str | None = None


class AuditLog:
    """The log file (or nothing, when the path is None). ``clock`` gives the time in seconds since the
    epoch (``time.time``; a test passes a simulated one). ``refusals_per_minute=None`` writes every refusal
    one by one (for a log only its own operator writes to, such as the CLI's). ``replica`` names the app's
    replica on every line."""

    def __init__(self, path: Path | None | str = "default", max_bytes: int | None = None,
                 backups: int = DEFAULT_BACKUPS, clock: Callable[[], float] = time.time,
                 refusals_per_minute: int | None = REFUSALS_PER_MINUTE, replica: str | None = None):
        self.path = settings.audit_log_path() if path == "default" else (Path(path) if path else None)
        self.replica = one_line(replica, FIELD_LIMITS["replica"]) if replica else None
        self.clock = clock
        self.refusals_per_minute = refusals_per_minute
        self.backups = backups
        self._logger: logging.Logger | None = None
        self._salt = b""
        self._lock = threading.Lock()
        self._minutes: OrderedDict[str, _Minute] = OrderedDict()  # by start time: windows open in time order
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        configured = settings.audit_max_bytes()
        self.max_bytes = max_bytes or (DEFAULT_MAX_BYTES if configured is None else configured)
        handler = logging.handlers.RotatingFileHandler(self.path, maxBytes=self.max_bytes, backupCount=backups,
                                                       encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._logger = logging.getLogger(f"huskyai.audit.{self.path}")
        for old in self._logger.handlers:  # a second AuditLog on the same file: one handler writes it
            old.close()
        self._logger.handlers[:] = [handler]
        self._logger.setLevel(logging.INFO)
        self._logger.propagate = False
        self._salt = self._load_salt()
        atexit.register(self.flush)  # the counts of minutes still open are written at shutdown

    def _load_salt(self) -> bytes:
        salt = settings.audit_salt()
        if salt:
            return salt
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
               prediction: Prediction | None = None, refused: str | None = None,
               trust: str | None = None) -> dict | None:
        """Write one line: an answer, or a refusal unless this client's minute already has its share of
        refusal lines (then it is only counted, and None is returned). Returns the entry as written."""
        now = self.clock()
        client = one_line(client, FIELD_LIMITS["client"])
        if self._logger is not None:
            with self._lock:
                self._close_minutes(now)
                if refused is not None and self.refusals_per_minute is not None and \
                        not self._counts_as_written(client, model_sha256, trust, now):
                    return None
        entry = _bounded({
            "time": _stamp(now),
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
            "replica": self.replica,
        })
        if self._logger is not None:
            with self._lock:
                self._write(entry)
        return entry

    def flush(self) -> None:
        """Write the count of every minute still open (at shutdown; a minute's count is otherwise written
        at the first line after it closes)."""
        if self._logger is None:
            return
        with self._lock:
            self._close_minutes(self.clock(), everything=True)

    def _counts_as_written(self, client: str, model_sha256: str, trust: str | None, now: float) -> bool:
        """Whether a refusal gets a line of its own; if not, it is counted in its client's minute."""
        minute = self._minutes.get(client)
        if minute is None:
            if len(self._minutes) >= MAX_OPEN_WINDOWS:
                self._close(*self._minutes.popitem(last=False), now)
            minute = self._minutes[client] = _Minute(now)
        if minute.written < self.refusals_per_minute:
            minute.written += 1
            return True
        minute.suppressed += 1
        minute.model_sha256, minute.trust = model_sha256, trust
        return False

    def _close_minutes(self, now: float, everything: bool = False) -> None:
        while self._minutes:
            client, minute = next(iter(self._minutes.items()))
            if minute.start + WINDOW_SECONDS > now and not everything:
                return
            del self._minutes[client]
            self._close(client, minute, now)

    def _close(self, client: str, minute: _Minute, now: float) -> None:
        if not minute.suppressed:
            return
        self._write(_bounded({
            "time": _stamp(min(now, minute.start + WINDOW_SECONDS)),
            "source": SUMMARY_SOURCE, "client": client, "image_sha256": None, "image_bytes": None,
            "image_format": None, "width": None, "height": None, "label": None, "probability": None,
            "refused": f"{minute.suppressed} more refusals from client {client} this minute",
            "latency_ms": 0.0, "model_sha256": minute.model_sha256, "trust": minute.trust, "replica": self.replica,
            "suppressed": minute.suppressed, "since": _stamp(minute.start)}))

    def _write(self, entry: dict) -> None:
        self._logger.info(_line(entry))


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")


def _bounded(entry: dict) -> dict:
    """Every text field as one line of at most its FIELD_LIMITS characters; numbers and None as they are."""
    return {k: one_line(v, FIELD_LIMITS.get(k, 80)) if isinstance(v, str) and k != "time" else v
            for k, v in entry.items()}


def _line(entry: dict) -> str:
    """The entry as one JSON line of at most LINE_CAP - 1 bytes (ASCII: anything else is escaped). Over the
    cap, the longest text field is halved until it fits, and the line says ``"truncated": true``."""
    line = json.dumps(entry, separators=(",", ":"))
    while len(line) >= LINE_CAP:
        entry = dict(entry, truncated=True)
        texts = [k for k, v in entry.items() if isinstance(v, str) and k != "time" and len(v) > 1]
        if not texts:  # cannot happen with the field limits above; never write an unbounded line
            entry = {"time": entry["time"], "source": SUMMARY_SOURCE, "refused": "line over the cap",
                     "truncated": True}
            return json.dumps(entry, separators=(",", ":"))
        longest = max(texts, key=lambda k: len(json.dumps(entry[k])))
        entry[longest] = one_line(entry[longest], len(entry[longest]) // 2)
        line = json.dumps(entry, separators=(",", ":"))
    return line


def audited_predict(model: Predictor, data: bytes, *, name: str, source: str, client: str,
                    log: AuditLog, predict: Callable[..., Prediction] | None = None) -> Prediction:
    """``model.predict`` (or ``predict``, e.g. a shared engine queue's) on encoded image bytes, with one audit
    line whether it answers or refuses."""
    from huskyai.errors import InvalidImageError

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
    """``huskyai.explain.explain`` on encoded image bytes, audited as one prediction (its own answer),
    whether it answers or refuses. Returns the Explanation."""
    from huskyai.explain.explanation import explain

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
