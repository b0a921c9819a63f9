"""Reload the policy when its files change, and write each reload to the audit log."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from fedgate.core.audit_entry import AuditEntry, utc_now
from fedgate.core.errors import ConfigError
from fedgate.gateway.audit_log import AuditLog
from fedgate.gateway.policy import Policy
from fedgate.core.identity import GATEWAY

log = logging.getLogger(__name__)


def _stamp(paths: list[Path]) -> tuple[tuple[int, int], ...]:
    out = []
    for p in paths:
        try:
            st = p.stat()
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((0, 0))
    return tuple(out)


async def watch_policy(policy: Policy, audit: AuditLog, interval_s: float) -> None:
    """Poll the files every `interval_s`; on a change, reload (or keep the old rules) and audit it."""
    paths = [policy.model_path, policy.policy_path]
    seen = _stamp(paths)
    while True:
        await asyncio.sleep(interval_s)
        now = _stamp(paths)
        if now == seen:
            continue
        seen = now
        try:
            rules = await asyncio.to_thread(policy.reload)
            sizes: tuple[tuple[str, int], ...] = (("rules", rules.rules),)
            decision, status, reason = "allow", "OK", ""
            log.info("policy reloaded after a file change: %d rules", rules.rules)
        except ConfigError as exc:
            decision, status, reason, sizes = "error", "FAILED_PRECONDITION", str(exc), ()
            log.error("policy file changed but does not load; the previous rules stay in force: %s", exc)
        await audit.append(AuditEntry(
            time=utc_now(), subject=GATEWAY.spiffe_id, role=GATEWAY.role.value, action="policy.reload",
            method="(policy file change)", decision=decision, status=status, reason=reason,
            rule=f"file change; rules digest {policy.digest[:16]}", result_sizes=sizes))
