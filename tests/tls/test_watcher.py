"""CertificateWatcher against plain files and a Kubernetes Secret volume layout."""

from __future__ import annotations

import logging
import os
import shutil
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes

from gicap.tls.certset import build_server_context
from gicap.tls.settings import CertificateSettings
from gicap.tls.watcher import CertificateWatcher

from .pki import PKI, Issued, pem
from .tlsutil import client_context, connect, write_set

LOGGER = "gicap.tests.tls.watcher"
KEYS = ("tls-server-cert", "tls-server-key", "tls-cafile")


def _watcher(settings: CertificateSettings) -> CertificateWatcher:
    return CertificateWatcher(settings, logging.getLogger(LOGGER))


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def _replace(path: str, data: bytes) -> None:
    """Rewrite a file in place, as `cat new > file` or an editor would."""
    Path(path).write_bytes(data)


class SecretVolume:
    """The layout kubelet maintains for a Secret mounted as a volume."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.generation = 0
        self.current: Path | None = None

    def publish(self, files: dict[str, bytes], mtime_ns: int | None = None) -> Path:
        self.generation += 1
        data_dir = self.root / f"..2026_11_27_14_0{self.generation}_00.{self.generation:09d}"
        data_dir.mkdir()
        for name, blob in files.items():
            (data_dir / name).write_bytes(blob)
            if mtime_ns is not None:
                os.utime(data_dir / name, ns=(mtime_ns, mtime_ns))
        os.symlink(data_dir.name, self.root / "..data_tmp")
        os.replace(self.root / "..data_tmp", self.root / "..data")
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                os.symlink(f"..data/{name}", link)
        if self.current is not None:
            shutil.rmtree(self.current)
        self.current = data_dir
        return data_dir

    def settings(self) -> CertificateSettings:
        return CertificateSettings(
            certfile=str(self.root / "tls-server-cert"),
            keyfile=str(self.root / "tls-server-key"),
            cafile=str(self.root / "tls-cafile"),
        )


def _secret(server: Issued, ca: bytes) -> dict[str, bytes]:
    return dict(zip(KEYS, (server.cert_pem(True), server.key_pem(), ca), strict=True))


def test_initial_success_and_failure(pki: PKI, server_cert: Issued, tmp_path: Path, caplog):
    caplog.set_level(logging.INFO, LOGGER)
    settings = write_set(tmp_path, server_cert, ca=pem(pki.root))
    certset, reason = _watcher(settings).initial()
    assert certset is not None and reason == ""
    assert any("expires" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)

    caplog.clear()
    missing = CertificateSettings(
        certfile=settings.certfile, keyfile=settings.keyfile, cafile=str(tmp_path / "nope")
    )
    certset, reason = _watcher(missing).initial()
    assert certset is None
    assert reason == f"client CA file {tmp_path / 'nope'}: file not found"
    assert _errors(caplog) == []


def test_files_installed_after_a_failed_start_are_picked_up(
    pki: PKI, server_cert: Issued, tmp_path: Path
):
    settings = CertificateSettings(
        certfile=str(tmp_path / "tls-server-cert"),
        keyfile=str(tmp_path / "tls-server-key"),
        cafile=str(tmp_path / "tls-cafile"),
    )
    watcher = _watcher(settings)
    assert watcher.initial()[0] is None
    write_set(tmp_path, server_cert, ca=pem(pki.root))
    certset = watcher.poll()
    assert certset is not None and watcher.current is certset


def test_unchanged_files_are_not_reloaded(pki: PKI, server_cert: Issued, tmp_path: Path):
    watcher = _watcher(write_set(tmp_path, server_cert, ca=pem(pki.root)))
    watcher.initial()
    assert watcher.poll() is None
    assert watcher.poll() is None


def test_touch_without_new_content_is_not_a_new_set(
    pki: PKI, server_cert: Issued, tmp_path: Path, caplog
):
    settings = write_set(tmp_path, server_cert, ca=pem(pki.root))
    watcher = _watcher(settings)
    first, _ = watcher.initial()
    assert first is not None
    os.utime(settings.certfile, ns=(1, 1))
    assert watcher.poll() is None
    assert watcher.current is first and _errors(caplog) == []
    forced = watcher.force()
    assert forced is not None and forced.fingerprint() == first.fingerprint()


def test_plain_file_rewrite_is_loaded(pki: PKI, server_cert: Issued, tmp_path: Path):
    settings = write_set(tmp_path, server_cert, ca=pem(pki.root))
    watcher = _watcher(settings)
    watcher.initial()
    renewed = pki.server()
    _replace(settings.keyfile, renewed.key_pem())
    _replace(settings.certfile, renewed.cert_pem())
    certset = watcher.poll()
    assert certset is not None
    assert certset.cert_sha256 == renewed.cert.fingerprint(hashes.SHA256()).hex()
    assert watcher.current is certset


def test_kubernetes_data_swap_with_identical_mtimes(
    serve, pki: PKI, server_cert: Issued, tmp_path: Path
):
    volume = SecretVolume(tmp_path / "secret")
    old_dir = volume.publish(_secret(server_cert, pem(pki.root)))
    settings = volume.settings()
    watcher = _watcher(settings)
    certset, reason = watcher.initial()
    assert certset is not None, reason

    contexts = [build_server_context(settings, certset)]
    server = serve(lambda: contexts[-1])
    client = client_context(pem(pki.root), pki.client(), tmp=tmp_path)
    assert connect(server.port, client).server_der == server_cert.der()
    assert server.outcome().ok

    mtime = os.stat(old_dir / "tls-server-cert").st_mtime_ns
    renewed = pki.server()
    volume.publish(_secret(renewed, pem(pki.root)), mtime_ns=mtime)
    assert os.stat(settings.certfile).st_mtime_ns == mtime
    assert not old_dir.exists()

    new = watcher.poll()
    assert new is not None
    assert new.sources[0] == str(volume.current / "tls-server-cert")
    contexts.append(build_server_context(settings, new))

    result = connect(server.port, client)
    assert server.outcome().ok
    assert result.ok and result.server_der == renewed.der()
    assert watcher.poll() is None


def test_kubernetes_swap_to_a_mismatched_set_keeps_the_old_one(
    pki: PKI, server_cert: Issued, tmp_path: Path, caplog
):
    volume = SecretVolume(tmp_path / "secret")
    volume.publish(_secret(server_cert, pem(pki.root)))
    watcher = _watcher(volume.settings())
    first, _ = watcher.initial()

    broken = _secret(server_cert, pem(pki.root))
    broken["tls-server-key"] = pki.server().key_pem()
    volume.publish(broken)
    assert watcher.poll() is None
    assert watcher.current is first
    assert len(_errors(caplog)) == 1
    assert "does not match" in _errors(caplog)[0]

    volume.publish(_secret(pki.server(), pem(pki.root)))
    assert watcher.poll() is not None


def _broken_variants(pki: PKI, server_cert: Issued) -> dict[str, tuple[dict[str, bytes], str]]:
    now = datetime.now(UTC)
    expired = pki.server(not_before=now - timedelta(days=9), not_after=now - timedelta(days=1))
    return {
        "half-written": ({"certfile": server_cert.cert_pem()[:300]}, "half-written"),
        "mismatched": ({"keyfile": pki.server().key_pem()}, "does not match"),
        "expired": (
            {"certfile": expired.cert_pem(), "keyfile": expired.key_pem()},
            "expired on",
        ),
        "empty CA": ({"cafile": b""}, "file is empty"),
    }


@pytest.mark.parametrize("variant", ["half-written", "mismatched", "expired", "empty CA"])
def test_broken_rewrite_is_refused_once_and_old_set_kept(
    serve, pki: PKI, server_cert: Issued, tmp_path: Path, caplog, variant: str
):
    changes, message = _broken_variants(pki, server_cert)[variant]
    settings = write_set(tmp_path / "set", server_cert, ca=pem(pki.root))
    watcher = _watcher(settings)
    first, _ = watcher.initial()
    assert first is not None
    context = build_server_context(settings, first)
    server = serve(lambda: context)

    caplog.clear()
    for field, data in changes.items():
        _replace(getattr(settings, field), data)
    assert watcher.poll() is None
    errors = _errors(caplog)
    assert len(errors) == 1
    assert message in errors[0] and "previous one keeps serving" in errors[0]
    assert watcher.current is first and watcher.last_error is not None

    for _ in range(3):
        assert watcher.poll() is None
    assert len(_errors(caplog)) == 1, "the same broken state was retried"

    # The previous set still serves real handshakes.
    result = connect(server.port, client_context(pem(pki.root), pki.client(), tmp=tmp_path))
    assert server.outcome().ok and result.server_der == server_cert.der()

    assert watcher.force() is None
    assert len(_errors(caplog)) == 2

    write_set(tmp_path / "set", server_cert, ca=pem(pki.root))
    assert watcher.poll() is None, "content equal to the current set needs no new context"
    assert watcher.last_error is None
    assert len(_errors(caplog)) == 2


def test_expiry_warning(pki: PKI, tmp_path: Path, caplog):
    caplog.set_level(logging.INFO, LOGGER)
    now = datetime.now(UTC)
    soon = pki.server(not_after=now + timedelta(days=10, hours=1))
    watcher = _watcher(write_set(tmp_path, soon, ca=pem(pki.root)))
    watcher.initial(now=now)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "in 10 days" in warnings[0]

    caplog.clear()
    watcher.poll(now=now + timedelta(hours=1))
    assert not caplog.records
    watcher.poll(now=now + timedelta(days=1, hours=1))
    assert [r.levelno for r in caplog.records] == [logging.WARNING]

    caplog.clear()
    watcher.poll(now=now + timedelta(days=12))
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert "expired" in caplog.records[0].getMessage()


def test_no_warning_far_from_expiry(pki: PKI, server_cert: Issued, tmp_path: Path, caplog):
    caplog.set_level(logging.INFO, LOGGER)
    watcher = _watcher(write_set(tmp_path, server_cert, ca=pem(pki.root)))
    watcher.initial()
    assert [r.levelno for r in caplog.records] == [logging.INFO]


def test_stale_crl_is_reported(pki: PKI, server_cert: Issued, tmp_path: Path, caplog):
    stale = pki.crl(next_update=datetime.now(UTC) - timedelta(hours=1))
    settings = write_set(
        tmp_path,
        server_cert,
        ca=pem(pki.root),
        crl=stale,
        verification_flags=int(ssl.VERIFY_CRL_CHECK_LEAF),
    )
    assert _watcher(settings).initial()[0] is not None
    assert any("nextUpdate" in r.getMessage() for r in caplog.records)


def test_a_set_not_valid_yet_loads_once_it_is(
    pki: PKI, tmp_path: Path, caplog, monkeypatch: pytest.MonkeyPatch
):
    """A certificate issued with notBefore a little ahead (another machine's clock) was
    refused once and never tried again: Secure ICAP stayed off (or an old certificate
    kept serving until it expired) until its files changed. It is tried again while it
    fails, reported once, and loads when it becomes valid."""
    import gicap.tls.watcher as watcher_module

    monkeypatch.setattr(watcher_module, "RETRY_SECONDS", 0.0)
    start = datetime.now(UTC)
    later = pki.server(not_before=start + timedelta(minutes=5))
    settings = write_set(tmp_path, later, ca=pem(pki.root))
    watcher = _watcher(settings)
    certset, reason = watcher.initial(now=start)
    assert certset is None and "not valid before" in reason
    for _ in range(3):
        assert watcher.poll(now=start + timedelta(minutes=1)) is None
    assert _errors(caplog) == [], "the reason is the caller's to report, once"
    loaded = watcher.poll(now=start + timedelta(minutes=6))
    assert loaded is not None and watcher.current is loaded and watcher.last_error is None
    assert watcher.poll(now=start + timedelta(minutes=7)) is None  # (nothing to retry)


def test_a_renewal_not_valid_yet_replaces_the_old_set_once_it_is(
    pki: PKI, server_cert: Issued, tmp_path: Path, caplog, monkeypatch: pytest.MonkeyPatch
):
    import gicap.tls.watcher as watcher_module

    start = datetime.now(UTC)
    settings = write_set(tmp_path, server_cert, ca=pem(pki.root))
    watcher = _watcher(settings)
    first, _ = watcher.initial(now=start)
    assert first is not None
    write_set(tmp_path, pki.server(not_before=start + timedelta(minutes=5)), ca=pem(pki.root))
    assert watcher.poll(now=start) is None
    assert len(_errors(caplog)) == 1 and "not valid before" in _errors(caplog)[0]
    assert watcher.poll(now=start + timedelta(minutes=6)) is None, "retried only after a while"
    monkeypatch.setattr(watcher_module, "RETRY_SECONDS", 0.0)
    assert watcher.poll(now=start + timedelta(minutes=1)) is None
    assert len(_errors(caplog)) == 1, "the same refusal is not said again"
    renewed = watcher.poll(now=start + timedelta(minutes=6))
    assert renewed is not None and renewed.fingerprint() != first.fingerprint()
