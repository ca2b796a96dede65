"""Settings: layered from settings.toml and GICAP_ variables, validated before start-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gicap.config import SettingsError, load_settings
from tests.support import ROOT, SETTINGS


def test_shipped_settings_load_with_documented_defaults() -> None:
    s = load_settings(SETTINGS, environ={})
    assert s.server.port == 1344
    assert s.server.secure_port == 11344
    assert s.server.idle_timeout > 60  # above Squid's own idle close
    assert s.certificate.certfile == "/etc/gicap/tls/tls-server-cert"
    assert s.certificate.require_client_cert is True
    assert s.source == str(SETTINGS)


def test_every_key_is_present_in_the_shipped_file() -> None:
    from gicap.config import SCHEMA

    text = SETTINGS.read_text()
    for key, *_ in SCHEMA:
        section, name = key.split(".")
        assert f"[{section}]" in text
        assert f"\n{name} = " in text, key


def test_environment_overrides_any_key() -> None:
    s = load_settings(
        SETTINGS,
        environ={
            "GICAP_SERVER__PORT": "21344",
            "GICAP_SERVER__SPOOL_DIR": "/var/spool/gicap",
            "GICAP_LOGGING__LEVEL": "debug",
            "GICAP_CERTIFICATE__MIN_VERSION": "1.3",
            "GICAP_CERTIFICATE__ALLOWED_CLIENTS": '["squid-a", "squid-b"]',
        },
    )
    assert s.server.port == 21344
    assert s.server.spool_dir == "/var/spool/gicap"
    assert s.logging.level == "DEBUG"
    assert s.certificate.min_version == "1.3"
    assert s.certificate.allowed_clients == ("squid-a", "squid-b")


def test_verification_flags_under_all_three_names(tmp_path: Path) -> None:
    import ssl

    f = tmp_path / "s.toml"
    f.write_text('[certificate]\nVerificationFlags = "X509_STRICT"\n')
    assert load_settings(f, environ={}).certificate.verification_flags == ssl.VERIFY_X509_STRICT
    env = {"GICAP_CERTIFICATE__VERIFICATIONFLAGS": "PARTIAL_CHAIN"}
    flags = load_settings(f, environ=env).certificate.verification_flags
    assert flags == ssl.VERIFY_X509_PARTIAL_CHAIN
    env = {"CERTIFICATE__VerificationFlags": "X509_V_FLAG_CRL_CHECK|X509_V_FLAG_CRL_CHECK_ALL"}
    flags = load_settings(f, environ=env).certificate.verification_flags
    assert flags == ssl.VERIFY_CRL_CHECK_LEAF | ssl.VERIFY_CRL_CHECK_CHAIN


@pytest.mark.parametrize(
    "env,needle",
    [
        ({"GICAP_SERVER__PORT": "70000"}, "server.port must be an integer >= 0 and <= 65535"),
        ({"GICAP_SERVER__WORKERS": "many"}, "server.workers must be an integer"),
        ({"GICAP_SERVER__IDLE_TIMEOUT": "-1"}, "server.idle_timeout must be a number of seconds"),
        ({"GICAP_LOGGING__LEVEL": "LOUD"}, "logging.level must be DEBUG | INFO"),
        (
            {"GICAP_CERTIFICATE__MIN_VERSION": "1.1"},
            'certificate.min_version must be "1.2" or "1.3"',
        ),
        ({"CERTIFICATE__VerificationFlags": "NO_SUCH"}, "valid names: X509_STRICT"),
        ({"GICAP_SERVER__PORT": "0", "GICAP_SERVER__SECURE_PORT": "0"}, "cannot both be 0"),
    ],
)
def test_invalid_values_name_the_key_and_the_expected_form(
    env: dict[str, str], needle: str
) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(SETTINGS, environ=env)
    assert needle in str(info.value)


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text("[server]\nprot = 1344\n")
    with pytest.raises(SettingsError, match="prot"):
        load_settings(f, environ={})


def test_missing_settings_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_gicap_check_prints_effective_settings_and_fails_on_bad_ones() -> None:
    cmd = [sys.executable, "-m", "gicap", "check", "--settings", str(SETTINGS)]
    ok = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={"GICAP_SERVER__PORT": "21344", "PATH": "/usr/bin:/bin"},
    )
    assert ok.returncode == 0, ok.stderr
    assert '"port": 21344' in ok.stdout and "valid" in ok.stdout
    bad = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={"GICAP_SERVER__PORT": "x", "PATH": "/usr/bin:/bin"},
    )
    assert bad.returncode == 2
    assert "server.port" in bad.stderr


@pytest.mark.parametrize("given", ["settings.toml", "./settings.toml"])
def test_a_relative_settings_path_is_the_file_in_the_working_directory(
    tmp_path: Path, given: str
) -> None:
    """``gicap check --settings settings.toml`` from an operator's folder loaded the
    settings.toml shipped with gicap (dynaconf looked the name up from the program's
    folder upwards first): the operator's port and allowed clients were ignored."""
    text = SETTINGS.read_text().replace("port = 1344", "port = 24999", 1)
    assert "port = 24999" in text
    (tmp_path / "settings.toml").write_text(text)
    gicap = Path(sys.executable).with_name("gicap")
    assert gicap.exists()
    out = subprocess.run(
        [str(gicap), "check", "--settings", given],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert '"port": 24999' in out.stdout
