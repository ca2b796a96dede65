from __future__ import annotations

import ssl

import pytest

from gicap.tls.flags import FLAGS, describe_flags, parse_verification_flags

STRICT = int(ssl.VERIFY_X509_STRICT)
PARTIAL = int(ssl.VERIFY_X509_PARTIAL_CHAIN)
LEAF = int(ssl.VERIFY_CRL_CHECK_LEAF)
CHAIN = int(ssl.VERIFY_CRL_CHECK_CHAIN)
TRUSTED = int(ssl.VERIFY_X509_TRUSTED_FIRST)
PROXY = int(ssl.VERIFY_ALLOW_PROXY_CERTS)


@pytest.mark.parametrize(
    ("text", "mask"),
    [
        ("X509_STRICT", STRICT),
        ("x509_strict", STRICT),
        ("X509_V_FLAG_X509_STRICT", STRICT),
        ("VERIFY_X509_STRICT", STRICT),
        ("PARTIAL_CHAIN", PARTIAL),
        ("X509_V_FLAG_PARTIAL_CHAIN", PARTIAL),
        ("VERIFY_X509_PARTIAL_CHAIN", PARTIAL),
        ("CRL_CHECK", LEAF),
        ("VERIFY_CRL_CHECK_LEAF", LEAF),
        ("CRL_CHECK_ALL", CHAIN),
        ("X509_V_FLAG_CRL_CHECK_ALL", CHAIN),
        ("VERIFY_CRL_CHECK_CHAIN", CHAIN),
        ("TRUSTED_FIRST", TRUSTED),
        ("VERIFY_X509_TRUSTED_FIRST", TRUSTED),
        ("ALLOW_PROXY_CERTS", PROXY),
        ("X509_V_FLAG_ALLOW_PROXY_CERTS", PROXY),
        ("X509_STRICT|PARTIAL_CHAIN", STRICT | PARTIAL),
        (" crl_check , x509_strict ", LEAF | STRICT),
        ("CRL_CHECK | CRL_CHECK_ALL |", CHAIN),
        ("", 0),
        ("   ", 0),
        ("none", 0),
        ("0", 0),
        ("32", STRICT),
        ("0x80020", STRICT | PARTIAL),
        ("0X4", LEAF),
        (STRICT | PROXY, STRICT | PROXY),
        (0, 0),
    ],
)
def test_parse(text: str | int, mask: int) -> None:
    assert parse_verification_flags(text) == mask


def test_crl_check_all_includes_the_leaf_check() -> None:
    # OpenSSL ignores CRL_CHECK_ALL without CRL_CHECK.
    assert parse_verification_flags("CRL_CHECK_ALL") & LEAF == LEAF


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError) as info:
        parse_verification_flags("X509_STRICT|CRL_CHEK")
    message = str(info.value)
    assert "'CRL_CHEK'" in message
    for name in FLAGS:
        assert name in message


@pytest.mark.parametrize("value", [0x10, "0x10", -1, "0x100000000", "16"])
def test_unsupported_bits_are_refused(value: str | int) -> None:
    # 0x10 is X509_V_FLAG_IGNORE_CRITICAL: never let a mask smuggle it in.
    with pytest.raises(ValueError, match="supported flags"):
        parse_verification_flags(value)


def test_boolean_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_verification_flags(True)


@pytest.mark.parametrize(
    ("mask", "text"),
    [
        (0, "none"),
        (STRICT, "X509_STRICT"),
        (CHAIN, "CRL_CHECK_ALL"),
        (LEAF | STRICT | PARTIAL, "X509_STRICT|PARTIAL_CHAIN|CRL_CHECK"),
        (STRICT | 0x10, "X509_STRICT|0x10"),
    ],
)
def test_describe(mask: int, text: str) -> None:
    assert describe_flags(mask) == text


def test_describe_round_trips() -> None:
    every = 0
    for bits in FLAGS.values():
        every |= bits
        assert parse_verification_flags(describe_flags(bits)) == bits
    assert parse_verification_flags(describe_flags(every)) == every
