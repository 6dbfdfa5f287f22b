"""Why the app refused a request, as a small fixed set of kinds: the label /metrics counts refusals by.

The audit log keeps each refusal's own words (bounded, pseudonymous); a metric label must be a short, fixed
vocabulary instead, or a client could write its own text into the metrics (and grow them without bound). Every
place that refuses names one of these kinds along with its reason.
"""

from __future__ import annotations

import enum


class Refusal(str, enum.Enum):
    """A kind of refusal (its value is the label /metrics shows)."""

    BODY_TOO_LARGE = "body_too_large"  # over the route's cap, announced or while streaming
    BODY_STALLED = "body_stalled"  # a body that stopped, or trickled below the minimum rate
    HEADERS_TOO_SLOW = "headers_too_slow"  # headers not complete within HUSKYAI_HEADER_TIMEOUT
    CONNECTION_CAP = "connection_cap"  # too many connections open from one address
    IN_FLIGHT = "in_flight"  # too many requests at once from one client
    RATE_LIMIT = "rate_limit"  # predictions a minute
    UPLOAD_RATE_LIMIT = "upload_rate_limit"  # uploads a minute
    EXPLAIN_RATE_LIMIT = "explain_rate_limit"  # heatmaps a minute (the heatmap is skipped, the verdict stands)
    WAITED_TOO_LONG = "waited_too_long"  # a prediction that waited too long for the client's previous one
    TOO_MANY_FILES = "too_many_files"  # an upload of more files than the page ever sends
    QUEUE_FULL = "queue_full"  # gradio's queue had no room
    REFUSED_BY_GRADIO = "refused_by_gradio"  # another refusal of gradio's own
    NO_PHOTO = "no_photo"  # a request without a photo
    BAD_UPLOAD = "bad_upload"  # an upload over the limit, gone from the server, or invalid inline data
    UNREADABLE_PHOTO = "unreadable_photo"  # refused by the decoder (not an image, a bomb, truncated, ...)
    INVALID_DAY = "invalid_day"  # a Mood tab value no day can have
    FAILED = "failed"  # the app's own failure while answering
