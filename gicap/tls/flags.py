"""Certificate-chain verification flags, named as OpenSSL names them.

Operators copy these names from OpenSSL documentation or from other servers'
configuration (``X509_V_FLAG_CRL_CHECK``), so the parser accepts OpenSSL's names,
Python's ``ssl.VERIFY_*`` names and bare names alike.
"""

from __future__ import annotations

import re
import ssl

# Canonical name -> mask. CRL_CHECK_ALL is Python's VERIFY_CRL_CHECK_CHAIN, which
# includes the leaf check: OpenSSL ignores CRL_CHECK_ALL unless CRL_CHECK is set too.
FLAGS: dict[str, int] = {
    "X509_STRICT": int(ssl.VERIFY_X509_STRICT),
    "PARTIAL_CHAIN": int(ssl.VERIFY_X509_PARTIAL_CHAIN),
    "CRL_CHECK": int(ssl.VERIFY_CRL_CHECK_LEAF),
    "CRL_CHECK_ALL": int(ssl.VERIFY_CRL_CHECK_CHAIN),
    "TRUSTED_FIRST": int(ssl.VERIFY_X509_TRUSTED_FIRST),
    "ALLOW_PROXY_CERTS": int(ssl.VERIFY_ALLOW_PROXY_CERTS),
}

# Python's constant names, once their VERIFY_ prefix is stripped.
_ALIASES: dict[str, str] = {
    "X509_PARTIAL_CHAIN": "PARTIAL_CHAIN",
    "X509_TRUSTED_FIRST": "TRUSTED_FIRST",
    "CRL_CHECK_LEAF": "CRL_CHECK",
    "CRL_CHECK_CHAIN": "CRL_CHECK_ALL",
}

_PREFIXES = ("X509_V_FLAG_", "VERIFY_")
_NONE_WORDS = frozenset({"NONE", "DEFAULT"})
ALL_FLAGS: int = 0
for _mask in FLAGS.values():
    ALL_FLAGS |= _mask


def _valid_names() -> str:
    return ", ".join(FLAGS)


def _parse_int(value: int) -> int:
    if value < 0 or value & ~ALL_FLAGS:
        raise ValueError(
            f"verification flags mask {value:#x} has bits outside the supported flags "
            f"({ALL_FLAGS:#x}: {_valid_names()})"
        )
    return value


def _parse_name(word: str) -> int:
    name = word.upper()
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    name = _ALIASES.get(name, name)
    if name in FLAGS:
        return FLAGS[name]
    if name in _NONE_WORDS:
        return 0
    raise ValueError(
        f"unknown certificate verification flag {word!r}; valid names: {_valid_names()}"
    )


def parse_verification_flags(value: str | int) -> int:
    """Turn a flag list such as ``"CRL_CHECK | X509_STRICT"`` or a mask into a mask.

    Names are case-insensitive, may carry an ``X509_V_FLAG_`` or ``VERIFY_`` prefix and
    are joined by ``|`` or ``,``. An integer (or a decimal/``0x`` string) is taken as a
    mask of OpenSSL ``X509_V_FLAG_*`` bits. Empty, ``none`` and ``0`` mean no flags.
    Raises ``ValueError`` naming the valid flags.
    """
    if isinstance(value, bool):
        raise ValueError("verification flags must be names or an integer mask, not a boolean")
    if isinstance(value, int):
        return _parse_int(value)
    text = value.strip()
    if re.fullmatch(r"0[xX][0-9a-fA-F]+|[0-9]+", text):
        # int(text, 0) would refuse decimal with leading zeros such as "0012".
        return _parse_int(int(text, 16) if text[:2].lower() == "0x" else int(text, 10))
    mask = 0
    for word in re.split(r"[|,]", text):
        word = word.strip()
        if word:
            mask |= _parse_name(word)
    return mask


def describe_flags(mask: int) -> str:
    """Name the flags in a mask (``"CRL_CHECK_ALL|X509_STRICT"``); ``"none"`` for 0."""
    found: set[str] = set()
    remaining = mask
    # Widest masks first so CRL_CHECK_ALL is not also reported as CRL_CHECK.
    for name, bits in sorted(FLAGS.items(), key=lambda item: -item[1].bit_count()):
        if remaining & bits == bits:
            found.add(name)
            remaining &= ~bits
    names = [name for name in FLAGS if name in found]
    if remaining:
        names.append(f"{remaining:#x}")
    return "|".join(names) or "none"
