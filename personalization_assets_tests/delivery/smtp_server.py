"""A real SMTP server on loopback for the delivery tests: aiosmtpd's controller on 127.0.0.1 and an
ephemeral port, started and stopped by the test, keeping every message it accepted."""

from __future__ import annotations

import email
import email.policy
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller

from personalization_assets_tests.loopback import free_port


@dataclass
class Recorder:
    """The handler: accepts every message unless `refuse` answers a command (MAIL, RCPT, DATA) with a
    reply; `before_mail` runs as each MAIL command arrives, with the count of messages accepted so far."""

    accepted: list[email.message.EmailMessage] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)
    refuse: Callable[[str], str | None] = lambda command: None
    before_mail: Callable[[int], None] = lambda accepted: None
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _refusal(self, command: str) -> str | None:
        reply = self.refuse(command)
        if reply:
            self.refused += 1
        return reply

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.before_mail(len(self.accepted))
        if reply := self._refusal("MAIL"):
            return reply
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if reply := self._refusal("RCPT"):
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if reply := self._refusal("DATA"):
            return reply
        with self.lock:
            self.accepted.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
            self.recipients += envelope.rcpt_tos
        return f"250 2.0.0 Ok: queued as {len(self.accepted)}"

    def message_ids(self) -> list[str]:
        return [message["Message-ID"] for message in self.accepted]


@contextmanager
def smtp_server(recorder: Recorder, **controller_options) -> Iterator[Controller]:
    """The server, listening on 127.0.0.1 only, for the `with` block."""
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port(), **controller_options)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()
