"""Two replicas of the app behind deploy/nginx.conf, their limits in one Debian redis-server: one client's limit
holds across both (with memory:// each replica would give it a limit of its own), each replica's audit lines name
it, the page's gradio API works through the proxy (a client stays with one replica), and when Redis goes away the
replicas fail open to their own memory (nothing refused for it, at most one budget per replica) and share again
once it is back.

The replicas are served in-process (tests/serve/helpers.served: the app's own start, each on its own port);
redis-server and nginx run as deploy/README.md runs them.
"""

from __future__ import annotations

import contextlib
import time

import httpx
import pytest
from serve.helpers import served
from serve.services import HAVE_NGINX, HAVE_REDIS, running_nginx, running_redis, shipped_config

from conftest import free_port, jpeg_bytes, skimage_photo
from huskyai.redteam.client import client_from, raw_predict

pytestmark = [pytest.mark.skipif(not (HAVE_NGINX and HAVE_REDIS), reason="needs Debian's nginx and redis-server"),
              pytest.mark.slow]  # serves two apps
LIMIT = 5


@contextlib.contextmanager
def two_replicas(model, workdir, storage: str):
    common = {"trusted_proxy_hops": 1, "rate_limit": LIMIT, "limits_storage": storage, "max_in_flight": 3}
    (workdir / "a").mkdir()
    (workdir / "b").mkdir()
    with served(model, workdir / "a", replica="replica-a", **common) as a, \
            served(model, workdir / "b", replica="replica-b", **common) as b:
        port = free_port()
        with running_nginx(shipped_config(port, a.port, b.port), port):
            yield f"http://127.0.0.1:{port}/", a, b


def flood(front: str, address: str, count: int) -> list[int]:
    """``count`` photos in a row from one client address, through the proxy's lean route."""
    photo = jpeg_bytes(skimage_photo("coffee"))
    with client_from(address, timeout=60) as c:
        return [c.post(f"{front}api/v1/predict", content=photo).status_code for _ in range(count)]


def answered(replica) -> int:
    return sum(1 for line in replica.audit() if line["source"] == "api" and line["refused"] is None)


def metric(replica, name: str, **labels: str) -> float:
    return replica.ctx.metrics.value(name, **labels) or 0.0


@pytest.mark.parametrize("storage,allowed", [("redis", LIMIT), ("memory://", 2 * LIMIT)])
def test_one_clients_limit_holds_across_both_replicas_only_with_redis(shipped, tmp_path, storage, allowed):
    with contextlib.ExitStack() as stack:
        if storage == "redis":
            storage = stack.enter_context(running_redis()).url
        front, a, b = stack.enter_context(two_replicas(shipped, tmp_path, storage))
        statuses = flood(front, "127.0.0.21", 4 * LIMIT)
        assert statuses.count(200) == allowed and statuses.count(429) == 4 * LIMIT - allowed, statuses
        assert answered(a) >= 1 and answered(b) >= 1  # the proxy spread them over both replicas
        assert answered(a) + answered(b) == allowed
        assert metric(a, "huskyai_refusals_total", reason="rate_limit") + \
            metric(b, "huskyai_refusals_total", reason="rate_limit") == 4 * LIMIT - allowed
        assert flood(front, "127.0.0.22", 1) == [200]  # another client has its own budget
        for replica, name in ((a, "replica-a"), (b, "replica-b")):
            assert {line["replica"] for line in replica.audit()} == {name}


def test_the_page_api_works_through_the_proxy_each_client_staying_with_one_replica(shipped, tmp_path):
    with running_redis() as redis, two_replicas(shipped, tmp_path, redis.url) as (front, a, b):
        photo = jpeg_bytes(skimage_photo("chelsea"))
        for address in ("127.0.0.31", "127.0.0.32", "127.0.0.33", "127.0.0.34"):
            with client_from(address, timeout=60) as c:
                for _ in range(2):  # upload, join the queue, read the event stream: three requests a photo
                    assert raw_predict(front, photo, client=c)[0]["label"] == "not_husky"
        by_client = {}
        for replica in (a, b):
            for line in replica.audit():
                by_client.setdefault(line["client"], set()).add(line["replica"])
        assert len(by_client) == 4 and all(len(where) == 1 for where in by_client.values())


def test_when_redis_goes_away_the_replicas_fail_open_to_their_own_memory(shipped, tmp_path):
    with running_redis() as redis, two_replicas(shipped, tmp_path, redis.url) as (front, a, b):
        assert flood(front, "127.0.0.41", 2 * LIMIT).count(200) == LIMIT  # shared: one budget
        redis.stop()
        away = flood(front, "127.0.0.41", 4 * LIMIT)
        # no request fails because Redis is away; each replica counts alone, from nothing: one budget each
        assert set(away) <= {200, 429} and away.count(200) == 2 * LIMIT, away
        assert metric(a, "huskyai_limits_store_up") == 0 and metric(b, "huskyai_limits_store_up") == 0
        assert httpx.get(f"{a.url}readyz").status_code == 200  # still serving
        redis.start()
        time.sleep(5.5)  # the store asks Redis again after 5 s
        assert flood(front, "127.0.0.42", 2 * LIMIT).count(200) == LIMIT  # one budget across both again
        assert metric(a, "huskyai_limits_store_up") == 1 and metric(b, "huskyai_limits_store_up") == 1
