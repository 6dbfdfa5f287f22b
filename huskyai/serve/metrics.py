"""What the app counts for Prometheus, and the /metrics route that shows it (prometheus-client's text format).

Counted, per app (each app has a registry of its own, so two apps in one process never mix their numbers):

- ``huskyai_predictions_total{door, label}``: answers given, by door (:data:`DOORS`) and by the model's label
  (a Mood answer's label is "mood": a day's mood is the person's business, not a metric's);
- ``huskyai_refusals_total{reason}``: refusals, by kind (huskyai.serve.refusals: a fixed set, never the
  client's words);
- ``huskyai_request_duration_seconds{door}``: how long each door took to answer or refuse a request its handler
  saw (a histogram);
- ``huskyai_engine_seconds``: each engine call of a prediction (ONNX Runtime), batched or not;
- ``huskyai_queue_depth``: events waiting or running in gradio's queue;
- ``huskyai_in_flight_requests``: requests being received or answered on the routes that cost work;
- ``huskyai_uploads_kept`` and ``huskyai_uploads_kept_bytes``: uploads the app keeps for a second question;
- ``huskyai_model_info{card_sha256, trust, precision}``: which model serves, and why it is trusted;
- ``huskyai_ready`` (1 once the page serves) and ``huskyai_limits_store_up`` (0 while Redis is away).

No label ever holds a client's address or pseudonym, a photo's hash or a file name: what one client did is the
audit log's to keep. Who may read /metrics is HUSKYAI_METRICS: ``internal`` (the default) answers a scraper on this
machine that connects to the app directly (a loopback peer, with no X-Forwarded-For, Forwarded or X-Real-IP
header: a request through the proxy always carries one), ``on`` answers anyone who reaches the app (a private
network's scraper; keep the proxy from passing /metrics on), ``off`` has no /metrics at all. It is one more route
of the app's own server rather than a port of its own: one port to guard, the same deadlines and connection cap,
and nothing to open for a scraper on the same machine. A GET of /metrics costs no budget of a client's (the
middleware charges only the routes that predict or upload) and answers nothing but the counts.
"""

from __future__ import annotations

import contextlib
import ipaddress
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics
from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from huskyai.inference.predictor import Prediction, Predictor
from huskyai.serve.refusals import Refusal

PAGE, GRADIO_API, REST, EXPLAIN, MOOD = "page", "gradio_api", "rest", "explain", "mood"
DOORS = (PAGE, GRADIO_API, REST, EXPLAIN, MOOD)  # page and gradio_api: /predict from the page or from a script
METRICS_PATH = "/metrics"
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ENGINE_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
PROXY_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")


class ServeMetrics:
    """The app's counters, histograms and gauges, in a registry of their own."""

    def __init__(self) -> None:
        disable_created_metrics()  # the *_created series (process-wide) add a line per series that no alert reads
        self.registry = CollectorRegistry()
        r = self.registry
        self.predictions = Counter("huskyai_predictions", "Answers given, by door and label", ["door", "label"],
                                   registry=r)
        self.refusals = Counter("huskyai_refusals", "Requests refused, by kind of refusal", ["reason"], registry=r)
        self.latency = Histogram("huskyai_request_duration_seconds", "Time to answer or refuse a request, by door",
                                 ["door"], buckets=LATENCY_BUCKETS, registry=r)
        self.engine = Histogram("huskyai_engine_seconds", "Time of each engine call that answers predictions",
                                buckets=ENGINE_BUCKETS, registry=r)
        self.queue_depth = Gauge("huskyai_queue_depth", "Events waiting or running in gradio's queue", registry=r)
        self.in_flight = Gauge("huskyai_in_flight_requests", "Requests being received or answered on the routes "
                               "that predict or upload", registry=r)
        self.uploads_kept = Gauge("huskyai_uploads_kept", "Uploads kept for a second question", registry=r)
        self.uploads_bytes = Gauge("huskyai_uploads_kept_bytes", "Bytes of the uploads kept", registry=r)
        self.model = Info("huskyai_model", "The model that serves, and why it is trusted", registry=r)
        self.ready = Gauge("huskyai_ready", "1 once the page serves the verified model", registry=r)
        self.limits_store_up = Gauge("huskyai_limits_store_up", "1 while the limits store answers (0: Redis is "
                                     "away and each replica keeps its own budgets)", registry=r)
        self.limits_store_up.set(1)
        for door in DOORS:  # every series present from the start, at 0, so a rate() has a first point
            self.latency.labels(door=door)
        for kind in Refusal:
            self.refusals.labels(reason=kind.value)

    def describe_model(self, model: Predictor) -> None:
        """The model's info metric, and its labels' series at 0 for each husky door."""
        self.model.info({"card_sha256": model.model_sha256, "trust": str(getattr(model, "trust", "") or ""),
                         "precision": str(getattr(model, "precision", "") or "")})
        for door in (PAGE, GRADIO_API, REST, EXPLAIN):
            for label in model.classes:
                self.predictions.labels(door=door, label=label)
        self.predictions.labels(door=MOOD, label=MOOD)

    def watch(self, *, queue_depth: Callable[[], float] | None = None, in_flight: Callable[[], float] | None = None,
              uploads: Any = None) -> None:
        """Gauges read when /metrics is scraped: the queue, the requests in flight, the upload registry."""
        if queue_depth is not None:
            self.queue_depth.set_function(queue_depth)
        if in_flight is not None:
            self.in_flight.set_function(in_flight)
        if uploads is not None:
            self.uploads_kept.set_function(lambda: len(uploads))
            self.uploads_bytes.set_function(lambda: uploads.pending_bytes)

    def answered(self, door: str, label: str) -> None:
        self.predictions.labels(door=door, label=label).inc()

    def refused(self, kind: Refusal) -> None:
        self.refusals.labels(reason=Refusal(kind).value).inc()

    @contextlib.contextmanager
    def timed(self, door: str) -> Iterator[None]:
        """Observe the block's time in ``door``'s latency histogram, whether it answers or raises."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.latency.labels(door=door).observe(time.perf_counter() - start)

    def timed_engine(self, model: Predictor) -> TimedEngine:
        return TimedEngine(model, self.engine)

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The samples in the format the scraper's Accept header asks for (Prometheus' text format 0.0.4 by
        default, OpenMetrics when asked), and its content type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    def value(self, name: str, **labels: str) -> float | None:
        """One sample's current value (for tests and the bench), or None when there is no such sample."""
        return self.registry.get_sample_value(name, labels)


class TimedEngine:
    """The model as the app's prediction call uses it (huskyai.inference.batching takes either), with each engine
    call timed into ``histogram``. Everything else is the model's own."""

    def __init__(self, model: Predictor, histogram: Histogram):
        self._model = model
        self._histogram = histogram

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def probabilities(self, batch: Any) -> Any:
        start = time.perf_counter()
        try:
            return self._model.probabilities(batch)
        finally:
            self._histogram.observe(time.perf_counter() - start)

    def predict(self, source: Any, name: str | None = None) -> Prediction:
        """The model's predict, through the timed engine call."""
        return self.to_prediction(self.probabilities(self.preprocess(source, name)[None])[0])


def may_scrape(mode: str, peer: str | None, headers: Any) -> bool:
    """Whether HUSKYAI_METRICS ``mode`` lets this request read /metrics (see the module's docstring)."""
    if mode == "on":
        return True
    if mode != "internal" or any(headers.get(h) for h in PROXY_HEADERS):
        return False
    try:
        return peer is not None and ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False


def metrics_route(metrics: ServeMetrics, mode: str) -> Route:
    """GET /metrics, answered as HUSKYAI_METRICS ``mode`` allows; a request it does not allow gets a 404, as if
    there were no such route."""

    async def endpoint(request: Request) -> Response:
        if not may_scrape(mode, request.client.host if request.client else None, request.headers):
            return PlainTextResponse("Not Found", status_code=404)
        body, content_type = metrics.render(request.headers.get("accept"))
        return Response(body, headers={"content-type": content_type})

    return Route(METRICS_PATH, endpoint, methods=["GET"])
