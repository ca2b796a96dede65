"""``gicap certs dev`` end to end: its files start a Secure ICAP server that
``gicap client`` (a real subprocess) talks to with the client certificate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import ROOT

from .support import SecureGicap


def _gicap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gicap", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_dev_certificates_serve_icaps_to_gicap_client(tmp_path: Path) -> None:
    certs = tmp_path / "dev"
    made = _gicap("certs", "dev", str(certs))
    assert made.returncode == 0, made.stderr
    for name in ("tls-cafile", "tls-server-cert", "tls-server-key", "client-cert.pem"):
        assert (certs / name).is_file()
    assert (certs / "tls-server-key").stat().st_mode & 0o077 == 0

    gicap = SecureGicap(tmp_path, certs)
    try:
        gicap.start()
        body = tmp_path / "file.bin"
        body.write_bytes(b"%PDF-1.4 not really a PDF\n" * 1000)
        url = f"icaps://localhost:{gicap.secure_port}/echo"
        tls = ["--cafile", str(certs / "tls-cafile")]
        client = ["--cert", str(certs / "client-cert.pem"), "--key", str(certs / "client-key.pem")]

        sent = _gicap("client", url, str(body), *client, *tls)
        assert sent.returncode == 0, sent.stderr
        status = sent.stdout.splitlines()[0]
        assert status.startswith(("ICAP/1.0 200", "ICAP/1.0 204")), sent.stdout

        # a RESPMOD is the download of the file by its name: a script is blocked
        script = tmp_path / "invoice.js"
        script.write_bytes(b'var s = new ActiveXObject("WScript.Shell");\n')
        cdr = url.replace("/echo", "/resp-cdr-service")
        blocked = _gicap("client", cdr, str(script), *client, *tls)
        assert blocked.returncode == 0, blocked.stderr
        assert "HTTP/1.1 403 Forbidden" in blocked.stdout, blocked.stdout

        options = _gicap("client", url, "--method", "OPTIONS", *client, *tls)
        assert options.returncode == 0, options.stderr
        assert options.stdout.startswith("ICAP/1.0 200")
        assert "Methods: RESPMOD" in options.stdout

        # Without the client certificate the same command is refused.
        refused = _gicap("client", url, str(body), *tls, "--timeout", "5")
        assert refused.returncode != 0
        assert "ICAP/1.0" not in refused.stdout
        assert refused.stderr.startswith("gicap client:")
        assert "--cert and --key" in refused.stderr, refused.stderr

        # The name the server certificate must carry, as Squid's tls-domain=.
        named = _gicap("client", url, "--servername", "localhost", *client, *tls)
        assert named.returncode == 0, named.stderr
        other = _gicap("client", url, "--servername", "other.example", *client, *tls)
        assert other.returncode == 1 and "other.example" in other.stderr, other.stderr
        # Options that cannot work are said plainly, before connecting.
        half = _gicap("client", url, "--cert", str(certs / "client-cert.pem"), *tls)
        assert half.returncode == 2 and "--cert and --key go together" in half.stderr
        missing = _gicap("client", url, *client, "--cafile", str(certs / "nope"))
        assert missing.returncode == 2 and f"--cafile {certs / 'nope'}" in missing.stderr
    finally:
        gicap.stop()


def test_dev_certificates_print_the_squid_lines_for_the_configured_port(tmp_path: Path) -> None:
    """The lines named the echo service on port 11344 whatever the settings said."""
    import os

    made = subprocess.run(
        [sys.executable, "-m", "gicap", "certs", "dev", str(tmp_path / "dev")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "GICAP_SERVER__SECURE_PORT": "21999"},
    )
    assert made.returncode == 0, made.stderr
    lines = [line.strip() for line in made.stdout.splitlines()]
    assert "icap_enable on" in lines
    service = next(line for line in lines if line.startswith("icap_service gicap_resp"))
    assert "icaps://localhost:21999/resp-cdr-service " in service
    assert "adaptation_access gicap_resp allow all" in lines
