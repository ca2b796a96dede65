"""The content-management policy: per profile, what to do with each kind of active
content of each file family, and with files that cannot be processed.

Switch values: ``allow`` keeps the content, ``sanitise`` removes (or rebuilds) it,
``disallow`` blocks the whole file when the content is present. Fallbacks: ``relay``
passes the original file, ``block`` answers with a block page. A profile in
``settings.toml`` (``[policy.NAME]``, ``[policy.NAME.pdf]``, …) only needs the keys
that differ from the built-in defaults: sanitise everything, block what cannot be
processed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from gicap.cdr.types import SWITCH_VALUES

FALLBACK_VALUES = ("relay", "block")

#: Every family's switches; all default to "sanitise".
SWITCHES: dict[str, tuple[str, ...]] = {
    "pdf": (
        "javascript",
        "actions",
        "embedded_files",
        "embedded_images",
        "acroform",
        "xfa",
        "external_hyperlinks",
        "internal_hyperlinks",
        "metadata",
    ),
    "office": (
        "macros",
        "embedded_files",
        "embedded_images",
        "external_hyperlinks",
        "internal_hyperlinks",
        "dynamic_data_exchange",
        "metadata",
        "review_comments",
    ),
    "image": ("metadata",),
    "svg": ("scripts", "foreign_objects", "hyperlinks"),
    # HTML files (browsed pages are relayed before any engine: see web_pages)
    "html": ("external_images",),
    "text": ("formulas",),
    # text a desktop runs when it is opened: allow delivers it, anything else blocks
    "script": ("scripts",),
}
# Families that share another family's switches.
SWITCH_ALIASES = {"office_legacy": "office", "rtf": "office"}

#: What happens to files that cannot be disarmed, and to web pages.
FALLBACKS: dict[str, str] = {
    "unsupported": "block",  # no engine handles the detected type (or none detected)
    "unprocessable": "block",  # malformed, a bomb, a timeout, a crash, a partial (206) body
    "encrypted": "block",  # password-protected: cannot be inspected
    "oversize": "block",  # larger than cdr.max_file_size
    "web_pages": "relay",  # HTML pages browsed (not downloaded as attachments)
}

ARCHIVE_LIMITS: dict[str, int] = {
    "max_depth": 3,
    "max_members": 1000,
    "max_total_members": 10_000,
    "max_expanded_bytes": 1024 * 1024 * 1024,
    "max_ratio": 100,
}


class PolicyError(ValueError):
    """Invalid policy; the message names the key and the allowed values."""


@dataclass(frozen=True)
class Profile:
    name: str
    switches: Mapping[str, Mapping[str, str]]
    fallbacks: Mapping[str, str]
    archive: Mapping[str, int]

    def family_switches(self, family: str) -> Mapping[str, str]:
        return self.switches.get(SWITCH_ALIASES.get(family, family), MappingProxyType({}))

    def fallback(self, case: str) -> str:
        return self.fallbacks[case]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.fallbacks)
        out.update({fam: dict(sw) for fam, sw in self.switches.items()})
        out["archive"] = dict(self.archive)
        return out


@dataclass(frozen=True)
class Policy:
    profiles: Mapping[str, Profile] = field(
        default_factory=lambda: MappingProxyType({"default": build_profile("default", {})})
    )
    default_profile: str = "default"

    def profile(self, name: str | None) -> Profile:
        """The named profile; ``KeyError`` for an unknown one (never a silent default)."""
        return self.profiles[name or self.default_profile]

    def fingerprint(self) -> str:
        """Changes whenever any profile does: part of the CDR services' ISTag."""
        data = {n: p.as_dict() for n, p in sorted(self.profiles.items())}
        blob = json.dumps([self.default_profile, data], sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


def build_profile(
    name: str, raw: Mapping[str, Any], known: Mapping[str, tuple[str, ...]] | None = None
) -> Profile:
    """A profile from its table in the settings. ``known``: every family's switches
    (the plugins' too: ``PluginHost.policy_switches``); by default the built-in ones."""
    raw = {str(k).lower(): v for k, v in raw.items()}
    switches: dict[str, Mapping[str, str]] = {}
    for family, names in (SWITCHES if known is None else known).items():
        given = raw.pop(family, {}) or {}
        if not isinstance(given, Mapping):
            raise PolicyError(f"policy.{name}.{family} must be a table of switches")
        given = {str(k).lower(): v for k, v in given.items()}
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise PolicyError(
                f"policy.{name}.{family}: unknown switch(es) {', '.join(unknown)}; "
                f"known: {', '.join(names)}"
            )
        values = {}
        for switch in names:
            value = str(given.get(switch, "sanitise")).lower()
            if value == "sanitize":
                value = "sanitise"
            if value not in SWITCH_VALUES:
                raise PolicyError(
                    f"policy.{name}.{family}.{switch} must be "
                    f"{' | '.join(SWITCH_VALUES)}, got {given[switch]!r}"
                )
            values[switch] = value
        switches[family] = MappingProxyType(values)
    fallbacks = {}
    for case, default in FALLBACKS.items():
        value = str(raw.pop(case, default)).lower()
        if value not in FALLBACK_VALUES:
            raise PolicyError(f"policy.{name}.{case} must be relay | block, got {value!r}")
        fallbacks[case] = value
    archive_raw = raw.pop("archive", {}) or {}
    archive = {}
    for key, default in ARCHIVE_LIMITS.items():
        value = archive_raw.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise PolicyError(f"policy.{name}.archive.{key} must be an integer >= 0, got {value!r}")
        archive[key] = value
    unknown_archive = sorted(set(map(str.lower, archive_raw)) - set(ARCHIVE_LIMITS))
    if unknown_archive:
        raise PolicyError(f"policy.{name}.archive: unknown key(s) {', '.join(unknown_archive)}")
    if raw:
        raise PolicyError(f"policy.{name}: unknown key(s) {', '.join(sorted(raw))}")
    return Profile(
        name, MappingProxyType(switches), MappingProxyType(fallbacks), MappingProxyType(archive)
    )


def build_policy(
    raw: Mapping[str, Any] | None,
    default_profile: str = "default",
    known: Mapping[str, tuple[str, ...]] | None = None,
) -> Policy:
    raw = {str(k).lower(): v for k, v in (raw or {}).items()}
    raw.setdefault("default", {})
    profiles = {}
    for name, body in raw.items():
        if not isinstance(body, Mapping):
            raise PolicyError(f"policy.{name} must be a table (a profile)")
        profiles[name] = build_profile(name, body, known)
    if default_profile not in profiles:
        raise PolicyError(
            f"cdr.default_profile {default_profile!r} is not a profile; "
            f"profiles: {', '.join(sorted(profiles))}"
        )
    return Policy(MappingProxyType(profiles), default_profile)
