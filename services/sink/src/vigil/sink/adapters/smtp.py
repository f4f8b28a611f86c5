"""The `email` sink: one multipart/alternative message (plain text and HTML) over SMTP.

The message is the default report (`vigil.sink.report`): its title is the subject, and its
plain-text and HTML renderings are the two parts.

`tls: starttls` upgrades the connection and refuses a server that cannot; `tls: tls` is
implicit TLS from the first byte (port 465); `tls: none` is for a relay on the same host
or network. With `username`, the password is read from its Secret at each attempt through
the SecretResolver (as the webhook sink reads its URL). The Message-ID is derived from the
idempotency key, so every attempt of one delivery carries the same one and a receiver can
drop a repeat. SMTP 5xx replies are permanent (the server refused this message or these
credentials), 4xx transient, and a connection that fails or times out is transient.
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib
import structlog

from vigil.common.durations import parse_duration
from vigil.common.errors import PermanentError, TransientError
from vigil.common.secrets import SecretKey, SecretResolver, SecretUnavailable
from vigil.common.sink_resources import EmailSinkSpec
from vigil.sink.notifiers import Notification
from vigil.sink.report import ReportLinks, build_report, html, plain_text

log = structlog.get_logger(__name__)

MAX_SUBJECT = 250


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailText:
    subject: str
    text: str
    html: str


def email_text(notification: Notification, *, links: ReportLinks) -> EmailText:
    """Subject, plain text and HTML: the default report (a notify step's own title and
    message replace its title and text). Everything from the alert is escaped."""
    report = build_report(notification, links=links)
    subject = " ".join(report.title.split())[:MAX_SUBJECT]  # a header: no line breaks
    return EmailText(subject=subject, text=plain_text(report), html=html(report))


def message_id(idempotency_key: str, sender: str) -> str:
    """The same Message-ID for every attempt of one delivery."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
    return f"<{digest}.vigil@{sender.rsplit('@', 1)[1]}>"


def email_message(
    notification: Notification, spec: EmailSinkSpec, *, links: ReportLinks
) -> EmailMessage:
    text = email_text(notification, links=links)
    message = EmailMessage()
    message["Subject"] = text.subject
    message["From"] = spec.from_
    message["To"] = ", ".join(spec.to)
    if spec.cc:
        message["Cc"] = ", ".join(spec.cc)
    message["Message-ID"] = message_id(notification.idempotency_key, spec.from_)
    message["X-Vigil-Idempotency-Key"] = notification.idempotency_key
    message.set_content(text.text)
    message.add_alternative(text.html, subtype="html")
    return message


def _translated(exc: aiosmtplib.SMTPException) -> TransientError | PermanentError:
    """SMTP's own classes: 5xx permanent, 4xx and broken connections transient."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        reason = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        if all(code >= 500 for code in codes):
            return PermanentError(f"SMTP server refused every recipient: {reason}")
        return TransientError(f"SMTP server refused recipients for now: {reason}")
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code >= 500:
        return PermanentError(f"SMTP server answered {exc.code}: {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPResponseException) and 400 <= exc.code < 500:
        return TransientError(f"SMTP server answered {exc.code}: {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return PermanentError(f"SMTP server: {exc}")
    return TransientError(f"SMTP: {type(exc).__name__}: {exc}")


class EmailNotifier:
    def __init__(
        self,
        *,
        secrets: SecretResolver,
        links: ReportLinks,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self._secrets = secrets
        self._links = links
        self._tls_context = tls_context  # None: the system's trusted CAs

    async def send(self, notification: Notification) -> None:
        spec = notification.resource.spec.email
        if spec is None:
            msg = f"sink {notification.sink_name} has type email but no `email` settings"
            raise PermanentError(msg)
        password = await self._password(notification, spec)
        message = email_message(notification, spec, links=self._links)
        try:
            refused, _ = await aiosmtplib.send(
                message,
                hostname=spec.host,
                port=spec.port,
                use_tls=spec.tls == "tls",
                start_tls=spec.tls == "starttls",
                username=spec.username,
                password=password,
                tls_context=self._tls_context,
                timeout=parse_duration(spec.timeout),
            )
        except aiosmtplib.SMTPException as exc:
            raise _translated(exc) from exc
        except (OSError, ssl.SSLError) as exc:
            raise TransientError(f"SMTP: {type(exc).__name__}: {exc}") from exc
        if refused:
            # The others have it: a retry would send it to them twice. Said, not retried.
            log.warning(
                "email_recipients_refused",
                sink=notification.sink_name,
                refused={address: f"{code} {text}" for address, (code, text) in refused.items()},
            )
        log.info(
            "email_sent",
            sink=notification.sink_name,
            recipients=len(spec.to + spec.cc) - len(refused),
        )

    async def _password(self, notification: Notification, spec: EmailSinkSpec) -> str | None:
        ref = spec.password_secret_ref
        if ref is None:
            return None
        secret = SecretKey(
            namespace=notification.resource.metadata.namespace, name=ref.name, key=ref.key
        )
        try:
            return await self._secrets.resolve(secret)
        except SecretUnavailable as exc:
            log.warning("sink_secret_unavailable", sink=notification.sink_name, error=str(exc))
            raise
