"""A real SMTP server for tests: aiosmtpd on a free loopback port, messages kept in memory.

Registered from ``tests/conftest.py`` as a plugin; the ``smtp_server`` fixture is session-wide,
so tests call ``smtp_server.clear()`` first. Recipients at ``refused.example`` are refused with
a permanent ``550`` so tests can see a bounce at the door.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.services import free_port

REFUSED_DOMAIN = "refused.example"


@dataclass
class Received:
    """One message as the server received it."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class _Handler:
    messages: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower().endswith("@" + REFUSED_DOMAIN):
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.lock:
            self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"


class SmtpServer:
    """The running server: where it listens and what it received."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self._handler = _Handler()
        self._controller = Controller(self._handler, hostname=self.host, port=self.port)

    @property
    def messages(self) -> list[Received]:
        with self._handler.lock:
            return list(self._handler.messages)

    def clear(self) -> None:
        with self._handler.lock:
            self._handler.messages.clear()

    def config(self) -> dict[str, object]:
        """App settings that send mail here (no TLS, no login)."""
        return {"MAIL_SERVER": self.host, "MAIL_PORT": self.port, "MAIL_USE_TLS": False}

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()
