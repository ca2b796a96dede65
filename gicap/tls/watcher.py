"""Noticing certificate renewals (cert-manager, Kubernetes Secret updates, SIGHUP).

Deliberately free of gevent and threads: the server calls ``poll()`` from its own
loop every ``interval`` seconds and swaps in a context built from what it returns.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime, timedelta

from gicap.tls.certset import CertificateError, CertificateSet, load_certificate_set, watched_paths
from gicap.tls.settings import CertificateSettings

Signature = tuple[tuple[object, ...], ...]

_REMINDER_PERIOD = timedelta(days=1)
#: While the files hold a set that does not load, it is tried again this often.
RETRY_SECONDS = 5.0


class CertificateWatcher:
    """Loads the certificate set, then reloads it whenever its files change.

    A change is any difference in a file's resolved path, device, inode, size, mtime or
    ctime, so the atomic ``..data`` symlink swap of a Kubernetes Secret volume is seen
    even when the new files carry the old mtimes. A broken set is reported once; the
    previous set keeps serving. It is tried again when the files change, and every
    ``RETRY_SECONDS`` meanwhile: a certificate issued with notBefore a few seconds
    ahead (another machine's clock) becomes valid without any change to its files.
    """

    def __init__(self, settings: CertificateSettings, logger: logging.Logger | None = None):
        self.settings = settings
        self.log = logger or logging.getLogger("gicap.tls")
        self.current: CertificateSet | None = None
        self.last_error: str | None = None
        self._signature: Signature | None = None
        self._last_notice: datetime | None = None
        #: when the last load failed (time.monotonic()), to retry it
        self._failed_at: float | None = None

    @property
    def interval(self) -> float:
        return self.settings.watch_interval

    def signature(self) -> Signature:
        """Cheap stat-only fingerprint of the configured files."""
        entries: list[tuple[object, ...]] = []
        for path in watched_paths(self.settings):
            try:
                st = os.stat(path)
            except OSError as exc:
                entries.append((path, None, exc.errno))
                continue
            entries.append(
                (
                    path,
                    os.path.realpath(path),
                    st.st_dev,
                    st.st_ino,
                    st.st_size,
                    st.st_mtime_ns,
                    st.st_ctime_ns,
                )
            )
        return tuple(entries)

    def initial(self, now: datetime | None = None) -> tuple[CertificateSet | None, str]:
        """First load: the set and ``""``, or None and why Secure ICAP must stay off.

        Nothing is logged on failure; the caller reports the reason. Later ``poll()``
        calls keep watching, so files installed afterwards are picked up.
        """
        self._signature = self.signature()
        try:
            certset = load_certificate_set(self.settings, now)
        except CertificateError as exc:
            self.last_error = str(exc)
            self._failed_at = time.monotonic()
            return None, str(exc)
        self._accept(certset, now)
        return certset, ""

    def poll(self, now: datetime | None = None) -> CertificateSet | None:
        """A newly loaded set when the files changed into a valid, different set, or
        when the set that failed to load last loads now (see RETRY_SECONDS)."""
        signature = self.signature()
        if signature == self._signature:
            failed_at = self._failed_at
            if failed_at is not None and time.monotonic() - failed_at >= RETRY_SECONDS:
                return self._load(now, force=False, retry=True)
            self._remind(now)
            return None
        self._signature = signature
        return self._load(now, force=False)

    def force(self, now: datetime | None = None) -> CertificateSet | None:
        """Reload whatever the files hold now (SIGHUP); None and one error line on failure."""
        self._signature = self.signature()
        return self._load(now, force=True)

    def _load(
        self, now: datetime | None, force: bool, retry: bool = False
    ) -> CertificateSet | None:
        try:
            certset = load_certificate_set(self.settings, now)
        except CertificateError as exc:
            same = str(exc) == self.last_error
            self.last_error = str(exc)
            self._failed_at = time.monotonic()
            if retry and same:
                return None  # (said when it first failed)
            if self.current is not None:
                self.log.error(
                    "Secure ICAP certificate set not reloaded, the previous one keeps serving: %s",
                    exc,
                )
            else:
                self.log.error("Secure ICAP certificate set not loaded: %s", exc)
            return None
        self.last_error = None
        self._failed_at = None
        if (
            not force
            and self.current is not None
            and certset.fingerprint() == self.current.fingerprint()
        ):
            self.log.debug("Secure ICAP certificate files touched, content unchanged")
            return None
        self._accept(certset, now)
        return certset

    def _accept(self, certset: CertificateSet, now: datetime | None) -> None:
        now = now or datetime.now(UTC)
        self.current = certset
        self.last_error = None
        self.log.info(
            "Secure ICAP certificate loaded: %s (%d days left)",
            certset.describe(),
            int(certset.days_left(now)),
        )
        self._last_notice = None
        self._remind(now)
        if certset.crl_next_update is not None and certset.crl_next_update < now:
            self.log.warning(
                "Secure ICAP CRL %s is past its nextUpdate (%s UTC); with CRL checking "
                "OpenSSL refuses every client until a fresh CRL is installed",
                self.settings.crlfile,
                f"{certset.crl_next_update:%Y-%m-%d %H:%M:%S}",
            )

    def _remind(self, now: datetime | None) -> None:
        """Warn about an approaching expiry at load and then once a day."""
        certset = self.current
        if certset is None:
            return
        now = now or datetime.now(UTC)
        days = certset.days_left(now)
        if days > self.settings.expiry_warning_days:
            return
        if self._last_notice is not None and now - self._last_notice < _REMINDER_PERIOD:
            return
        self._last_notice = now
        if days <= 0:
            self.log.error(
                "Secure ICAP server certificate %s expired on %s UTC; clients refuse it",
                self.settings.certfile,
                f"{certset.not_after:%Y-%m-%d %H:%M:%S}",
            )
        else:
            self.log.warning(
                "Secure ICAP server certificate %s expires on %s UTC, in %d days",
                self.settings.certfile,
                f"{certset.not_after:%Y-%m-%d %H:%M:%S}",
                int(days),
            )
