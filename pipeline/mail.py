"""E-mail through the configured SMTP server (STARTTLS, login): alert notifications, and reports with attachments."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formatdate

__all__ = ["Attachment", "InlineImage", "MailNotSent", "SmtpConfig", "SmtpSession", "compose", "send_mail"]


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Where and how to send: the SENDENSE_SMTP_* settings as one value."""

    host: str
    port: int = 587
    starttls: bool = True
    user: str = ""
    password: str = ""
    sender: str = "sendense@localhost"
    timeout: float = 10.0
    ca_file: str = ""
    """CA bundle that verifies the server's certificate (empty: the system's)."""

    @classmethod
    def from_settings(cls, s) -> SmtpConfig:
        """From `AlertSettings` (the SMTP settings live there, shared by alerts and reports)."""
        return cls(s.smtp_host, s.smtp_port, s.smtp_starttls, s.smtp_user, s.smtp_password, s.smtp_from,
                   s.smtp_timeout, s.smtp_ca_file)  # fmt: skip

    @property
    def domain(self) -> str:
        """The sender's domain, the right-hand side of the Message-IDs we make."""
        return self.sender.rpartition("@")[2] or "localhost"


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content: bytes
    mime_type: str = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class InlineImage:
    """A picture the HTML part shows as `<img src="cid:{content_id}">` (mail clients block data: URIs)."""

    content_id: str
    content: bytes
    mime_type: str = "image/png"


class MailNotSent(Exception):
    """The server did not take a message. `permanent`: it refused this message for good (a 5xx to its
    content); anything else (no connection, no STARTTLS, a login refused, a 4xx) may work later."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def compose(
    *,
    subject: str,
    text: str,
    sender: str,
    to: Sequence[str],
    html: str | None = None,
    message_id: str | None = None,
    headers: Mapping[str, str | Sequence[str]] | None = None,
    attachments: Sequence[Attachment] = (),
    inline: Sequence[InlineImage] = (),
    date=None,
) -> EmailMessage:
    """A message with a plain-text part, an HTML alternative when given (with the pictures it shows by Content-ID,
    `inline`), and attachments. A header whose value is a sequence is repeated once per value."""
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = format_datetime(date) if date is not None else formatdate(usegmt=True)
    if message_id:
        msg["Message-ID"] = message_id
    for name, value in (headers or {}).items():
        for one in [value] if isinstance(value, str) else value:
            msg[name] = one
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
        html_part = msg.get_payload()[-1]
        for image in inline:
            maintype, _, subtype = image.mime_type.partition("/")
            html_part.add_related(image.content, maintype=maintype, subtype=subtype, cid=f"<{image.content_id}>")
    for a in attachments:
        maintype, _, subtype = a.mime_type.partition("/")
        msg.add_attachment(a.content, maintype=maintype, subtype=subtype or "octet-stream", filename=a.filename)
    return msg


class SmtpSession:
    """One SMTP connection, opened (TLS, login) at the first message and kept for the next ones.

    With `starttls` on, a server that does not offer STARTTLS is refused before anything is sent: the
    password never crosses a plain connection. After any error the connection is dropped; the next
    message opens a new one.
    """

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._smtp: smtplib.SMTP | None = None

    def _where(self) -> str:
        return f"SMTP server {self.config.host}:{self.config.port}"

    def _open(self) -> smtplib.SMTP:
        c = self.config
        try:
            smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout)
        except (OSError, smtplib.SMTPException) as exc:
            raise MailNotSent(f"{self._where()} cannot be reached: {exc}") from exc
        try:
            smtp.ehlo()
            if c.starttls:
                if not smtp.has_extn("starttls"):
                    raise MailNotSent(
                        f"{self._where()} does not offer STARTTLS; not logging in over a plain connection "
                        "(SENDENSE_SMTP_STARTTLS=false sends without it)"
                    )
                smtp.starttls(context=ssl.create_default_context(cafile=c.ca_file or None))
                smtp.ehlo()
            if c.user:
                smtp.login(c.user, c.password)
        except MailNotSent:
            smtp.close()
            raise
        except smtplib.SMTPAuthenticationError as exc:
            smtp.close()
            raise MailNotSent(
                f"{self._where()} refused the login of {c.user!r}: {exc.smtp_code} {exc.smtp_error!r}"
            ) from None
        except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
            smtp.close()
            raise MailNotSent(f"{self._where()}: {type(exc).__name__}: {exc}") from exc
        return smtp

    def send(self, message: EmailMessage) -> None:
        """Hand one message to the server; returns once the server has accepted it (its 250 to the data)."""
        if self._smtp is None:
            self._smtp = self._open()
        try:
            self._smtp.send_message(message)
        except smtplib.SMTPDataError as exc:
            self.close()
            detail = f"{self._where()} refused the message: {exc.smtp_code} {exc.smtp_error!r}"
            raise MailNotSent(detail, permanent=exc.smtp_code >= 500) from exc
        except (OSError, smtplib.SMTPException) as exc:
            # Sender or recipients refused, a 4xx, a dropped connection: the same for every message until
            # someone fixes the server or the settings, so nothing is given up.
            self.close()
            raise MailNotSent(f"{self._where()}: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()

    def __enter__(self) -> SmtpSession:
        return self

    def __exit__(self, *_) -> None:
        self.close()


def send_mail(config: SmtpConfig, message: EmailMessage) -> None:
    """Send one message on a connection of its own (raises MailNotSent)."""
    with SmtpSession(config) as session:
        session.send(message)
