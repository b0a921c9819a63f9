"""Closing a store while other threads write to it: no crash, a clear error, nothing acknowledged lost.

The race used to kill the adapter with SIGSEGV (sqlite3 freed the connection a
writer thread was using), so each race runs in a child process: a crash fails
the test instead of taking the suite down with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

# Each round: 8 writer threads record as fast as they can, the main thread closes
# the log after a short random delay, then the file is reopened and every write a
# thread saw succeed must be in it.
_DISCLOSURE_RACE = textwrap.dedent("""
    import json, random, sqlite3, sys, threading, time
    from pathlib import Path
    from fedgate.adapters.disclosure_log import Disclosure, DisclosureLog
    from fedgate.errors import StoreClosed

    directory, rounds, writers = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    wrong, lost, acknowledged = [], 0, 0
    for r in range(rounds):
        path = directory / f"disclosures-{r}.db"
        log = DisclosureLog(path)
        done = [0] * writers
        start = threading.Barrier(writers + 1)

        def write(slot):
            start.wait()
            n = 0
            while True:
                d = Disclosure("2024-01-01T00:00:00Z", f"{slot:016x}{n:016x}", n, None, "query.count",
                               "hrss.subsidies", "served", "", n)
                try:
                    log.record(d)
                except StoreClosed:
                    return
                except BaseException as exc:  # anything else is the bug
                    wrong.append(f"{type(exc).__name__}: {exc}")
                    return
                n += 1
                done[slot] = n

        threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
        for t in threads:
            t.start()
        start.wait()
        time.sleep(random.uniform(0, 0.004))
        log.close()
        log.close()  # closing twice is harmless
        for t in threads:
            t.join()
        with sqlite3.connect(path) as conn:
            stored = conn.execute("SELECT count(*) FROM disclosures").fetchone()[0]
        acknowledged += sum(done)
        lost += max(sum(done) - stored, 0)
    print(json.dumps({"wrong": wrong[:5], "wrong_count": len(wrong), "lost": lost,
                      "acknowledged": acknowledged}))
""")


def _race(script: str, tmp_path: Path, rounds: int, writers: int) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path), str(rounds), str(writers)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (f"the racing process died with status {proc.returncode} "
                                  f"(-11 is a segmentation fault):\n{proc.stderr[-3000:]}")
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_closing_the_disclosure_log_under_concurrent_writers_never_crashes_or_loses_a_record(
        tmp_path: Path) -> None:
    result = _race(_DISCLOSURE_RACE, tmp_path, rounds=150, writers=8)
    assert result["wrong_count"] == 0, f"writes after close must raise StoreClosed, got {result['wrong']}"
    assert result["lost"] == 0, "a record whose write returned is missing from the file"
    assert isinstance(result["acknowledged"], int) and result["acknowledged"] > 0, "the writers never wrote"
