"""A real SMTP server process for tests and benchmarks: aiosmtpd with STARTTLS and AUTH LOGIN/PLAIN, every
message it accepts kept as a file, parsed back with the email module.

Run as `python -m tests.support.smtp_receiver --port P --dir D [--cert C --key K] [--user U --password W]`;
`SmtpReceiver` starts and stops it (the directory outlives the process: stopped and started again, it keeps
what it received). With a certificate, STARTTLS is required before AUTH and MAIL; without one the server
offers no STARTTLS (and would take a login over the plain connection: what a client must refuse). Every
AUTH attempt is appended to `auth.log`. A message is written (renamed into place) before the server
answers 250, so the directory holds everything the server accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import email
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections import Counter
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

__all__ = ["SmtpReceiver", "make_certificate"]

PROJECT_DIR = Path(__file__).resolve().parents[2]


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 (its own CA: clients trust it as their CA file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sendense test SMTP")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),  # fmt: skip
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


class _Keeper:
    """aiosmtpd handler: each accepted message becomes a file, with the envelope and the login prepended."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(self, server, session, envelope) -> str:
        login = session.auth_data.login.decode() if session.auth_data else ""
        head = (
            f"X-Test-Envelope-From: {envelope.mail_from}\r\n"
            f"X-Test-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
            f"X-Test-Login: {login}\r\n"
            f"X-Test-TLS: {'yes' if session.ssl else 'no'}\r\n"
        ).encode()
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml"
        tmp = self.directory / f".{name}.tmp"
        tmp.write_bytes(head + envelope.original_content)
        tmp.rename(self.directory / name)
        return "250 2.0.0 Message accepted"


def _authenticator(user: str, password: str, log: Path):
    from aiosmtpd.smtp import AuthResult

    def check(server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = auth_data.login.decode() == user and auth_data.password.decode() == password
        with log.open("a") as f:
            f.write(f"{mechanism} {auth_data.login.decode()} tls={'yes' if session.ssl else 'no'} ok={ok}\n")
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return check


async def _serve(args: argparse.Namespace) -> None:
    from aiosmtpd.smtp import SMTP

    tls = None
    if args.cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.cert, args.key)
    keeper = _Keeper(args.dir)
    auth = _authenticator(args.user, args.password, args.dir / "auth.log") if args.user else None
    offered = {m.strip().upper() for m in args.mechanisms.split(",")}
    excluded = [m for m in ("LOGIN", "PLAIN") if m not in offered]

    def factory() -> SMTP:
        return SMTP(keeper, hostname="sendense-test-smtp", tls_context=tls, require_starttls=tls is not None,
                    auth_required=auth is not None, auth_require_tls=tls is not None, authenticator=auth,
                    auth_exclude_mechanism=excluded, enable_SMTPUTF8=True)  # fmt: skip

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, host="127.0.0.1", port=args.port)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="SMTP server (aiosmtpd) that keeps every message it accepts")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--user", default="")
    parser.add_argument("--password", default="")
    parser.add_argument("--mechanisms", default="LOGIN,PLAIN", help="AUTH mechanisms offered")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(_serve(args))


class SmtpReceiver:
    """The server as a process of its own; `messages()` parses what it has accepted so far, oldest first."""

    def __init__(
        self,
        port: int,
        directory: Path,
        *,
        tls: bool = True,
        user: str = "alerts",
        password: str = "s3cret-pw",
        mechanisms: str = "LOGIN,PLAIN",
    ) -> None:
        self.port = port
        self.directory = directory
        self.tls = tls
        self.user = user
        self.password = password
        self.mechanisms = mechanisms
        self.cert: Path | None = None
        self.proc: subprocess.Popen | None = None
        if tls:
            self.cert, self.key = make_certificate(directory.parent / f"{directory.name}-tls")

    def settings_env(self, to: str = "ops@example.test") -> dict[str, str]:
        """The SENDENSE_* settings of a client of this server."""
        return {
            "SENDENSE_SMTP_HOST": "127.0.0.1",
            "SENDENSE_SMTP_PORT": str(self.port),
            "SENDENSE_SMTP_STARTTLS": "true",
            "SENDENSE_SMTP_USER": self.user,
            "SENDENSE_SMTP_PASSWORD": self.password,
            "SENDENSE_SMTP_FROM": "sendense@alerts.example.test",
            "SENDENSE_SMTP_CA_FILE": str(self.cert or ""),
            "SENDENSE_ALERT_EMAIL_TO": to,
        }

    def start(self) -> SmtpReceiver:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "tests.support.smtp_receiver", "--port", str(self.port), "--dir",
                str(self.directory), "--user", self.user, "--password", self.password,
                "--mechanisms", self.mechanisms]  # fmt: skip
        if self.cert:
            args += ["--cert", str(self.cert), "--key", str(self.key)]
        with (self.directory / "server.log").open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(args, cwd=PROJECT_DIR, start_new_session=True, stdout=log, stderr=log,
                                         env={**os.environ, "PYTHONWARNINGS": "ignore"})  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"220"):
                        return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"SMTP receiver exited with {self.proc.returncode}") from None
                time.sleep(0.05)
        raise RuntimeError(f"SMTP receiver on port {self.port} did not answer")

    def stop(self) -> None:
        from tests.support.devstack import DevStack

        if self.proc is not None:
            DevStack.stop_process(self.proc, timeout=5)
            self.proc = None

    def messages(self) -> list[EmailMessage]:
        files = sorted(p for p in self.directory.glob("*.eml"))
        return [email.message_from_bytes(p.read_bytes(), policy=default_policy) for p in files]

    def keys(self) -> Counter:
        """Idempotency keys received, each counted once per message that carried it."""
        return Counter(k for m in self.messages() for k in m.get_all("X-Sendense-Idempotency-Key") or [])

    def auth_attempts(self) -> list[str]:
        log = self.directory / "auth.log"
        return log.read_text().splitlines() if log.exists() else []

    def __enter__(self) -> SmtpReceiver:
        return self

    def __exit__(self, *_) -> None:
        self.stop()


if __name__ == "__main__":
    main()
