"""The registry of match protocols: adding one is a module beside this file and one `register` line below."""

from __future__ import annotations

from fedgate.core.errors import InvalidInput

from . import ecdh, keyed
from .base import ROLES, MatchProtocol, Secret, SecretSetup

__all__ = ["DEFAULT", "ROLES", "MatchProtocol", "Secret", "SecretSetup", "get", "names", "register"]

_REGISTRY: dict[str, MatchProtocol] = {}
# What a query without a mode uses.
DEFAULT = "keyed"


def register(protocol: MatchProtocol) -> MatchProtocol:
    """Make `protocol` selectable by its name (a name registers once)."""
    if protocol.name in _REGISTRY:
        raise ValueError(f"a match protocol named '{protocol.name}' is registered already")
    _REGISTRY[protocol.name] = protocol
    return protocol


def get(name: str) -> MatchProtocol:
    """The protocol called `name`, or InvalidInput naming the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidInput(f"mode must be one of {', '.join(names())}") from None


def names() -> tuple[str, ...]:
    """Registered protocol names, in registration order."""
    return tuple(_REGISTRY)


register(keyed.PROTOCOL)
register(ecdh.PROTOCOL)
