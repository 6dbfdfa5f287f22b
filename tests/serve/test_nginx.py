"""deploy/nginx.conf in front of the real app: slow clients cut by nginx, honest ones answered, and the app
charging the client nginx saw, whatever X-Forwarded-For the client forged.

nginx runs as a user would run it (deploy/README.md): in the foreground from a prefix folder of its own,
with the shipped file, here in front of one app (both replicas of its upstreams point at it; tests/serve/
test_replicas.py runs two). The test changes only the listen port, the replicas' ports and, to stay quick, the
two client deadlines (tests/serve/services.shipped_config).
"""

from __future__ import annotations

import http.client
import socket
import time

import pytest
from serve.helpers import served
from serve.services import CLIENT_TIMEOUT, HAVE_NGINX, running_nginx, shipped_config

from conftest import free_port, jpeg_bytes, skimage_photo

pytestmark = pytest.mark.skipif(not HAVE_NGINX, reason="nginx is not installed (apt-get install nginx)")


def closed_after(s: socket.socket, piece: bytes, every: float, limit: float) -> float | None:
    """Send ``piece`` every ``every`` seconds (nothing when empty) until the server closes; its time, or None."""
    start = time.time()
    s.settimeout(every)
    while time.time() - start < limit:
        try:
            if piece:
                s.sendall(piece)
            if not s.recv(65536):
                return time.time() - start
        except TimeoutError:
            continue
        except OSError:
            return time.time() - start
    return None


# --- the per-client key: an IPv6 /64 is one client in nginx too ---

def test_nginx_keys_an_ipv6_client_by_its_64():
    port = free_port()
    config = f"""
events {{}}
http {{
    include nginx-client.conf;
    client_body_temp_path client_body_temp; proxy_temp_path proxy_temp; fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp; scgi_temp_path scgi_temp; access_log off;
    server {{
        listen 127.0.0.1:{port};
        set_real_ip_from 127.0.0.1;  # the test names the client address nginx should see
        real_ip_header X-Test-Client;
        location / {{ return 200 "$huskyai_client"; }}
    }}
}}
"""
    expected = {
        "2001:db8:1:2::1": "2001:db8:1:2::/64",
        "2001:DB8:1:2:ffff:ffff:ffff:ffff": "2001:db8:1:2::/64",
        "2001:db8:1:2:0:0:0:9": "2001:db8:1:2::/64",
        "2001:db8:0:7::1": "2001:db8:0:7::/64",
        "2001:db8:1::5": "2001:db8:1:0::/64",
        "2001:db8::5": "2001:db8:0:0::/64",
        "2001::5": "2001:0:0:0::/64",
        "::1": "::/64",
        "::ffff:198.51.100.7": "198.51.100.7",
        "198.51.100.7": "198.51.100.7",
    }
    with running_nginx(config, port):
        seen = {}
        for address in expected:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/", headers={"X-Test-Client": address})
            seen[address] = conn.getresponse().read().decode()
    assert seen == expected


# --- the app behind the shipped configuration ---

@pytest.fixture(scope="module")
def proxied(shipped, tmp_path_factory):
    """The app (in-process, tests/serve/helpers.served) behind nginx with the shipped configuration."""
    with served(shipped, tmp_path_factory.mktemp("proxied"), trusted_proxy_hops=1, rate_limit=2) as app:
        port = free_port()
        with running_nginx(shipped_config(port, app.port), port):
            yield {"port": port, "url": app.url, "audit_log": app.audit_log}


@pytest.mark.slow
def test_nginx_cuts_slow_headers(proxied):
    with socket.create_connection(("127.0.0.1", proxied["port"])) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        after = closed_after(s, b"X-Slow: still coming\r\n", every=0.5, limit=15)
    assert after is not None and after < CLIENT_TIMEOUT + 2, after


@pytest.mark.slow
def test_nginx_cuts_a_stalled_body(proxied):
    with socket.create_connection(("127.0.0.1", proxied["port"])) as s:
        s.sendall(b"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                  b"Content-Length: 500000\r\n\r\n" + b"\xff" * 1000)
        after = closed_after(s, b"", every=0.5, limit=15)
    assert after is not None and after < CLIENT_TIMEOUT + 2, after


@pytest.mark.slow
def test_honest_predictions_pass_and_a_forged_forwarded_for_does_not_pick_the_bucket(proxied):
    photo = jpeg_bytes(skimage_photo("chelsea"))
    statuses = []
    for forged in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):  # a fresh address each time, all lies
        conn = http.client.HTTPConnection("127.0.0.1", proxied["port"], timeout=60)
        conn.request("POST", "/api/v1/predict", body=photo,
                     headers={"Content-Type": "image/jpeg", "X-Forwarded-For": forged})
        answer = conn.getresponse()
        answer.read()
        statuses.append(answer.status)
    # the rate limit is 2 a minute: the third is refused, because all three are charged to 127.0.0.1
    assert statuses == [200, 200, 429]
