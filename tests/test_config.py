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
    env["GICAP_CERTIFICATE__CRLFILE"] = str(tmp_path / "ca.crl")
    flags = load_settings(f, environ=env).certificate.verification_flags
    assert flags == ssl.VERIFY_CRL_CHECK_LEAF | ssl.VERIFY_CRL_CHECK_CHAIN
    # the name `gicap check` prints is read too (it was replaced by 0: CRL checks off)
    f.write_text('[certificate]\nverification_flags = "X509_STRICT"\n')
    assert load_settings(f, environ={}).certificate.verification_flags == ssl.VERIFY_X509_STRICT
    env = {"certificate__VERIFICATIONFLAGS": "PARTIAL_CHAIN"}
    flags = load_settings(f, environ=env).certificate.verification_flags
    assert flags == ssl.VERIFY_X509_PARTIAL_CHAIN


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
        # mistakes that were silently ignored
        ({"GICAP_CDR__TIMOUT": "5"}, "unknown setting(s) in [cdr]: timout (did you mean timeout?)"),
        ({"GICAP_LOGGING__LEVL": "INFO"}, "unknown setting(s) in [logging]: levl"),
        ({"GICAP_METRICS__PROT": "1"}, "unknown setting(s) in [metrics]: prot"),
        ({"GICAP_SERVER_PORT": "1"}, "joined by two underscores (GICAP_SERVER__PORT)"),
        (
            {"GICAP_CERTIFICATE_ALLOWED_CLIENTS": "squid1"},
            "(GICAP_CERTIFICATE__ALLOWED_CLIENTS)",
        ),
        ({"GICAP_SERVR__PORT": "5"}, "GICAP_SERVR__PORT (did you mean server?)"),
        ({"gicap_server__port": "5"}, "the prefix is GICAP_, in capitals"),
        ({"GICAP_SERVER__SECURE_PORT": "1344"}, "server.port and server.secure_port are both"),
        ({"GICAP_METRICS__PORT": "11344"}, "server.secure_port and metrics.port are both"),
        ({"GICAP_CDR__MEMORY_LIMIT_MB": "64"}, "0 (no limit) or an integer >= 128"),
        (
            {"GICAP_CERTIFICATE__VERIFICATION_FLAGS": "CRL_CHECK"},
            "asks for CRL checking but certificate.crlfile is not set",
        ),
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


def test_gicap_check_looks_at_what_serve_needs_of_the_machine(tmp_path: Path) -> None:
    """`gicap check` said "valid" where serve then answered every request with a 500
    (a spool directory that does not exist) or kept Secure ICAP off (a broken
    certificate set): it exits 2 for the first, 1 for the second, as it says why."""
    cmd = [sys.executable, "-m", "gicap", "check", "--settings", str(SETTINGS)]
    base = {"PATH": "/usr/bin:/bin", "GICAP_SERVER__PORT": "21344"}

    def run(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            cmd, capture_output=True, text=True, cwd=ROOT, timeout=60, env={**base, **env}
        )

    out = run(GICAP_SERVER__SPOOL_DIR=str(tmp_path / "missing"))
    assert out.returncode == 2 and "server.spool_dir" in out.stderr, out.stderr
    (tmp_path / "cert.pem").write_text("not a certificate\n")
    (tmp_path / "key.pem").write_text("not a key\n")
    out = run(
        GICAP_CERTIFICATE__CERTFILE=str(tmp_path / "cert.pem"),
        GICAP_CERTIFICATE__KEYFILE=str(tmp_path / "key.pem"),
        GICAP_CERTIFICATE__CAFILE="",
    )
    assert out.returncode == 1, out
    assert "Secure ICAP would stay off" in out.stderr and "cert.pem" in out.stderr
    out = run(GICAP_CERTIFICATE__CERTFILE=str(tmp_path / "none.pem"))
    assert out.returncode == 0 and "Secure ICAP: off until" in out.stdout, out


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


def test_a_local_settings_file_beside_the_settings_is_named(tmp_path: Path) -> None:
    """dynaconf merges settings.local.toml over settings.toml: `gicap check` named
    only settings.toml while showing the port of the other."""
    (tmp_path / "settings.toml").write_text("[server]\nport = 1\n")
    (tmp_path / "settings.local.toml").write_text("[server]\nport = 4444\n")
    settings = load_settings(tmp_path / "settings.toml", environ={})
    assert settings.server.port == 4444
    assert settings.describe_source().endswith(
        "settings.toml and " + str(tmp_path / "settings.local.toml")
    )
    with pytest.raises(SettingsError, match="--settings only"):
        load_settings(tmp_path / "settings.toml", environ={"INCLUDES_FOR_DYNACONF": "/x.toml"})
