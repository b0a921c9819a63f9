"""The CA's revocation list as a running server holds it: checked on every call, re-read when the file changes.

A CRL that does not verify against the configured CA stops a server at start (ConfigError naming the
file). Once running, the file is looked at (one stat) at most every `RECHECK_S` seconds on the request
path, and re-read only when its mtime, size or inode changed; a changed file that does not parse or
verify (half written, or not from our CA) is ignored with a warning and the previous list kept.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography import x509

from fedgate.core.errors import CertificateRevoked, ConfigError
from fedgate.server.pki import load_crl

log = logging.getLogger(__name__)

RECHECK_S = 1.0


@dataclass(frozen=True)
class Revoked:
    serial: int
    revoked_at: dt.datetime
    reason: str

    def message(self, whose: str = "your certificate") -> str:
        """What the holder of the certificate can act on (no identifier beyond the serial)."""
        why = f" ({self.reason})" if self.reason else ""
        return (f"{whose} serial {self.serial:x} was revoked by the CA on {self.revoked_at:%Y-%m-%d %H:%M} UTC{why}; "
                "ask the CA operator for a new one (`fedgate certs request`, then `fedgate certs sign`)")


def _entries(crl: x509.CertificateRevocationList) -> dict[int, Revoked]:
    out = {}
    for item in crl:
        try:
            reason = item.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
        except x509.ExtensionNotFound:
            reason = ""
        out[item.serial_number] = Revoked(item.serial_number, item.revocation_date_utc, reason)
    return out


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class Revocations:
    """The serials a CRL file revokes, kept current with the file (see the module docstring)."""

    def __init__(self, path: Path, ca_pem: bytes, label: str = "tls.crl", recheck_s: float = RECHECK_S) -> None:
        self.path = path
        self._ca_pem = ca_pem
        self._label = label
        self._recheck_s = recheck_s
        self._lock = threading.Lock()  # one reload at a time, whichever caller notices the change
        self._seen = _signature(path)
        try:
            crl = load_crl(path.read_bytes(), ca_pem)
        except OSError as exc:
            raise ConfigError(str(path), f"cannot read the CRL ({label}): {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError(str(path), f"the CRL ({label}) is unusable: {exc}; re-issue it with "
                              "`fedgate certs crl --ca-dir DIR` on the CA's machine") from None
        self._revoked = _entries(crl)
        self.next_update = crl.next_update_utc
        self._checked = time.monotonic()
        self._warned_stale = False

    def refresh(self) -> None:
        """Re-read the file if it changed since last read; at most one stat every `recheck_s` seconds."""
        now = time.monotonic()
        if now - self._checked < self._recheck_s:
            return
        with self._lock:
            if now - self._checked < self._recheck_s:
                return
            self._checked = now
            seen = _signature(self.path)
            if seen == self._seen:
                self._warn_if_stale()
                return
            self._seen = seen
            try:
                crl = load_crl(self.path.read_bytes(), self._ca_pem)
            except (OSError, ValueError) as exc:
                # Half written, or not our CA's: the list we have is still the CA's last word.
                log.warning("%s (%s) changed but is unusable (%s); keeping the previous list of %d revoked",
                            self._label, self.path, exc.strerror if isinstance(exc, OSError) else exc,
                            len(self._revoked))
                return
            self._revoked = _entries(crl)
            self.next_update = crl.next_update_utc
            self._warned_stale = False
            log.info("%s (%s) reloaded: %d certificate(s) revoked", self._label, self.path, len(self._revoked))

    def _warn_if_stale(self) -> None:
        if self.next_update is not None and not self._warned_stale \
                and dt.datetime.now(dt.UTC) > self.next_update:
            # Still used: refusing everyone over a late CRL would stop the deployment.
            log.warning("%s (%s) is past its next update (%s); ask the CA operator to run `fedgate certs crl`",
                        self._label, self.path, f"{self.next_update:%Y-%m-%d %H:%M} UTC")
            self._warned_stale = True

    def revoked(self, serial: int) -> Revoked | None:
        self.refresh()
        return self._revoked.get(serial)

    def check(self, cert_pem: bytes, whose: str = "your certificate") -> None:
        """Raise CertificateRevoked if the certificate `cert_pem` is revoked."""
        found = self.revoked(serial_of(cert_pem))
        if found is not None:
            raise CertificateRevoked(found.message(whose))


@lru_cache(maxsize=1024)
def serial_of(cert_pem: bytes) -> int:
    """A PEM certificate's serial number (cached: every call of a connection presents the same PEM)."""
    return x509.load_pem_x509_certificate(cert_pem).serial_number
