"""Certificate renewal on a running server: which certificate new handshakes get."""

from __future__ import annotations

import os
import shutil
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.tls.pki import PKI, Issued

from .conftest import StartSecure
from .support import (
    KEYS,
    RELOAD_WITHIN,
    Clients,
    SecureGicap,
    cert_sha,
    install,
    presented,
    wait_until,
    write_atomic,
)


def _all_present(
    gicap: SecureGicap, clients: Clients, client: Issued, sha: str, n: int = 16
) -> bool:
    """New connections all get certificate ``sha``.

    Each worker listens on its own SO_REUSEPORT socket and the kernel spreads
    connections by their addresses: all 16 land on the same one of two workers
    with a chance of 2**-15, so a worker that missed the change is caught.
    """
    ctx = clients.context(client)
    return all(presented(gicap.secure_port, ctx) == sha for _ in range(n))


def _wait_presented(gicap: SecureGicap, clients: Clients, client: Issued, new: Issued) -> None:
    """Every new connection gets ``new`` in a probe (16 handshakes) that began within
    RELOAD_WITHIN of the change. The probe's own time is not counted: on a loaded
    machine 16 handshakes can take seconds."""
    started = time.monotonic()
    began = [started]

    def probe() -> bool:
        began[0] = time.monotonic()
        return _all_present(gicap, clients, client, cert_sha(new))

    wait_until(probe, RELOAD_WITHIN, "new certificate presented on every new connection")
    assert began[0] - started < RELOAD_WITHIN


def test_plain_rewrite_is_picked_up_by_every_worker(
    start_secure: StartSecure, clients: Clients, client_a: Issued, server_cert: Issued, pki: PKI
) -> None:
    gicap = start_secure({"GICAP_SERVER__WORKERS": "2"})
    assert _all_present(gicap, clients, client_a, cert_sha(server_cert))
    renewed = pki.server()
    # In place, non-atomically, one file after the other, as `cp` or an editor would.
    (gicap.certdir / "tls-server-cert").write_bytes(renewed.cert_pem())
    (gicap.certdir / "tls-server-key").write_bytes(renewed.key_pem())
    _wait_presented(gicap, clients, client_a, renewed)
    gicap.wait_log("Secure ICAP certificate loaded: .*SHA-256 " + cert_sha(renewed)[:16])


class SecretVolume:
    """The layout kubelet keeps for a Secret volume: files in a timestamped directory,
    ``..data`` pointing at it, top-level names pointing through ``..data``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True)
        self.generation = 0

    def publish(self, server: Issued, ca: bytes, *, keep_mtimes: bool = False) -> Path:
        """Swap a new generation in; ``keep_mtimes`` gives each new file the mtime of
        the file it replaces, so only the ``..data`` swap tells the two apart."""
        self.generation += 1
        link = self.root / "..data"
        previous = link.resolve() if link.exists() else None
        data_dir = self.root / f"..2026_11_27_14_0{self.generation}_00.{self.generation:09d}"
        data_dir.mkdir()
        files = {
            "tls-server-cert": server.cert_pem(),
            "tls-server-key": server.key_pem(),
            "tls-cafile": ca,
        }
        for name, blob in files.items():
            (data_dir / name).write_bytes(blob)
            if keep_mtimes and previous is not None:
                mtime = (previous / name).stat().st_mtime_ns
                os.utime(data_dir / name, ns=(mtime, mtime))
        os.symlink(data_dir.name, self.root / "..data_tmp")
        os.replace(self.root / "..data_tmp", link)
        for name in files:
            if not (self.root / name).is_symlink():
                os.symlink(f"..data/{name}", self.root / name)
        if previous is not None:
            shutil.rmtree(previous)
        return data_dir


def test_kubernetes_secret_volume_swap(
    start_secure: StartSecure,
    tmp_path: Path,
    clients: Clients,
    client_a: Issued,
    server_cert: Issued,
    pki: PKI,
) -> None:
    volume = SecretVolume(tmp_path / "secret")
    first = volume.publish(server_cert, pki.root.cert_pem())
    gicap = start_secure(installed=False, expect_secure=True, certdir=volume.root)
    assert presented(gicap.secure_port, clients.context(client_a)) == cert_sha(server_cert)

    renewed = pki.server()
    volume.publish(renewed, pki.root.cert_pem(), keep_mtimes=True)
    assert not first.exists()
    assert (volume.root / "tls-server-cert").resolve().parent.name.endswith("000000002")
    _wait_presented(gicap, clients, client_a, renewed)


def test_broken_sets_are_kept_out_and_the_old_certificate_keeps_serving(
    start_secure: StartSecure, clients: Clients, client_a: Issued, server_cert: Issued, pki: PKI
) -> None:
    gicap = start_secure()
    ctx = clients.context(client_a)
    old = cert_sha(server_cert)
    cert, key = gicap.certdir / "tls-server-cert", gicap.certdir / "tls-server-key"
    renewed = pki.server()
    now = datetime.now(UTC)
    expired = pki.server(not_before=now - timedelta(days=10), not_after=now - timedelta(days=1))

    def broken(write: list[tuple[Path, bytes]], error: str) -> None:
        mark = gicap.mark()
        for path, data in write:
            write_atomic(path, data)
        line = gicap.wait_log(error, since=mark)
        assert "ERROR" in line and "previous one keeps serving" in line, line
        time.sleep(0.5)  # a couple more watch intervals: nothing else gets installed
        assert presented(gicap.secure_port, ctx) == old
        assert not gicap.lines("Secure ICAP certificate loaded", since=mark)

    pem = renewed.cert_pem()
    broken([(cert, pem[: len(pem) // 2])], "PEM block without its END line")
    broken([(cert, pem)], "does not match the server certificate")
    broken([(cert, expired.cert_pem()), (key, expired.key_pem())], "expired on")
    malformed = pki.malformed()
    broken(
        [(cert, malformed.cert_pem()), (key, malformed.key_pem())],
        "unreadable certificate set: ValueError",
    )
    # Once a good set is written again it is installed: the watcher did not give up.
    install(gicap.certdir, renewed, pki.root.cert_pem())
    _wait_presented(gicap, clients, client_a, renewed)


def test_established_connection_survives_the_reload(
    start_secure: StartSecure, clients: Clients, client_a: Issued, server_cert: Issued, pki: PKI
) -> None:
    gicap = start_secure()
    with clients.icap(gicap.secure_port, client_a) as icap:
        assert icap.options().status == 200
        assert icap.sock is not None
        renewed = pki.server()
        install(gicap.certdir, renewed, pki.root.cert_pem())
        _wait_presented(gicap, clients, client_a, renewed)
        # The connection made before the swap still works, with the old certificate.
        body = os.urandom(50_000)
        result = icap.respmod(body, allow_204=False)
        assert result.status == 200 and result.body == body
        assert icap.options().status == 200
        der = icap.sock.getpeercert(binary_form=True)
        assert der == server_cert.der()


def test_sighup_forces_a_reload_in_every_worker(
    start_secure: StartSecure, clients: Clients, client_a: Issued, server_cert: Issued, pki: PKI
) -> None:
    # The watcher effectively never polls: only SIGHUP can bring the new set in.
    gicap = start_secure(
        {"GICAP_SERVER__WORKERS": "2", "GICAP_CERTIFICATE__WATCH_INTERVAL": "3600"}
    )
    renewed = pki.server()
    install(gicap.certdir, renewed, pki.root.cert_pem())
    time.sleep(0.5)
    assert _all_present(gicap, clients, client_a, cert_sha(server_cert))

    mark = gicap.mark()
    assert gicap.proc is not None
    gicap.proc.send_signal(signal.SIGHUP)
    _wait_presented(gicap, clients, client_a, renewed)
    assert len(gicap.wait_log("SIGHUP: reloading certificates", since=mark)) > 0
    gicap.wait_log("Secure ICAP certificate loaded: .*SHA-256 " + cert_sha(renewed)[:16], mark)
    assert gicap.proc.poll() is None


def test_sighup_with_a_broken_set_keeps_the_old_one(
    start_secure: StartSecure, clients: Clients, client_a: Issued, server_cert: Issued
) -> None:
    gicap = start_secure({"GICAP_CERTIFICATE__WATCH_INTERVAL": "3600"})
    write_atomic(gicap.certdir / KEYS[1], b"-----BEGIN PRIVATE KEY-----\nAAAA\n")
    mark = gicap.mark()
    assert gicap.proc is not None
    gicap.proc.send_signal(signal.SIGHUP)
    gicap.wait_log("ERROR .*previous one keeps serving", since=mark)
    assert presented(gicap.secure_port, clients.context(client_a)) == cert_sha(server_cert)


def test_sighup_to_certificate_paths_filled_later_opens_the_port(
    tmp_path: Path, pki: PKI, server_cert: Issued, clients: Clients, client_a: Issued
) -> None:
    """Settings naming a directory without certificates yet, then a SIGHUP, then the
    files: the watch stayed on the old paths and the port stayed closed until a second
    SIGHUP. It follows the new paths from the SIGHUP on."""
    from tests.support import SETTINGS

    wrong, right = tmp_path / "wrong", tmp_path / "right"
    wrong.mkdir()
    right.mkdir()
    settings = tmp_path / "settings.toml"

    def write(directory: Path) -> None:
        text = SETTINGS.read_text()
        for key in KEYS:
            text = text.replace(f'"/etc/gicap/tls/{key}"', f'"{directory / key}"')
        settings.write_text(text)

    write(wrong)
    gicap = SecureGicap(tmp_path, wrong, expect_secure=False, probe=clients.context(client_a))
    for key in ("CERTFILE", "KEYFILE", "CAFILE"):
        del gicap.env[f"GICAP_CERTIFICATE__{key}"]
    gicap.settings = settings
    gicap.start()
    try:
        assert gicap.wait_log("Secure ICAP is off")
        write(right)
        mark = gicap.mark()
        assert gicap.proc is not None
        gicap.proc.send_signal(signal.SIGHUP)
        gicap.wait_log("SIGHUP: the certificate set the new settings name is not loaded", mark)
        install(right, server_cert, pki.root.cert_pem())
        wait_until(
            lambda: (
                presented(gicap.secure_port, clients.context(client_a)) == cert_sha(server_cert)
            ),
            RELOAD_WITHIN,
            "the certificates installed at the new paths served",
        )
    finally:
        gicap.stop()
