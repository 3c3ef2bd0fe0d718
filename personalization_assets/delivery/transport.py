"""How a message reaches a mail server: an SMTP connection (STARTTLS or implicit TLS), or the
embedded outbox that writes each message as an `.eml` file. Both answer every message with an SMTP
reply code and text, so the send loop (`delivery/send.py`) treats them alike.
"""

from __future__ import annotations

import hashlib
import os
import re
import smtplib
import ssl
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

# A reply code for "no reply": the connection failed or was lost. Treated as temporary (retried).
NO_REPLY = 0
SECURITY_MODES = ("starttls", "tls", "none")


class SessionRefused(Exception):
    """The server refused the session itself (TLS, login, greeting, MAIL FROM): no message can go
    through it, so the send stops instead of bouncing every recipient."""


# The enhanced status codes (RFC 3463) that say the recipient's address is bad for good: X.1.x
# addressing (no such mailbox, bad syntax, moved) and 5.2.1 (mailbox disabled).
_RECIPIENT_STATUS = re.compile(r"^\s*5\.(1\.\d{1,3}|2\.1)\b")
_ANY_STATUS = re.compile(r"^\s*[245]\.\d{1,3}\.\d{1,3}\b")


@dataclass(frozen=True)
class Reply:
    code: int
    text: str
    # The command answered: "MAIL", "RCPT", "DATA", or "" (the session, or no reply at all).
    stage: str = ""

    @property
    def accepted(self) -> bool:
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    @property
    def answered(self) -> bool:
        """Whether the server answered about this message (a lost connection is no answer)."""
        return self.code != NO_REPLY

    @property
    def recipient_rejected(self) -> bool:
        """A permanent refusal of the recipient's address itself (a hard bounce), which suppresses
        it: a 5xx reply to RCPT whose enhanced status is 5.1.x or 5.2.1, or 550/551/553 without one.
        Any other 5xx (a policy, relay, reputation or content refusal: 5.7.x, or at DATA) is the
        sender's problem, not the recipient's, and suppresses nobody."""
        if not self.permanent or self.stage != "RCPT":
            return False
        if _ANY_STATUS.match(self.text):
            return bool(_RECIPIENT_STATUS.match(self.text))
        return self.code in (550, 551, 553)

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip() if self.code else self.text


class MailConnection(ABC):
    """One connection to where messages go; not shared between threads."""

    @abstractmethod
    def send(self, envelope_from: str, recipient: str, raw: bytes) -> Reply: ...

    def close(self) -> None:  # noqa: B027 - a connection with nothing to close
        pass


class SmtpConnection(MailConnection):
    """One SMTP session, opened on first use and again after any failure."""

    def __init__(self, host: str, port: int, security: str, username: str | None, password: str | None, timeout: float,
                 ca_file: str | None = None, data_timeout: float | None = None):
        self.host, self.port, self.security, self.timeout = host, port, security, timeout
        # RFC 5321 4.5.3.2.6: wait up to 10 minutes for the reply to the end of a message's data; a
        # client that gives up sooner resends a message the server may have accepted.
        self.data_timeout = max(timeout, data_timeout or timeout)
        self._credentials = (username, password) if username else None
        self._ca_file = ca_file
        self._smtp: smtplib.SMTP | None = None

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self._ca_file)

    def _open(self) -> smtplib.SMTP:
        if self.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self._tls())
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        smtp.ehlo()
        if self.security == "starttls":
            smtp.starttls(context=self._tls())  # raises when the server does not offer STARTTLS: never falls back to plain text
            smtp.ehlo()
        if self._credentials:
            smtp.login(*self._credentials)
        return smtp

    def _session(self) -> smtplib.SMTP | Reply:
        """The open session, or the temporary reply that says why there is none yet."""
        if self._smtp is not None:
            return self._smtp
        try:
            self._smtp = self._open()
            return self._smtp
        except smtplib.SMTPResponseException as exc:  # a reply to the greeting, EHLO, STARTTLS or AUTH
            reply = Reply(exc.smtp_code, _text(exc.smtp_error))
        except smtplib.SMTPNotSupportedError as exc:  # no STARTTLS, no AUTH: never falls back to plain text
            raise SessionRefused(f"{self.host}:{self.port}: {exc}") from None
        except ssl.SSLCertVerificationError as exc:  # an untrusted certificate stays untrusted: no retry helps
            raise SessionRefused(f"{self.host}:{self.port}: the server's certificate is not trusted ({exc.verify_message}); "
                                 "set CPO_SMTP_CA_FILE to its CA") from None
        except (smtplib.SMTPException, OSError) as exc:  # refused, timed out, TLS failure
            reply = Reply(NO_REPLY, f"{type(exc).__name__}: {exc}")
        if reply.permanent:  # e.g. 535 bad credentials, 554 no service
            raise SessionRefused(f"{self.host}:{self.port} refused the session: {reply}")
        return reply

    def send(self, envelope_from: str, recipient: str, raw: bytes) -> Reply:
        session = self._session()
        if isinstance(session, Reply):
            return session
        stage = "MAIL"
        try:
            code, text = session.mail(envelope_from)
            if 500 <= code < 600:  # the sender itself refused: every message would bounce
                raise SessionRefused(f"{self.host}:{self.port} refused the sender {envelope_from}: {code} {_text(text)}")
            if code == 250:
                stage = "RCPT"
                code, text = session.rcpt(recipient)
            if code in (250, 251):
                stage = "DATA"
                session.sock.settimeout(self.data_timeout)
                try:
                    code, text = session.data(raw)
                finally:
                    if session.sock is not None:
                        session.sock.settimeout(self.timeout)
            reply = Reply(code, _text(text), stage)
        except smtplib.SMTPResponseException as exc:  # DATA refused
            reply = Reply(exc.smtp_code, _text(exc.smtp_error), stage)
        except (smtplib.SMTPException, OSError) as exc:  # lost connection, timed out
            self.close()
            return Reply(NO_REPLY, f"{type(exc).__name__} at {stage}: {exc}", stage)
        if reply.code == 421 or not reply.accepted:
            # 421: the server is closing the session. Any other refusal leaves a transaction
            # half-open: reset it, or start afresh when the reset fails.
            if reply.code == 421:
                self.close()
            else:
                try:
                    self._smtp.rset()
                except (smtplib.SMTPException, OSError):
                    self.close()
        return reply

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (smtplib.SMTPException, OSError):
                self._smtp.close()
            self._smtp = None


def _text(text: object) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)


class OutboxConnection(MailConnection):
    """The embedded transport: each message as `<hash of its Message-ID>.eml` in a folder (a
    pickup directory), written beside its name and renamed into place."""

    def __init__(self, folder: Path):
        self.folder = folder

    def send(self, envelope_from: str, recipient: str, raw: bytes) -> Reply:
        self.folder.mkdir(parents=True, exist_ok=True)
        headers = raw.split(b"\r\n\r\n", 1)[0]
        found = re.search(rb"(?:^|\r\n)Message-ID: ([^\r\n]+)", headers)
        if found is None:
            return Reply(554, "the outbox takes only messages with a Message-ID")
        message_id = found.group(1)
        path = self.folder / f"{hashlib.sha256(message_id).hexdigest()[:32]}.eml"
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(raw)
        os.replace(partial, path)
        return Reply(250, f"written to {path.name}")
