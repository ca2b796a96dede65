"""What was found in a file, per policy switch, and the result that follows from it.

Engines call :meth:`Report.hit` for every piece of active content they find. It records
the finding and answers whether to remove it now (the switch says ``sanitise``). The
switches are applied in one pass: nothing is written before the whole file has been
looked at, so a ``disallow`` finding anywhere still blocks the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gicap.cdr.types import Action, DisarmResult, FileType

#: A pseudo-switch for repairs that are always made (not policy-driven): parts nothing
#: refers to, bytes outside the zip entries, data after the end of an RTF document.
STRUCTURE = "structure"


def _plural(kind: str, n: int) -> str:
    return kind if n == 1 else f"{kind} ×{n}"


@dataclass
class Report:
    switches: Mapping[str, str]
    #: switch -> verb -> kind -> count, in the order found
    found: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)

    def policy(self, switch: str) -> str:
        value = str(self.switches.get(switch, "sanitise")).lower()
        if value == "sanitize":
            value = "sanitise"
        # anything unexpected is treated as "sanitise": removing is the safe default
        return value if value in ("allow", "disallow") else "sanitise"

    def hit(self, switch: str, kind: str, verb: str = "removed", n: int = 1) -> bool:
        """Record ``n`` pieces of ``kind`` content under ``switch``; ``True`` when they
        must be removed (``verb`` says how: "removed" or "neutralised")."""
        if n <= 0:
            return False
        kinds = self.found.setdefault(switch, {}).setdefault(verb, {})
        kinds[kind] = kinds.get(kind, 0) + n
        return switch == STRUCTURE or self.policy(switch) == "sanitise"

    def structure(self, kind: str, n: int = 1) -> None:
        self.hit(STRUCTURE, kind, "removed", n)

    def _details(self, switch: str) -> list[tuple[str, str]]:
        """(verb, detail) per verb recorded under ``switch``."""
        return [
            (verb, ", ".join(_plural(k, n) for k, n in kinds.items()))
            for verb, kinds in self.found.get(switch, {}).items()
        ]

    @property
    def changes(self) -> bool:
        """Whether anything is to be removed (the file must be rebuilt)."""
        return any(
            switch == STRUCTURE or self.policy(switch) == "sanitise" for switch in self.found
        )

    def disallowed(self) -> list[str]:
        return [s for s in self.found if s != STRUCTURE and self.policy(s) == "disallow"]

    def blocked(self, what: str = "") -> DisarmResult | None:
        """The ``blocked`` result when a disallowed switch was hit, else ``None``."""
        hits = self.disallowed()
        if not hits:
            return None
        actions = []
        reasons = []
        for switch in hits:
            detail = "; ".join(d for _, d in self._details(switch))
            actions.append(Action(switch, "blocked", detail))
            reasons.append(f"{switch} ({detail})")
        prefix = f"{what}: " if what else ""
        return DisarmResult(
            "blocked",
            actions=actions + self._kept(),
            reason=f"{prefix}disallowed content: {'; '.join(reasons)}",
        )

    def _kept(self) -> list[Action]:
        return [
            Action(switch, "kept", "; ".join(d for _, d in self._details(switch)))
            for switch in self.found
            if switch != STRUCTURE and self.policy(switch) == "allow"
        ]

    def actions(self) -> list[Action]:
        """One action per (switch, verb) done, then one ``kept`` per allowed switch."""
        done = [
            Action(switch, verb, detail)  # type: ignore[arg-type]
            for switch in self.found
            if switch == STRUCTURE or self.policy(switch) == "sanitise"
            for verb, detail in self._details(switch)
        ]
        return done + self._kept()

    def rebuilt(self, output_type: FileType | None = None) -> DisarmResult:
        return DisarmResult("rebuilt", actions=self.actions(), output_type=output_type)

    def unmodified(self) -> DisarmResult:
        return DisarmResult("unmodified", actions=self._kept())
