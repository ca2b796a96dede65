"""The built-in ``echo`` services: pass every message through unchanged.

Useful to check that a proxy is wired to gicap, and as the baseline of the benchmark.
Registered through the ``gicap`` entry point exactly like an external plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gicap import hookimpl
from gicap.services.base import Outcome, Service, Transaction, Unmodified

if TYPE_CHECKING:
    from gicap.config import Settings


class EchoService(Service):
    description = "gicap echo: returns the message unchanged"

    def __init__(self, name: str, method: str) -> None:
        self.name = name
        self.method = method

    def early(self, txn: Transaction) -> Outcome | None:
        return Unmodified()

    def on_preview(self, txn: Transaction) -> Outcome | None:
        return Unmodified()

    def respond(self, txn: Transaction) -> Outcome:
        return Unmodified()


@hookimpl
def gicap_register_services(settings: Settings) -> list[Service]:
    return [EchoService("echo", "RESPMOD"), EchoService("echo-req", "REQMOD")]
