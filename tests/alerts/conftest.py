"""Fixtures for the alerts tests: a real SMTP server (aiosmtpd, adapted from
../shared/recipes/smtp), a local HTTP server standing in for a Slack webhook, an
engine on the test database, and helpers that make spend the way production does
(usage events -> RollupEngine)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from models.database import open_database
from models.event_store import EventStore
from models.events import UsageEvent
from models.ids import uuid7
from models.rollups import RollupEngine
from spendwatch.settings import Settings, load_settings
from tests.prices import FixedBook, Price

UTC = dt.UTC
USER, PASSWORD = "alerts@example.com", "s3cret"


class CollectingHandler:
    """aiosmtpd handler that keeps every received message in memory."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], email.message.EmailMessage]] = []
        self.received = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        self.received.set()
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server() -> Iterator[tuple[Controller, CollectingHandler]]:
    handler = CollectingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(),
                            server_hostname="localhost")
    controller.start()
    try:
        yield controller, handler
    finally:
        controller.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    d = tmp_path_factory.mktemp("tls")
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return d / "cert.pem", d / "key.pem"


def _authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_tls_server(tls_files, monkeypatch):
    """SMTP that requires STARTTLS and AUTH; the client verifies the certificate
    (SSL_CERT_FILE points ssl.create_default_context() at it)."""
    cert, key = tls_files
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    handler = CollectingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(),
                            server_hostname="localhost", tls_context=server_ctx,
                            require_starttls=True, auth_required=True,
                            authenticator=_authenticator)
    controller.start()
    try:
        yield controller, handler
    finally:
        controller.stop()


@dataclass
class Webhook:
    url: str
    posts: list[dict[str, object]] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """A local HTTP server that records JSON POSTs (answers ``hook.status``)."""
    hook = Webhook("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if hook.status == 200:
                hook.posts.append(json.loads(body))
            self.send_response(hook.status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/T000/B000"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def engine(database):
    engine = open_database(database.url)
    yield engine
    engine.dispose()


def make_settings(database, tmp_path: Path, **overrides: object) -> Settings:
    base = load_settings({"database_url": database.url, "data_dir": str(tmp_path / "data")},
                         env={})
    return replace(base, **{"smtp_starttls": False, **overrides})


class Book(FixedBook):
    """gpt-4o and house-model: $2.50 per million input tokens, $10 per million output;
    gpt-4o-mini: $0.15 / $0.60. 'mystery' is unpriced. No contracts (contract cost =
    list cost). (house-model is what tests give an org price, for code that reads the
    real price book.)"""

    PRICES = {"gpt-4o": Price("list gpt-4o", Decimal("2.50"), Decimal("10")),
              "house-model": Price("list house-model", Decimal("2.50"), Decimal("10")),
              "gpt-4o-mini": Price("list gpt-4o-mini", Decimal("0.15"), Decimal("0.60"))}


def spend_event(ts: dt.datetime, *, team: str = "search", model: str = "gpt-4o",
                project: str = "ranker", input_tokens: int = 1_000_000, **kw: object
                ) -> UsageEvent:
    """One call; by default 1M input tokens of gpt-4o = $2.50."""
    base: dict[str, object] = dict(
        provider="openai", endpoint="chat.completions", model=model, model_requested=model,
        usage_reported=True, input_tokens=input_tokens, cached_input_tokens=0,
        cache_write_tokens=0, output_tokens=0, reasoning_tokens=0, audio_input_tokens=0,
        audio_output_tokens=0, latency_ms=120.0, status_code=200, attempts=1, team=team,
        project=project)
    base.update(kw)
    return UsageEvent(id=uuid7(), ts=ts, **base)  # type: ignore[arg-type]


def record_and_roll_up(engine, events: list[UsageEvent], timezone: str = "UTC") -> None:
    """Insert events as the collector's writer does and run the incremental rollup."""
    if events:
        EventStore(engine).insert(events)
    RollupEngine(engine, timezone=timezone, prices=Book()).run()


HOUSE_PRICE = """[[price]]
model = "house-model"
kind = "list"
effective_from = 2020-01-01
input_per_mtok = "2.50"
output_per_mtok = "10"
"""


def price_house_model(engine, tmp_path: Path) -> None:
    """Give house-model a list price of $2.50/M input in org_prices (the real price
    book then knows it, as Book does)."""
    from models.price_file import apply_prices, load_price_file

    path = tmp_path / "prices.toml"
    path.write_text(HOUSE_PRICE)
    apply_prices(engine, load_price_file(path), source=str(path))
