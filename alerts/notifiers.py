"""The channels: email over SMTP (stdlib ``smtplib``/``email``; STARTTLS and login
configurable), the outbox (the same email written as an ``.eml`` file under
``<data_dir>/outbox`` when no SMTP host is configured), and a Slack-compatible JSON
webhook.

Header safety: every header value is built from text with control characters
(CR, LF, ...) removed, and addresses are re-checked before sending, so a team or
budget name such as ``"x\\r\\nBcc: evil@example.com"`` can only ever appear in
the body (HTML-escaped there).
"""

from __future__ import annotations

import datetime as dt
import email.policy
import html
import json
import re
import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from alerts.state import AlertRecord
from spendwatch.errors import AlertDeliveryError, ConfigurationError
from spendwatch.settings import Settings

__all__ = ["build_email", "deliver", "safe_header", "send_test", "webhook_payload"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\u0085]+")
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
TIMEOUT = 10.0
#: Headers up to RFC 5322's 998 characters are not folded (some clients show a folded
#: subject with a leading space).
_POLICY = email.policy.default.clone(max_line_length=998)


def safe_header(text: str, limit: int = 200) -> str:
    """``text`` fit for an email header: control characters become spaces."""
    clean = " ".join(_CONTROL.sub(" ", text).split())
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


def _addresses(target: str) -> list[str]:
    return [a for a in (x.strip() for x in target.split(",")) if _EMAIL.fullmatch(a)]


def _facts(alert: AlertRecord) -> list[tuple[str, str]]:
    facts = alert.details.get("facts") or []
    return [(str(k), str(v)) for k, v in facts]  # type: ignore[union-attr]


def _headline(alert: AlertRecord, kind: str) -> str:
    if kind == "resolved":
        when = (alert.resolved_at or dt.datetime.now(dt.UTC)).isoformat(timespec="minutes")
        return f"Resolved: {alert.summary} (cleared at {when} UTC)"
    return str(alert.details.get("headline") or alert.summary)


def build_email(alert: AlertRecord, kind: str, settings: Settings,
                recipients: list[str]) -> EmailMessage:
    """The message for ``alert`` (``kind``: triggered|resolved): a text and an HTML part."""
    subject = ("[spendwatch] " + ("Resolved: " if kind == "resolved" else "") + alert.summary)
    msg = EmailMessage(policy=_POLICY)
    msg["Subject"] = safe_header(subject)
    msg["From"] = safe_header(settings.smtp_from)
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain="spendwatch.local")
    msg["X-Spendwatch-Alert"] = safe_header(f"{alert.id} {kind}")
    headline = _headline(alert, kind)
    facts = _facts(alert)
    top = [(str(n), str(c)) for n, c in alert.details.get("top") or []]  # type: ignore[union-attr]
    top_label = str(alert.details.get("top_label") or "contributors")
    link = str(alert.details.get("link") or settings.dashboard_url)
    width = max((len(k) for k, _ in facts), default=0) + 2
    text = [headline, ""] + [f"{k + ':':<{width}}{v}" for k, v in facts]
    if top:
        text += ["", f"Top {top_label}:"] + [f"  {n:<30} {c:>14}" for n, c in top]
    text += ["", f"Dashboard: {link}", "",
             f"Alert {alert.id}: {alert.rule} / {alert.scope} / {alert.threshold} / "
             f"{alert.period}. You get one message per crossing."]
    msg.set_content("\n".join(text) + "\n")
    e = html.escape
    rows = "".join(f"<tr><th align='left' style='padding:4px 12px 4px 0;color:#555'>{e(k)}</th>"
                   f"<td style='padding:4px 0'>{e(v)}</td></tr>" for k, v in facts)
    top_html = ""
    if top:
        top_html = (f"<h3 style='margin:18px 0 6px'>Top {e(top_label)}</h3><table>"
                    + "".join(f"<tr><td style='padding:2px 16px 2px 0'>{e(n)}</td>"
                              f"<td align='right'>{e(c)}</td></tr>" for n, c in top)
                    + "</table>")
    color = "#2e7d32" if kind == "resolved" else (
        "#c62828" if alert.severity == "critical" else "#ef6c00")
    body = (
        "<!doctype html><html><body style='font-family:Arial,Helvetica,sans-serif;"
        "color:#222;max-width:640px'>"
        f"<div style='border-left:6px solid {color};padding:8px 16px;background:#fafafa'>"
        f"<h2 style='margin:4px 0 12px;font-size:18px'>{e(headline)}</h2>"
        f"<table style='border-collapse:collapse;font-size:14px'>{rows}</table>{top_html}"
        f"<p style='margin:18px 0 6px'><a href='{e(link, quote=True)}' style='background:"
        f"{color};color:#fff;padding:8px 14px;text-decoration:none;border-radius:4px'>"
        "Open the dashboard</a></p></div>"
        f"<p style='font-size:12px;color:#777'>Alert {alert.id}: {e(alert.rule)} / "
        f"{e(alert.scope)} / {e(alert.threshold)} / {e(alert.period)}. "
        "You get one message per crossing.</p></body></html>")
    msg.add_alternative(body, subtype="html")
    return msg


def webhook_payload(alert: AlertRecord, kind: str, settings: Settings) -> dict[str, object]:
    """A Slack-compatible body: ``text`` (fallback) and ``blocks``."""
    headline = _headline(alert, kind)
    link = str(alert.details.get("link") or settings.dashboard_url)
    facts = "\n".join(f"*{k}:* {v}" for k, v in _facts(alert))
    return {
        "text": f"{headline} <{link}|dashboard>",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": headline[:150]}},
            *([{"type": "section", "text": {"type": "mrkdwn", "text": facts[:2900]}}]
              if facts else []),
            {"type": "context", "elements": [{"type": "mrkdwn", "text":
                f"<{link}|Open the dashboard> · alert {alert.id} ({kind})"}]},
        ],
    }


def _smtp_send(settings: Settings, msg: EmailMessage, recipients: list[str]) -> str:
    try:
        if settings.smtp_port == 465:  # implicit TLS ("SMTPS")
            client: smtplib.SMTP = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port,
                                                    timeout=TIMEOUT,
                                                    context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=TIMEOUT)
        with client as smtp:
            if settings.smtp_starttls and settings.smtp_port != 465:
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password)
            smtp.send_message(msg, from_addr=safe_header(settings.smtp_from),
                              to_addrs=recipients)
    except (OSError, smtplib.SMTPException) as exc:
        raise AlertDeliveryError(
            f"SMTP {settings.smtp_host}:{settings.smtp_port}: {type(exc).__name__}: {exc}; "
            f"check smtp_host/smtp_port/smtp_user (the message is retried on the next run)"
        ) from exc
    return f"email to {', '.join(recipients)} via {settings.smtp_host}:{settings.smtp_port}"


def _outbox_write(settings: Settings, msg: EmailMessage, name: str) -> str:
    folder = Path(settings.data_dir) / "outbox"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.eml"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(msg.as_bytes())
        tmp.replace(path)
    except OSError as exc:
        raise AlertDeliveryError(f"cannot write the outbox {folder}: {exc}; make it "
                                 f"writable or set smtp_host") from exc
    return f"email written to {path} (no smtp_host set)"


def _post(url: str, payload: dict[str, object]) -> str:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "User-Agent": "spendwatch-alerts"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        raise AlertDeliveryError(f"webhook {url} answered HTTP {exc.code}; check the URL "
                                 f"(retried on the next run)") from exc
    except (OSError, urllib.error.URLError) as exc:
        raise AlertDeliveryError(f"webhook {url}: {exc}; check the URL and the network "
                                 f"(retried on the next run)") from exc
    if not 200 <= status < 300:
        raise AlertDeliveryError(f"webhook {url} answered HTTP {status}")
    return f"webhook {url}"


def deliver(alert: AlertRecord, kind: str, channel: str, target: str, settings: Settings,
            name: str) -> str:
    """Send one notification; a description of where it went, or AlertDeliveryError."""
    if channel == "webhook":
        return _post(target, webhook_payload(alert, kind, settings))
    recipients = _addresses(target)
    if not recipients:
        raise AlertDeliveryError(f"no valid address in {target!r}; fix the budget file")
    msg = build_email(alert, kind, settings, recipients)
    if settings.smtp_host:
        return _smtp_send(settings, msg, recipients)
    return _outbox_write(settings, msg, name)


def send_test(settings: Settings, channel: str, to: str | None = None) -> str:
    """``spendwatch alerts test``: one test message over ``channel`` (email|webhook)."""
    now = dt.datetime.now(dt.UTC)
    alert = AlertRecord(0, "test", "*", "-", now.date().isoformat(), "triggered", "warning",
                        "Test message from spendwatch", None, None,
                        {"headline": "Test message from spendwatch: alerts reach you",
                         "facts": [["Sent at", now.isoformat(timespec="seconds")],
                                   ["Channel", channel]],
                         "link": settings.dashboard_url}, now, None)
    if channel == "webhook":
        url = to or settings.alert_webhook_url
        if not url:
            raise ConfigurationError("no webhook URL: pass --to URL or set alert_webhook_url "
                                     "(SPENDWATCH_ALERT_WEBHOOK_URL)")
        return deliver(alert, "triggered", "webhook", url, settings, "test")
    if not to:
        raise ConfigurationError("pass --to ADDRESS for the test email")
    if not _EMAIL.fullmatch(to):
        raise ConfigurationError(f"--to {to!r} is not an email address; give e.g. "
                                 f"owner@example.com")
    return deliver(alert, "triggered", "email", to, settings,
                   f"test-{now.strftime('%Y%m%dT%H%M%S')}")
