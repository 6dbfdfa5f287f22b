"""Every setting Husky AI reads from the environment, read here and nowhere else.

The app's settings are one frozen :class:`Settings` (``Settings.from_env()``), read once at start-up. Library
functions take arguments; where a process-wide default applies (a model pinned for the process, the graph
precision, the signing key and its place, the audit log) they ask the small readers below, which read the
variable on each call, so a variable set while the process runs holds from the next call on. A value that
cannot be used raises SettingsError naming the variable. The variables:

The app (Settings):
    HUSKYAI_MODEL           export folder to serve, or a Hub model hf://OWNER/NAME@REVISION (default: the shipped
                            model)
    HUSKYAI_TRUST_UNSIGNED  1: serve an unsigned, unpinned export anyway (the model card and audit say so)
    HUSKYAI_RATE_LIMIT      predictions (and, separately, uploads) a minute per client (default 30; 0: off)
    HUSKYAI_MAX_IN_FLIGHT   requests one client may have uploading, queued or running at once (default 3)
    HUSKYAI_TRUST_PROXY     reverse-proxy hops in front of the app whose X-Forwarded-For is trusted
                            (default 1 on Hugging Face Spaces, i.e. when SPACE_ID is set, else 0)
    SPACE_ID                set by Hugging Face Spaces: only its presence is read (HUSKYAI_TRUST_PROXY's default)
    HUSKYAI_HEADER_TIMEOUT  seconds a connection has to send a request's headers, from its opening or from the
                            previous answer (default 10; huskyai.serve.limits.connections)
    HUSKYAI_BODY_TIMEOUT    seconds a request body may stall, on any route; past them it must also average
                            1 KB/s (default 30)
    HUSKYAI_MAX_CONNECTIONS connections one client address may hold open at once (default 20; 0: no cap); not
                            applied when HUSKYAI_TRUST_PROXY > 0, where every connection is the proxy's
    HUSKYAI_UPLOAD_TTL      seconds an upload is kept after its last use, for a second question (default 300)
    HUSKYAI_WORKERS         predictions prepared at once (decoding runs in parallel; default 2)
    HUSKYAI_ENGINE_BATCH    >0: concurrent predictions share engine calls of up to this many photos, one call at
                            a time (huskyai.inference.batching); 0: each prediction calls the engine itself (default 0)
    HUSKYAI_ENGINE_THREADS  ONNX Runtime's threads for one call (default 0: one per core)
    HUSKYAI_API_DETAIL      how much every answer reveals (huskyai.inference.disclosure): full
                            (probabilities, the default), rounded (to 0.1), label (the label only)
    HUSKYAI_EXPLAIN_RATE_LIMIT  heatmaps (the page's and /explain's) a minute per client (default 6; 0: off)
    HUSKYAI_EXPLAIN_METHOD  how heatmaps are made: auto (Grad-CAM where torch imports, else occlusion),
                            grad-cam or occlusion (default auto; occlusion keeps torch out of the app)
    HUSKYAI_ROBUST_MODEL    the noise-trained model that gives certified answers (?certify=1, the page's opt-in):
                            robust (the default: the shipped export-robust/, when it is there), an export folder,
                            or off (no certified answers)
    HUSKYAI_CERTIFY_N       noise samples a certified answer is estimated from, chosen by the server, never the
                            client (default 1000, from 100 to 10000; 100 more choose the class)
    HUSKYAI_CERTIFY_RATE_LIMIT  certified answers (the page's and the API's together) a minute per client
                            (default 2; 0: off): each costs about n + 100 predictions
    GRADIO_SERVER_NAME / GRADIO_SERVER_PORT   where to listen (default 127.0.0.1:7860)
    HUSKYAI_METRICS         /metrics in Prometheus' format: internal (the default: only to a scraper on this
                            machine that reached the app directly, never through the proxy), on (any peer: a
                            private network's scraper), off (no /metrics; huskyai.serve.metrics)
    HUSKYAI_LIMITS_STORAGE  where per-client limits live: memory:// (this process, the default) or redis://HOST:PORT
                            (shared by every replica; huskyai.serve.limits.store)
    HUSKYAI_REPLICA         this replica's name in the audit log (default HOSTNAME:PORT)

Every door (the app, the CLI, Python), read on each call:
    HUSKYAI_MODEL_SHA256    the sha256 of the husky model's model.json: pins the export every husky load in the
                            process uses, where the signing key is not (pinned_sha256; huskyai.trust.exports)
    HUSKYAI_ROBUST_MODEL_SHA256 the same for the noise-trained model (huskyai.load("robust"), and the app's
                            HUSKYAI_ROBUST_MODEL)
    HUSKYAI_MOOD_MODEL_SHA256   the same for the mood model, so pinning one never refuses the other
    HUSKYAI_MODEL_PUBLIC_KEY    a PEM public key file: every husky load in the process must carry an OMS
                            signature (model.sig) by its key (model_public_key; huskyai.trust.exports)
    HUSKYAI_PRECISION       fp32 (the default) or int8: which of the export's ONNX graphs serves (precision)
    HUSKYAI_SIGNING_KEY     this machine's key for signing model cards, instead of the key file
                            (env_signing_key; huskyai.trust.keys)
    XDG_CONFIG_HOME         the user's config folder, where the key file lives: $XDG_CONFIG_HOME/huskyai/signing.key
                            (default ~/.config; config_home)
    HUSKYAI_AUDIT_LOG       the audit log's file (default ~/.local/state/huskyai/audit.jsonl; "off": no log;
                            audit_log_path; huskyai.audit)
    HUSKYAI_AUDIT_MAX_BYTES the size at which the audit log rotates (default: huskyai.audit's 10 MiB; 0: never)
    HUSKYAI_AUDIT_SALT      the salt of the audit log's client pseudonyms (default: a random salt kept beside the log)

huggingface_hub reads its own variables when a model comes from the Hub (HF_HUB_OFFLINE=1: only its cache,
HF_HUB_CACHE or HF_HOME: where the cache is, HF_TOKEN: a token for private repositories and for push).

pydantic-settings is not used: it is not installed with the serving extra (gradio brings pydantic, not
pydantic-settings), and these few whole numbers and choices need no more than the readers below.
This module imports nothing heavy: app.py starts loading the model before gradio is imported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from huskyai.errors import SettingsError

UPLOAD_LIMIT_BYTES = 10 * 1024 * 1024  # one photo, uploaded or inline as a data: URL
DEFAULT_RATE_LIMIT = 30
DEFAULT_MAX_IN_FLIGHT = 3
DEFAULT_UPLOAD_TTL = 300.0
DEFAULT_WORKERS = 2
DEFAULT_ENGINE_BATCH = 0
DEFAULT_ENGINE_THREADS = 0  # ONNX Runtime's own choice: one per core
DEFAULT_EXPLAIN_RATE_LIMIT = 6  # an explanation costs ~10 (Grad-CAM) to ~120 (occlusion) predictions
DEFAULT_CERTIFY_N, MIN_CERTIFY_N, MAX_CERTIFY_N = 1000, 100, 10000  # noise samples of one certified answer
DEFAULT_CERTIFY_RATE_LIMIT = 2  # a certified answer costs ~1,100 predictions: 10 to 100 heatmaps
ROBUST_DEFAULT = "robust"  # HUSKYAI_ROBUST_MODEL's default: the shipped noise-trained model, if it is there
ROBUST_OFF = "off"
# headers come in one packet: 10 s leaves a slow mobile link several retransmissions; a body may pause
# while a phone changes cells; a browser tab holds up to about 7 connections (6 parallel fetches and the
# queue's event stream), so 20 lets a few tabs (or people behind one address) in at once
DEFAULT_HEADER_TIMEOUT = 10
DEFAULT_BODY_TIMEOUT = 30
DEFAULT_MAX_CONNECTIONS = 20
API_DETAILS = ("full", "rounded", "label")
EXPLAIN_METHODS = ("auto", "grad-cam", "occlusion")  # how a heatmap is made (huskyai.explain)
METRICS_MODES = ("internal", "on", "off")  # who is answered at /metrics (huskyai.serve.metrics)
LIMITS_SCHEMES = ("memory://", "redis://", "rediss://", "redis+unix://")  # the limits library's storages we use


def _int_env(name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name}={value} must be at most {maximum}")
    return value


def _choice_env(name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (the first is the default)."""
    value = os.environ.get(name, "").strip().lower() or choices[0]
    if value not in choices:
        raise SettingsError(f"{name}={value!r}: use one of {', '.join(choices)}")
    return value


@dataclass(frozen=True)
class Settings:
    model_dir: str | None = None  # an export folder, a shipped model's name, or hf://OWNER/NAME@REVISION
    trust_unsigned: bool = False
    public_key: str | None = None  # HUSKYAI_MODEL_PUBLIC_KEY: the PEM file whose signature the model must carry
    rate_limit: int = DEFAULT_RATE_LIMIT
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    trusted_proxy_hops: int = 0
    upload_ttl: float = DEFAULT_UPLOAD_TTL
    workers: int = DEFAULT_WORKERS
    engine_batch: int = DEFAULT_ENGINE_BATCH
    engine_threads: int = DEFAULT_ENGINE_THREADS
    upload_limit: int = UPLOAD_LIMIT_BYTES
    api_detail: str = API_DETAILS[0]
    explain_rate_limit: int = DEFAULT_EXPLAIN_RATE_LIMIT
    explain_method: str = "auto"
    header_timeout: float = float(DEFAULT_HEADER_TIMEOUT)
    body_timeout: float = float(DEFAULT_BODY_TIMEOUT)
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    host: str = "127.0.0.1"
    port: int = 7860
    metrics: str = METRICS_MODES[0]
    limits_storage: str = LIMITS_SCHEMES[0]
    replica: str | None = None  # HUSKYAI_REPLICA; None: HOSTNAME:PORT
    # HUSKYAI_ROBUST_MODEL: the noise-trained model that certifies, loaded in the background when the app starts;
    # None here (nothing is loaded), "robust" from the environment by default (the shipped one, if present)
    robust_model: str | None = None
    certify_n: int = DEFAULT_CERTIFY_N
    certify_rate_limit: int = DEFAULT_CERTIFY_RATE_LIMIT

    @classmethod
    def from_env(cls, model_dir: str | None = None, host: str | None = None, port: int | None = None) -> Settings:
        """Settings from the environment; arguments (the CLI's) take precedence."""
        hops_default = 1 if os.environ.get("SPACE_ID") else 0  # Spaces: one proxy appends the caller's address
        return cls(
            model_dir=model_dir or os.environ.get("HUSKYAI_MODEL") or None,
            trust_unsigned=os.environ.get("HUSKYAI_TRUST_UNSIGNED", "").strip() == "1",
            public_key=model_public_key(),
            rate_limit=_int_env("HUSKYAI_RATE_LIMIT", DEFAULT_RATE_LIMIT),
            max_in_flight=_int_env("HUSKYAI_MAX_IN_FLIGHT", DEFAULT_MAX_IN_FLIGHT, minimum=1),
            trusted_proxy_hops=_int_env("HUSKYAI_TRUST_PROXY", hops_default),
            upload_ttl=float(_int_env("HUSKYAI_UPLOAD_TTL", int(DEFAULT_UPLOAD_TTL), minimum=1)),
            workers=_int_env("HUSKYAI_WORKERS", DEFAULT_WORKERS, minimum=1),
            engine_batch=_int_env("HUSKYAI_ENGINE_BATCH", DEFAULT_ENGINE_BATCH),
            engine_threads=_int_env("HUSKYAI_ENGINE_THREADS", DEFAULT_ENGINE_THREADS),
            api_detail=_choice_env("HUSKYAI_API_DETAIL", API_DETAILS),
            explain_rate_limit=_int_env("HUSKYAI_EXPLAIN_RATE_LIMIT", DEFAULT_EXPLAIN_RATE_LIMIT),
            explain_method=_choice_env("HUSKYAI_EXPLAIN_METHOD", EXPLAIN_METHODS),
            header_timeout=float(_int_env("HUSKYAI_HEADER_TIMEOUT", DEFAULT_HEADER_TIMEOUT, minimum=1)),
            body_timeout=float(_int_env("HUSKYAI_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT, minimum=1)),
            max_connections=_int_env("HUSKYAI_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS),
            host=host or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1",
            port=port or _int_env("GRADIO_SERVER_PORT", 7860, minimum=1, maximum=65535),
            metrics=_choice_env("HUSKYAI_METRICS", METRICS_MODES),
            limits_storage=_limits_storage(),
            replica=os.environ.get("HUSKYAI_REPLICA", "").strip()[:80] or None,
            robust_model=_robust_model(),
            certify_n=_int_env("HUSKYAI_CERTIFY_N", DEFAULT_CERTIFY_N, minimum=MIN_CERTIFY_N, maximum=MAX_CERTIFY_N),
            certify_rate_limit=_int_env("HUSKYAI_CERTIFY_RATE_LIMIT", DEFAULT_CERTIFY_RATE_LIMIT),
        )


def _robust_model() -> str | None:
    """$HUSKYAI_ROBUST_MODEL: "robust" (the default), a folder, or None for "off"."""
    value = os.environ.get("HUSKYAI_ROBUST_MODEL", "").strip() or ROBUST_DEFAULT
    return None if value.lower() == ROBUST_OFF else value


def _limits_storage() -> str:
    """$HUSKYAI_LIMITS_STORAGE: memory:// (the default) or a Redis URL (the limits library's storage string)."""
    value = os.environ.get("HUSKYAI_LIMITS_STORAGE", "").strip() or LIMITS_SCHEMES[0]
    if not value.startswith(LIMITS_SCHEMES):
        shown = value.split("@")[-1][:80]  # never echo a password
        raise SettingsError(f"HUSKYAI_LIMITS_STORAGE={shown!r}: use memory:// or redis://HOST:PORT")
    return value


# ---- process-wide defaults of every door, read on each call -------------------------------------------------

MODEL_SHA256_ENV = "HUSKYAI_MODEL_SHA256"  # the operator's pin for the husky model
MOOD_MODEL_SHA256_ENV = "HUSKYAI_MOOD_MODEL_SHA256"  # ... and for the mood model (huskyai.mood)
ROBUST_MODEL_SHA256_ENV = "HUSKYAI_ROBUST_MODEL_SHA256"  # ... and for the noise-trained model that certifies
PIN_VARIABLES = (MODEL_SHA256_ENV, MOOD_MODEL_SHA256_ENV, ROBUST_MODEL_SHA256_ENV)
MODEL_PUBLIC_KEY_ENV = "HUSKYAI_MODEL_PUBLIC_KEY"  # the husky model's signer, for every door (huskyai.trust.oms)
PRECISION_ENV = "HUSKYAI_PRECISION"
SIGNING_KEY_ENV = "HUSKYAI_SIGNING_KEY"
AUDIT_LOG_ENV = "HUSKYAI_AUDIT_LOG"
AUDIT_MAX_BYTES_ENV = "HUSKYAI_AUDIT_MAX_BYTES"
AUDIT_SALT_ENV = "HUSKYAI_AUDIT_SALT"


def pinned_sha256(variable: str = MODEL_SHA256_ENV) -> str | None:
    """The card sha256 the operator pinned for one model in the whole process ($HUSKYAI_MODEL_SHA256 for the
    husky model, $HUSKYAI_ROBUST_MODEL_SHA256 for the robust one, $HUSKYAI_MOOD_MODEL_SHA256 for the mood
    model), else None."""
    if variable not in PIN_VARIABLES:
        raise ValueError(f"{variable} is not a pin variable ({', '.join(PIN_VARIABLES)})")
    return os.environ.get(variable) or None


def model_public_key() -> str | None:
    """$HUSKYAI_MODEL_PUBLIC_KEY, the PEM public key file whose OMS signature every husky model loaded in the
    process must carry, else None."""
    return os.environ.get(MODEL_PUBLIC_KEY_ENV, "").strip() or None


def precision() -> str | None:
    """$HUSKYAI_PRECISION, the graph that serves ("fp32" or "int8", checked by huskyai.inference.predictor), else
    None."""
    return os.environ.get(PRECISION_ENV) or None


def env_signing_key() -> bytes | None:
    """$HUSKYAI_SIGNING_KEY's bytes, when it is set and not empty: it then replaces the key file."""
    value = os.environ.get(SIGNING_KEY_ENV)
    return value.encode() if value else None


def config_home() -> Path:
    """The user's config folder: $XDG_CONFIG_HOME, else ~/.config (where huskyai.trust.keys keeps the key file)."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def audit_log_path() -> Path | None:
    """Where the audit log is written: $HUSKYAI_AUDIT_LOG, ~/.local/state/huskyai/audit.jsonl by default,
    None when it is "off"."""
    value = os.environ.get(AUDIT_LOG_ENV, "")
    if value.lower() == "off":
        return None
    return Path(value) if value else Path.home() / ".local" / "state" / "huskyai" / "audit.jsonl"


def audit_max_bytes() -> int | None:
    """$HUSKYAI_AUDIT_MAX_BYTES (0: the log never rotates), else None: huskyai.audit's default applies."""
    if not os.environ.get(AUDIT_MAX_BYTES_ENV, "").strip():
        return None
    return _int_env(AUDIT_MAX_BYTES_ENV, 0)


def audit_salt() -> bytes | None:
    """$HUSKYAI_AUDIT_SALT's bytes, else None (the audit log keeps a random salt beside itself)."""
    value = os.environ.get(AUDIT_SALT_ENV)
    return value.encode() if value else None
