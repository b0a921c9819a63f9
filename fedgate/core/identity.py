"""Who a caller is, as carried by its verified X.509 certificate.

Role and organisation live in a SPIFFE-style URI SAN:

    spiffe://fedgate/gateway
    spiffe://fedgate/dept/<department code>
    spiffe://fedgate/supervisor/<agency>/<user>
    spiffe://fedgate/officer/<agency>/<user>

Servers take identity from the certificate the TLS layer verified, never from
a request field. Every certificate also carries a DNS SAN naming its role
(`gateway.fedgate`, `<code>.dept.fedgate`), so a client can pin the server it
dials to one department with `grpc.ssl_target_name_override`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from functools import lru_cache

from cryptography import x509

from fedgate.core.errors import Unauthenticated

TRUST_DOMAIN = "fedgate"
_SEGMENT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class Role(enum.StrEnum):
    GATEWAY = "gateway"
    DEPARTMENT = "dept"
    SUPERVISOR = "supervisor"
    OFFICER = "officer"


@dataclass(frozen=True)
class Identity:
    """A verified caller: role, organisation (department or agency) and user name."""

    role: Role
    org: str = ""
    user: str = ""

    def __post_init__(self) -> None:
        shape = {
            Role.GATEWAY: (False, False),
            Role.DEPARTMENT: (True, False),
            Role.SUPERVISOR: (True, True),
            Role.OFFICER: (True, True),
        }[self.role]
        for present, (label, value) in zip(shape, (("org", self.org), ("user", self.user))):
            if present and not _SEGMENT.match(value):
                raise ValueError(
                    f"{self.role.value} identity needs a {label} of lower-case letters, digits, '-' or '_'"
                )
            if not present and value:
                raise ValueError(f"{self.role.value} identity takes no {label}")

    @property
    def spiffe_id(self) -> str:
        parts = [self.role.value, self.org, self.user]
        return f"spiffe://{TRUST_DOMAIN}/" + "/".join(p for p in parts if p)

    @property
    def dns_name(self) -> str:
        """The DNS SAN that pins this identity's server certificate."""
        if self.role is Role.GATEWAY:
            return f"gateway.{TRUST_DOMAIN}"
        if self.role is Role.DEPARTMENT:
            return f"{self.org}.dept.{TRUST_DOMAIN}"
        return f"{self.user}.{self.org}.{self.role.value}.{TRUST_DOMAIN}"

    @property
    def file_stem(self) -> str:
        """File name stem for this identity's certificate and key."""
        return "-".join(p for p in (self.role.value, self.org, self.user) if p)

    def __str__(self) -> str:
        return self.spiffe_id

    @classmethod
    def parse(cls, uri: str) -> Identity:
        """Parse a fedgate SPIFFE ID; ValueError if it is not one."""
        prefix = f"spiffe://{TRUST_DOMAIN}/"
        if not uri.startswith(prefix):
            raise ValueError("not a fedgate SPIFFE ID")
        role_name, *rest = uri[len(prefix):].split("/")
        try:
            role = Role(role_name)
        except ValueError:
            raise ValueError(f"unknown role {role_name!r}") from None
        if len(rest) > 2:
            raise ValueError("too many path segments")
        return cls(role, *rest)

    @classmethod
    def department(cls, code: str) -> Identity:
        return cls(Role.DEPARTMENT, code)

    @classmethod
    def person(cls, role: Role, spec: str) -> Identity:
        """Build a supervisor or officer from 'agency/user'."""
        org, sep, user = spec.partition("/")
        if not sep:
            raise ValueError(f"expected AGENCY/USER, got {spec!r}")
        return cls(role, org, user)


GATEWAY = Identity(Role.GATEWAY)


@lru_cache(maxsize=1024)
def identity_from_pem(pem: bytes) -> Identity:
    """The fedgate identity in a (TLS-verified) PEM certificate's URI SAN."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        raise Unauthenticated("client certificate carries no subject alternative name") from None
    uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier)
            if u.startswith(f"spiffe://{TRUST_DOMAIN}/")]
    if len(uris) != 1:
        raise Unauthenticated("client certificate must carry exactly one fedgate SPIFFE ID")
    try:
        return Identity.parse(uris[0])
    except ValueError as exc:
        raise Unauthenticated(f"client certificate has an unusable SPIFFE ID: {exc}") from None


def who(subject: str) -> tuple[str, str]:
    """(agency, supervisor) from a SPIFFE ID; the supervisor in the short form the audit table prints."""
    try:
        ident = Identity.parse(subject)
    except ValueError:
        return "", subject
    return ident.org, ident.spiffe_id.split("://", 1)[1].split("/", 1)[1]
