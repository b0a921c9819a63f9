"""Closing a store while other threads write to it: no crash, a clear error, nothing acknowledged lost.

The disclosure-log race used to kill the adapter with SIGSEGV (sqlite3 freed the
connection a writer thread was using), so every race runs in a child process: a
crash fails the test instead of taking the suite down with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Each round: writer threads write as fast as they can, the main thread closes the store
# after a short random delay. A write that starts after the close must raise StoreClosed;
# any other exception, or a crash, is the bug. Then the file is reopened and every write a
# thread saw succeed must be in it.
_RACE = textwrap.dedent("""
    import json, random, sqlite3, sys, threading, time
    from pathlib import Path
    from fedgate.core.errors import StoreClosed

    kind, directory, rounds, writers = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

    def disclosure_log(path):
        from fedgate.adapters.disclosure_log import Disclosure, DisclosureLog
        log = DisclosureLog(path)
        def write(slot, n):
            log.record(Disclosure("2024-01-01T00:00:00Z", f"{slot:016x}{n:016x}", n, None, "query.count",
                                  "hrss.subsidies", "served", "", n))
        return write, log.close, "SELECT count(*) FROM disclosures"

    def audit_store(path):
        from fedgate.crypto.merkle import NodeID
        from fedgate.gateway.audit_store import AuditStore
        store = AuditStore.open(f"sqlite:///{path}")
        one_writer = threading.Lock()  # as the AuditLog's lock: one append at a time, close() at any
        def write(slot, n):
            with one_writer:
                store.append_next(b"{}", lambda size, _frontier: ([(NodeID(0, size), bytes(32))], "note", None))
        return write, store.close, "SELECT count(*) FROM fedgate_audit_entries"

    def registry_store(path):
        from fedgate.core.datasets import DatasetDecl, FieldDecl
        from fedgate.gateway.registry_store import RegistryStore
        store = RegistryStore.open(f"sqlite:///{path}")
        field = FieldDecl.build("k", "string", "L1", "plain", "")
        def write(slot, n):
            store.replace_department(f"d{slot}x{n}", "D", "127.0.0.1:1", [DatasetDecl(f"d{slot}x{n}", "t", (field,))],
                                     expected=None)
        return write, store.close, "SELECT count(*) FROM fedgate_departments"

    def span_store(path):
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SpanExportResult
        from fedgate.server.trace_store import SqliteSpanExporter
        exporter = SqliteSpanExporter(path)
        tracer = TracerProvider().get_tracer("race")
        def write(slot, n):
            with tracer.start_as_current_span("s") as span:
                pass
            if exporter.export([span]) is not SpanExportResult.SUCCESS:
                raise StoreClosed("exporter shut down")  # its documented answer after shutdown
        return write, exporter.shutdown, "SELECT count(*) FROM spans"

    opener = {"disclosure": disclosure_log, "audit": audit_store, "registry": registry_store,
              "spans": span_store}[kind]
    wrong, lost, acknowledged = [], 0, 0
    for r in range(rounds):
        path = directory / f"{kind}-{r}.db"
        write, close, count = opener(path)
        done = [0] * writers
        closed = threading.Event()
        start = threading.Barrier(writers + 1)

        def run(slot):
            start.wait()
            n = 0
            while True:
                after_close = closed.is_set()
                try:
                    write(slot, n)
                except StoreClosed:
                    return
                except BaseException as exc:
                    wrong.append(f"{type(exc).__name__}: {exc}")
                    return
                if after_close:
                    wrong.append("a write that started after close() succeeded")
                    return
                n += 1
                done[slot] = n

        threads = [threading.Thread(target=run, args=(i,)) for i in range(writers)]
        for t in threads:
            t.start()
        start.wait()
        time.sleep(random.uniform(0, 0.004))
        close()
        closed.set()
        close()  # closing twice is harmless
        for t in threads:
            t.join()
        with sqlite3.connect(path) as conn:
            stored = conn.execute(count).fetchone()[0]
        acknowledged += sum(done)
        lost += max(sum(done) - stored, 0)
    print(json.dumps({"wrong": wrong[:5], "wrong_count": len(wrong), "lost": lost,
                      "acknowledged": acknowledged}))
""")


@pytest.mark.parametrize("kind, rounds, writers", [
    ("disclosure", 150, 8),  # the adapter's disclosure log: segfaulted in every run before the fix
    ("audit", 20, 4),        # the gateway's audit store: writes after close() silently reopened it
    ("registry", 20, 4),     # the gateway's registry: the same
    ("spans", 40, 4),        # every process's span store
])
def test_closing_a_store_under_concurrent_writers_never_crashes_or_loses_a_write(
        tmp_path: Path, kind: str, rounds: int, writers: int) -> None:
    proc = subprocess.run([sys.executable, "-c", _RACE, kind, str(tmp_path), str(rounds), str(writers)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (f"the racing process died with status {proc.returncode} "
                                  f"(-11 is a segmentation fault):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["wrong_count"] == 0, f"a write racing close() must succeed or raise StoreClosed: {result['wrong']}"
    assert result["lost"] == 0, "a write that returned is missing from the file"
    assert result["acknowledged"] > 0, "the writers never wrote"


def test_every_registry_write_after_close_is_refused(tmp_path: Path) -> None:
    """Heartbeats and health checks write too: after close() they are refused, not served by a reopened pool."""
    from fedgate.core.datasets import DatasetDecl, FieldDecl
    from fedgate.core.errors import StoreClosed
    from fedgate.gateway.registry_store import RegistryStore

    store = RegistryStore.open(f"sqlite:///{tmp_path / 'registry.db'}")
    decl = DatasetDecl("hrss", "subsidies", (FieldDecl.build("k", "string", "L1", "plain", ""),))
    store.replace_department("hrss", "HRSS", "127.0.0.1:1", [decl], expected=None)
    store.close()
    writes = {
        "registration": lambda: store.replace_department("hrss", "HRSS", "127.0.0.1:1", [decl], expected=None),
        "heartbeat": lambda: store.record_heartbeat("hrss", "127.0.0.1:1", {"subsidies": 5}),
        "health check": lambda: store.record_check("hrss", "127.0.0.1:1", False),
    }
    for name, write in writes.items():
        with pytest.raises(StoreClosed):
            write()
            pytest.fail(f"a {name} written after close() succeeded")
