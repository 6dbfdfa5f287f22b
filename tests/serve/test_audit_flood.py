"""The audit log cannot be erased by one client: seven requests with megabyte file names used to rotate away
the current log and all five backups, an honest answer with them."""

from __future__ import annotations

import html
import json
from collections import deque

import pytest

from conftest import jpeg_bytes, skimage_photo
from huskyai.audit import (
    DEFAULT_BACKUPS,
    DEFAULT_MAX_BYTES,
    LINE_CAP,
    REFUSALS_PER_MINUTE,
    SUMMARY_SOURCE,
    AuditLog,
    audited_predict,
)
from huskyai.serve.context import ServeContext
from huskyai.serve.refusals import Refusal
from huskyai.settings import Settings

T0 = 1_780_000_000.0  # a simulated epoch second
DAY = 86_400
HUGE = "A" * 1_000_000 + ".jpg"


class Clock:
    """The simulated time the log and the rate limiters read."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def entries(path) -> list[dict]:
    """Every line of the log and its rotated files, oldest file first."""
    files = sorted(path.parent.glob(path.name + ".*[0-9]"), key=lambda p: -int(p.suffix[1:])) + [path]
    return [json.loads(line) for f in files if f.exists() for line in f.read_text().splitlines()]


def daily_bound(rate_limit: int) -> int:
    """The most bytes one client can make the log grow in 24 h at these limits: each minute, its answers
    (the rate limit, shared by verdicts, heatmaps, mood predictions and the lean route), its refusals
    written one by one, and one summary line, each at most LINE_CAP bytes."""
    return 24 * 60 * (rate_limit + REFUSALS_PER_MINUTE + 1) * LINE_CAP


def test_the_default_rotation_keeps_more_than_a_day_of_one_clients_most():
    """The arithmetic behind the promise: a line is dropped only after `backups` whole files were written
    after it (each at least max_bytes - LINE_CAP), and one client cannot write that much in a day."""
    bound = daily_bound(Settings().rate_limit)
    assert bound == 53_084_160  # 1440 minutes x 36 lines x 1 KiB: 50.6 MiB
    kept = DEFAULT_BACKUPS * (DEFAULT_MAX_BYTES - LINE_CAP)
    assert kept > 1.9 * bound, (kept, bound)  # 100 MiB: room for the honest traffic of the same day too


@pytest.mark.slow  # a simulated day: 43,200 answers and 600,000 refusals through the log (about 15 s)
def test_a_day_of_flooding_within_the_rate_limit_keeps_the_honest_answer(tmp_path, shipped, monkeypatch):
    """One client floods for a simulated 24 h as fast as the default limits allow: a prediction attempt every
    second (the rate limit answers 30 a minute and refuses the rest), an upload with a 1 MB file name over
    the upload limit every second, and five requests over its in-flight limit every second (refusals have
    no rate limit). The honest answer written before it is still in the log files a day later."""
    from gradio.data_classes import FileData

    from huskyai.serve.photo_input import read_upload

    monkeypatch.delenv("HUSKYAI_AUDIT_MAX_BYTES", raising=False)
    settings = Settings()
    clock = Clock()
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, clock=clock)  # the defaults: max_bytes and backups
    assert (log.max_bytes, log.backups) == (DEFAULT_MAX_BYTES, DEFAULT_BACKUPS)
    photo = jpeg_bytes(skimage_photo("coffee").resize((256, 170)))
    honest = audited_predict(shipped, photo, name="rex.jpg", source="app", client=log.client_id("192.0.2.1"),
                             log=log)
    honest_client = log.client_id("192.0.2.1")

    attacker = log.client_id("198.51.100.7")
    window: deque[float] = deque()  # the middleware's moving window of answers, on the simulated clock
    answered = shipped.predict(photo)  # one real answer, given again (the app's engine queue is this hook)
    oversized = tmp_path / "big.jpg"
    oversized.write_bytes(b"\xff\xd8\xff" + b"\0" * (settings.upload_limit + 1))
    upload = read_upload(FileData(path=str(oversized), orig_name=HUGE), settings.upload_limit)  # as gradio hands it
    assert upload.problem is not None
    refusals = 0
    for second in range(DAY):
        clock.now = T0 + 1 + second
        while window and clock.now - window[0] >= 60:
            window.popleft()
        if len(window) < settings.rate_limit:
            window.append(clock.now)
            audited_predict(shipped, photo, name="x.jpg", source="app-explain", client=attacker, log=log,
                            predict=lambda data, name=None: answered)
        else:
            record_refusal(log, shipped, attacker, "rate limit (predictions)")
            refusals += 1
        record_refusal(log, shipped, attacker, html.unescape(upload.problem))  # as handlers.checked_upload does
        for _ in range(5):
            record_refusal(log, shipped, attacker, "in-flight limit")
        refusals += 6
        if second % 3600 == 0:  # fail early: the old log lost the honest line within the first minute
            assert path.exists() and any(e["client"] == honest_client for e in entries(path)[:5]), second
    clock.now += 1
    log.flush()  # at shutdown: the counts of minutes still open

    written = entries(path)
    assert written[0]["client"] == honest_client and written[0]["label"] == honest.label
    assert written[0]["image_sha256"] and written[0]["refused"] is None
    grown = sum(p.stat().st_size for p in tmp_path.glob("audit.jsonl*") if not p.name.endswith(".salt"))
    assert grown <= daily_bound(settings.rate_limit), grown
    assert all(len(json.dumps(e, separators=(",", ":"))) < LINE_CAP for e in written)
    mine = [e for e in written if e["client"] == attacker]
    assert sum(1 for e in mine if e["refused"] is None) == 30 * 24 * 60  # every answer has its own line
    one_by_one = [e for e in mine if e["refused"] is not None and e["source"] != SUMMARY_SOURCE]
    summaries = [e for e in mine if e["source"] == SUMMARY_SOURCE]
    assert len(one_by_one) == REFUSALS_PER_MINUTE * 24 * 60
    assert len(one_by_one) + sum(e["suppressed"] for e in summaries) == refusals  # every refusal is counted
    assert all(e["refused"] == f"{e['suppressed']} more refusals from client {attacker} this minute"
               for e in summaries)
    assert max(len(e["refused"]) for e in one_by_one) <= 600


_contexts: dict[int, ServeContext] = {}


def record_refusal(log: AuditLog, model, client: str, reason: str) -> None:
    """A refusal made before any image was read, as every door of the app audits it (one app per log)."""
    ctx = _contexts.get(id(log))
    if ctx is None or ctx.audit is not log:
        ctx = _contexts[id(log)] = ServeContext(model, Settings(), log)
    ctx.refused(client, Refusal.IN_FLIGHT, reason)


def test_refusals_beyond_a_few_a_minute_are_one_line_written_when_the_minute_closes(tmp_path, shipped):
    clock = Clock()
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, clock=clock)
    for i in range(50):
        clock.now = T0 + i  # 50 refusals in 50 s
        record_refusal(log, shipped, "ip:flood", f"in-flight limit {i}")
    record_refusal(log, shipped, "ip:other", "in-flight limit")  # another client is not summarised with it
    assert [e["refused"] for e in entries(path)] == [f"in-flight limit {i}" for i in range(5)] + ["in-flight limit"]
    clock.now = T0 + 61  # the minute closed: the next line, an answer, brings its count first
    photo = jpeg_bytes(skimage_photo("coffee"))
    audited_predict(shipped, photo, name="c.jpg", source="app", client="ip:flood", log=log)
    *_, summary, answer = entries(path)
    assert summary["source"] == SUMMARY_SOURCE and summary["client"] == "ip:flood" and summary["suppressed"] == 45
    assert summary["refused"] == "45 more refusals from client ip:flood this minute"
    assert summary["since"].startswith("2026-05-28") and summary["model_sha256"] == shipped.model_sha256
    assert answer["client"] == "ip:flood" and answer["label"] == "not_husky"
    for i in range(7):  # a new minute: five one by one again, then counted until shutdown
        clock.now = T0 + 70 + i
        record_refusal(log, shipped, "ip:flood", "rate limit (predictions)")
    log.flush()
    last = entries(path)[-1]
    assert last["suppressed"] == 2 and len(entries(path)) == 6 + 2 + 5 + 1
    log.flush()  # nothing is counted twice
    assert len(entries(path)) == 14


def test_many_clients_are_each_summarised_and_the_disk_stays_bounded(tmp_path, shipped):
    """Distinct addresses are distinct clients: each gets its few lines a minute, so the log's growth is
    per address, and the files never exceed (backups + 1) x max_bytes whatever the flood."""
    clock = Clock()
    log = AuditLog(tmp_path / "audit.jsonl", clock=clock, max_bytes=20_000, backups=3)
    for second in range(120):
        clock.now = T0 + second
        for client in range(40):
            record_refusal(log, shipped, f"ip:{client}", "x" * 5000)
    log.flush()
    files = [p for p in tmp_path.glob("audit.jsonl*") if not p.name.endswith(".salt")]
    assert len(files) == 4 and all(p.stat().st_size <= 20_000 for p in files)
    last = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert last[-1]["source"] == SUMMARY_SOURCE and last[-1]["suppressed"] == 55  # 60 in its minute, 5 written
