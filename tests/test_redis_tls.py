"""Redis over TLS with a password, as deploy/k8s/redis.yaml documents it: a real redis-server
that speaks only TLS (`--port 0`), a throwaway CA made with the openssl CLI, and our own clients,
the Celery app and Flower's broker view connecting with a `rediss://` URL.

Why each: redis-py, kombu, Celery's result backend and Flower read TLS options four different
ways (kombu alone would accept any certificate on a bare `rediss://`), so one URL must work, and
verify the server, for all of them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from flower.utils.broker import Broker

from faceswap_jobs.celery_app import create_app, send_swap, tls_options
from faceswap_jobs.config import Settings
from faceswap_jobs.connections import reaching_redis, redis_client
from faceswap_jobs.errors import ServiceUnavailableError
from faceswap_jobs.ops.sandbox import ManagedProcess, free_port, wait_until

pytestmark = pytest.mark.integration

PASSWORD = "tls-test-password-4f9c2e"
WRONG_PASSWORD = "not-the-password-7d1a0b"


@dataclass(frozen=True)
class TlsRedis:
    port: int
    ca_cert: Path

    def url(self, password: str = PASSWORD, *, query: str | None = None) -> str:
        if query is None:
            query = f"ssl_cert_reqs=required&ssl_ca_certs={quote(str(self.ca_cert))}"
        suffix = f"?{query}" if query else ""
        return f"rediss://:{password}@127.0.0.1:{self.port}/0{suffix}"

    def settings(self, password: str = PASSWORD, *, query: str | None = None) -> Settings:
        # No retry budget: a refused handshake or password is final, not an outage.
        return Settings(redis_url=self.url(password, query=query), redis_retry_s=0)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: Path) -> None:
    """A CA, and a server certificate it signed for 127.0.0.1: ca.crt, server.crt, server.key."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=faceswap-jobs test CA", cwd=directory)  # fmt: skip
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=127.0.0.1", cwd=directory)  # fmt: skip
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.cnf",
             cwd=directory)  # fmt: skip


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    for tool in ("redis-server", "openssl"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run `make test`, which installs it")
    directory = tmp_path_factory.mktemp("redis-tls")
    make_certificates(directory)
    server = TlsRedis(free_port(), directory / "ca.crt")
    argv = [
        "redis-server", "--port", "0", "--tls-port", str(server.port), "--bind", "127.0.0.1",
        "--tls-cert-file", str(directory / "server.crt"),
        "--tls-key-file", str(directory / "server.key"),
        "--tls-ca-cert-file", str(server.ca_cert), "--tls-auth-clients", "no",
        "--requirepass", PASSWORD, "--dir", str(directory), "--save", "", "--appendonly", "no",
    ]  # fmt: skip
    process = ManagedProcess("redis-tls", argv, directory / "redis.log", os.environ)
    client = redis.Redis.from_url(server.url())
    try:
        wait_until(lambda: bool(client.ping()), 10.0, "redis-server over TLS", process.log_path)
        yield server
    finally:
        client.close()
        process.stop()


@pytest.fixture
def tls_client(tls_redis: TlsRedis) -> Iterator[redis.Redis]:
    client = redis_client(tls_redis.settings())
    client.flushdb()
    yield client
    client.close()


def test_our_client_reads_and_writes_over_tls(tls_client: redis.Redis) -> None:
    assert issubclass(tls_client.connection_pool.connection_class, redis.SSLConnection)
    tls_client.set("faceswap:tls-check", "ok")
    assert tls_client.get("faceswap:tls-check") == "ok"


def test_celery_app_publishes_and_stores_results_over_tls(
    tls_redis: TlsRedis, tls_client: redis.Redis
) -> None:
    settings = tls_redis.settings()
    app = create_app(settings)
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0)

    send_swap(app, "job-tls-1", {"swap_image_url": "https://example.com/a.png"},
              settings.interactive_queue)  # fmt: skip
    assert tls_client.llen(settings.interactive_queue) == 1
    message = json.loads(tls_client.lindex(settings.interactive_queue, 0))
    assert message["headers"]["id"] == "job-tls-1"

    app.backend.store_result("job-tls-1", {"ok": True}, "SUCCESS")
    assert app.backend.get_task_meta("job-tls-1")["status"] == "SUCCESS"
    assert app.backend.connparams["ssl_cert_reqs"] == ssl.CERT_REQUIRED


def test_flower_broker_view_counts_the_queue_over_tls(
    tls_redis: TlsRedis, tls_client: redis.Redis
) -> None:
    """Flower's queue page builds its client the way this does: TLS options only from
    `broker_use_ssl`, which create_app derives from the URL."""
    settings = tls_redis.settings()
    app = create_app(settings)
    send_swap(app, "job-tls-2", {}, settings.bulk_queue)
    with app.connection() as connection:
        uri = connection.as_uri(include_password=True)
    broker = Broker(uri, broker_options=app.conf.broker_transport_options,
                    broker_use_ssl=app.conf.broker_use_ssl)  # fmt: skip

    queues = asyncio.run(broker.queues([settings.bulk_queue]))

    assert queues == [{"name": settings.bulk_queue, "messages": 1}]


def test_certificate_is_verified_even_on_a_bare_rediss_url(tls_redis: TlsRedis) -> None:
    """Without ssl_ca_certs the server's certificate is not trusted (our CA is private), and
    every client refuses it: kombu's own default would have been to accept anything."""
    settings = tls_redis.settings(query="")
    client = redis_client(settings)
    with pytest.raises(ServiceUnavailableError), reaching_redis(settings.redis_url):
        client.ping()
    client.close()
    app = create_app(settings)
    with (
        pytest.raises(ServiceUnavailableError, match="certificate verify failed"),
        reaching_redis(settings.redis_url),
        app.connection_for_write() as connection,
    ):
        connection.ensure_connection(max_retries=1, interval_start=0)


@pytest.mark.parametrize("password", [WRONG_PASSWORD, ""])
def test_wrong_or_missing_password_is_refused(tls_redis: TlsRedis, password: str) -> None:
    settings = tls_redis.settings(password)
    client = redis_client(settings)
    with pytest.raises(ServiceUnavailableError) as refused, reaching_redis(settings.redis_url):
        client.set("faceswap:forged", "1")
    client.close()
    assert refused.value.code == "redis_unavailable"
    assert WRONG_PASSWORD not in str(refused.value)

    app = create_app(settings)
    with (
        pytest.raises(ServiceUnavailableError),
        reaching_redis(settings.redis_url),
        app.connection_for_write() as connection,
    ):
        connection.ensure_connection(max_retries=1, interval_start=0)


def test_tls_options_come_from_the_url() -> None:
    assert tls_options("redis://:pw@redis:6379/0") is None
    assert tls_options("rediss://:pw@redis:6379/0") == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert tls_options(
        "rediss://redis:6379/0?ssl_cert_reqs=required&ssl_ca_certs=%2Fetc%2Fca.crt"
        "&ssl_certfile=/c.crt&ssl_keyfile=/c.key"
    ) == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": "/etc/ca.crt",
        "ssl_certfile": "/c.crt",
        "ssl_keyfile": "/c.key",
    }
    assert tls_options("rediss://redis:6379/0?ssl_cert_reqs=none") == {
        "ssl_cert_reqs": ssl.CERT_NONE
    }
    with pytest.raises(ValueError, match="ssl_cert_reqs"):
        tls_options("rediss://redis:6379/0?ssl_cert_reqs=maybe")
