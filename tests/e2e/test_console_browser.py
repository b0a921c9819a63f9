"""Issue 17: the web console in a real browser (Debian's chromium, driven by Playwright) against real
gateway and adapter processes over mTLS.

An officer searches the log, opens an entry whose inclusion proof the page itself checks, downloads the
proof bundle and checks it offline, sees a refused request and a query's trace across the gateway and a
department, and verifies the whole log; a department approves a held request in its console and the
supervisor then collects the answer. A browser without the owner's certificate gets nothing, and a
stranger's request never becomes an audited call under the owner's name.

Screenshots of each main page go to $FEDGATE_SCREENSHOTS (docs/console/ when run by `make screenshots`),
else to the test's temporary directory.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import support
from deployment import Deployment, deployed
from fedgate.core.identity import Identity
from fedgate.server.signing_key import load_or_create
from fedgate.server.tls import TlsFiles

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HRSS = Identity.department("hrss")
TABLES = support.APPROVAL_TABLES
ASK = ("query", "disclose", "hrss.subsidies", "--field", "company_name", "--limit", "5",
       "--purpose", "稳岗补贴抽查", "--case", "DC-2026-130")


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (the dev extra installs it)"
    if not Path(CHROMIUM).exists():
        return "no chromium executable (Debian: apt-get install chromium; .ci/run installs it)"
    return None


pytestmark = pytest.mark.skipif(_browser_missing() is not None, reason=_browser_missing() or "")


@contextlib.contextmanager
def console(d: Deployment, who: Identity, *args: str) -> Iterator[str]:
    """A `fedgate console` process for `who`, as that person runs it; yields its URL."""
    ready = d.tmp / f"console-{who.file_stem}.json"
    ready.unlink(missing_ok=True)
    log = (d.tmp / f"console-{who.file_stem}.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "fedgate", "console", "--listen", "127.0.0.1:0",
                             "--ready-file", str(ready), *args], env=d.env(who), stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, (d.tmp / f"console-{who.file_stem}.log").read_text()
            assert time.monotonic() < deadline, "the console did not start within 60 s"
            time.sleep(0.1)
        yield json.loads(ready.read_text())["url"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _shots() -> Path | None:
    where = os.environ.get("FEDGATE_SCREENSHOTS")
    return Path(where) if where else None


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def _context(browser: Any, url: str, files: TlsFiles | None) -> Any:
    """A browser profile that trusts the fedgate CA's server certificate and presents `files`' certificate."""
    certs = [{"origin": url.rstrip("/"), "certPath": str(files.cert), "keyPath": str(files.key)}] if files else []
    # ignore_https_errors stands for importing the fedgate CA into the browser's trust store.
    return browser.new_context(ignore_https_errors=True, client_certificates=certs,
                               viewport={"width": 1280, "height": 800})


def _shot(page: Any, tmp: Path, name: str) -> None:
    target = _shots() or tmp / "screenshots"
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / f"{name}.png"), full_page=True)


def _altering_entry(route: Any) -> None:
    """Serve the entry page with one character of the logged entry changed inside its proof bundle."""
    response = route.fetch()
    text = response.text()
    start = text.index('data-bundle="') + len('data-bundle="')
    end = text.index('"', start)
    bundle = json.loads(html.unescape(text[start:end]))
    body = base64.b64decode(bundle["entry"]).replace(b"DC-2026-129", b"DC-2026-120")
    bundle["entry"] = base64.b64encode(body).decode()
    route.fulfill(response=response, body=text[:start] + html.escape(json.dumps(bundle)) + text[end:])


def _audit(d: Deployment) -> list[dict[str, Any]]:
    out = d.fedgate("audit", "search", "--limit", "10000", "--json", who=support.OFFICER)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_officer_and_department_consoles_in_a_browser(tmp_path: Path, browser: Any) -> None:
    keys = tmp_path / "approvers"
    load_or_create(keys / "hrss-zhang.key", "hrss-zhang")
    with deployed(tmp_path, tables={"hrss": TABLES.format(dir=keys)}) as d:
        counted = d.fedgate("query", "count", "hrss.subsidies", "--purpose", "稳岗补贴核查", "--case", "DC-2026-129")
        assert counted.returncode == 0, counted.stderr
        assert d.fedgate("audit", "tail").returncode == 1  # a supervisor may not read the log: refused, logged
        small = d.fedgate("query", "count", "hrss.subsidies", "--filter", "amount_fen >= 18000",
                          "--purpose", "稳岗补贴核查", "--case", "DC-2026-128")
        assert small.returncode == 0 and "fewer than" in small.stdout, small.stdout + small.stderr
        asked = d.fedgate(*ASK)
        assert asked.returncode == 3, asked.stdout + asked.stderr  # held for hrss's approval
        (pending,) = (d.tmp / "state-supervisor-dcb-alice" / "pending").glob("*.json")
        qid = pending.stem
        officer = TlsFiles.in_dir(d.certs, support.OFFICER)
        vkey = d.tmp / "gw" / "log-signing.vkey"

        witnesses = d.tmp / "witnesses.vkeys"  # the departments' witness keys, as an officer pins them
        witnesses.write_text("".join((d.tmp / dept / "witness.vkey").read_text() for dept in ("hrss", "samr")))
        with console(d, support.OFFICER, "--vkey", str(vkey), "--state", str(d.tmp / "officer-state"),
                     "--witness-keys", str(witnesses), "--witnesses", "0") as url:
            # (With --witnesses 1 the verification below would fail, rightly: the held request's entry is the newest
            # query entry, and no department has seen a checkpoint covering it yet.)
            page = _context(browser, url, officer).new_page()
            page.goto(url)
            assert page.locator("#log-size").inner_text().strip().isdigit()
            # hrss admitted tickets, so it cosigned the checkpoints they carried; samr was never asked.
            cosigners = page.locator("#cosigners").inner_text()
            assert "hrss" in cosigners and "cosignature verified" in cosigners and "samr" not in cosigners, cosigners
            _shot(page, tmp_path, "log")

            # Search by case number: the count query's entries, with the page's proof check.
            page.goto(url + "entries")
            page.fill("input[name=case]", "DC-2026-129")
            page.click("#search-form button[type=submit]")
            rows = page.locator("#entries tbody tr")
            assert rows.count() >= 1
            assert "query.count" in page.locator("#entries").inner_text()
            _shot(page, tmp_path, "search")
            rows.first.locator("a").first.click()
            page.wait_for_selector("#page-check[data-verified]")
            assert page.locator("#page-check").get_attribute("data-verified") == "true", \
                page.locator("#page-check").inner_text()
            assert "console checked it" in page.locator("#console-check").inner_text()
            _shot(page, tmp_path, "entry")
            entry_url = page.url
            # The page's own check does not take the server's word: an entry altered on its way to the
            # browser (a compromised console or proxy) fails in the page.
            page.route(entry_url, _altering_entry)
            page.goto(entry_url)
            page.wait_for_selector("#page-check[data-verified]")
            assert page.locator("#page-check").get_attribute("data-verified") == "false"
            assert "does not lead to the signed root" in page.locator("#page-check").inner_text()
            page.unroute(entry_url)
            page.goto(entry_url)
            with page.expect_download() as download:
                page.click("#bundle-link")
            bundle = tmp_path / "bundle.json"
            download.value.save_as(bundle)
            checked = d.fedgate("audit", "check-bundle", str(bundle), "--vkey", str(vkey), who=support.OFFICER)
            assert checked.returncode == 0 and "OK" in checked.stdout, checked.stdout + checked.stderr
            # A tampered bundle fails offline, as it fails in the page.
            tampered = json.loads(bundle.read_text())
            body = json.loads(base64.b64decode(tampered["entry"]))
            body["case_number"] = "DC-2026-999"
            tampered["entry"] = base64.b64encode(
                json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).decode()
            (tmp_path / "tampered.json").write_text(json.dumps(tampered))
            bad = d.fedgate("audit", "check-bundle", str(tmp_path / "tampered.json"), "--vkey", str(vkey),
                            who=support.OFFICER)
            assert bad.returncode == 1 and "FAIL" in bad.stderr, bad.stdout + bad.stderr

            # The trace of the count query: spans of the gateway and of hrss's adapter, gathered by the gateway.
            page.click("#trace-link")
            page.wait_for_selector("#trace-tree")
            services = page.locator("#trace-services").inner_text()
            assert "fedgate-gateway" in services and "fedgate-adapter-hrss" in services, services
            _shot(page, tmp_path, "trace")

            page.goto(url + "refused")
            refused = page.locator("#entries").inner_text()
            assert "supervisor/dcb/alice" in refused and "audit.read" in refused, refused
            _shot(page, tmp_path, "refused")
            page.click("#suppressed-link")
            suppressed = page.locator("#entries").inner_text()
            assert "DC-2026-128" in suppressed and "DC-2026-129" not in suppressed, suppressed

            # Paging (3 a page) walks the same entries as one long page (below the first page's newest entry:
            # every page view appends entries of its own); an agency narrows to its people.
            page.goto(url + "entries?limit=3")
            first = page.locator("#entries tbody tr td:first-child").all_inner_texts()
            page.click("#next-page")
            second = page.locator("#entries tbody tr td:first-child").all_inner_texts()
            page.goto(url + f"entries?limit=6&before={int(first[0]) + 1}")
            assert page.locator("#entries tbody tr td:first-child").all_inner_texts() == first + second
            assert len(first) == 3 and int(second[0]) < int(first[-1])
            page.goto(url + "entries?agency=dcb")
            callers = page.locator("#entries tbody tr td:nth-child(4)").all_inner_texts()
            assert callers and set(callers) == {"supervisor/dcb/alice"}, callers
            # A criterion that cannot match is a 400 naming it, not an empty page.
            response = page.goto(url + "entries?decision=maybe")
            assert response is not None and response.status == 400
            assert "--decision 'maybe' is not one of" in page.locator("#error-message").inner_text()

            page.goto(url + "verify")
            page.click("#verify-start")
            page.wait_for_selector("#verify-progress[data-phase=done], #verify-progress[data-phase=failed]",
                                   timeout=60_000)
            assert page.locator("#verify-result").get_attribute("class") == "ok", \
                page.locator("#verify-result").inner_text()
            _shot(page, tmp_path, "verify")
            page.goto(url + "log")
            assert "still extends" in page.locator("#saved-state").inner_text()

        # The department approves in its console; the supervisor then collects exactly the answer.
        hrss = TlsFiles.in_dir(d.certs, HRSS)
        with console(d, HRSS, "--config", str(d.tmp / "adapter-hrss.toml"),
                     "--approver-key", str(keys / "hrss-zhang.key")) as url:
            page = _context(browser, url, hrss).new_page()
            page.goto(url + "approvals")
            assert qid[:12] in page.locator("#approvals").inner_text()
            _shot(page, tmp_path, "approvals")
            # Another site making this browser post an approval (the certificate goes along, the page's token
            # does not) is refused, and the request stays pending.
            forged = page.request.post(url + f"approvals/{qid}", form={"decision": "approve", "csrf": "0" * 64})
            assert forged.status == 403 and "not sent from this console" in forged.text()
            page.click(f"a[href='/approvals/{qid}']")
            assert "稳岗补贴抽查" in page.locator("#held").inner_text()
            assert "pending" in page.locator("#held").inner_text()
            page.fill("#reason", "立案审批表 2026-130")
            page.click("#approve")
            assert "approved" in page.locator("#decision-result").inner_text()
            _shot(page, tmp_path, "approval")
            collected = d.fedgate("query", "collect", qid, "--wait", "30")
            assert collected.returncode == 0, collected.stdout + collected.stderr
            assert collected.stdout.count("公司") == 5
            page.goto(url + "requests")
            assert "served" in page.locator("#requests").inner_text()
            _shot(page, tmp_path, "requests")
            # A subject report: the identifier goes in a POST body, is only hashed, and the uses come back.
            page.goto(url + "subject-report")
            page.fill("#identifier", support.uscc(1))
            page.click("#subject-form button[type=submit]")
            report = page.locator("#report").inner_text()
            assert "DC-2026-129" in report, report
            assert support.uscc(1) not in page.content()  # not echoed back into the page
            _shot(page, tmp_path, "subject-report")
            page.goto(url + "certificates")
            assert "spiffe://fedgate/dept/hrss" in page.locator("#certificates").inner_text()
            _shot(page, tmp_path, "certificates")


def test_a_browser_without_the_owners_certificate_gets_nothing(tmp_path: Path, browser: Any) -> None:
    with deployed(tmp_path) as d:
        vkey = d.tmp / "gw" / "log-signing.vkey"
        with console(d, support.OFFICER, "--vkey", str(vkey), "--state", str(d.tmp / "officer-state")) as url:
            newest = max(e["index"] for e in _audit(d))
            # No client certificate: the TLS handshake fails, no page.
            page = _context(browser, url, None).new_page()
            with pytest.raises(Exception, match="ERR_"):
                page.goto(url + "entries")
            plain = ssl.create_default_context(cafile=str(TlsFiles.in_dir(d.certs, support.OFFICER).ca))
            plain.check_hostname = False
            with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
                urllib.request.urlopen(url + "entries", context=plain, timeout=10)
            # A valid certificate of someone else (the supervisor's, from the same CA): refused by the console,
            # and nothing is asked of the gateway under the officer's name.
            page = _context(browser, url, TlsFiles.in_dir(d.certs, support.SUPERVISOR)).new_page()
            response = page.goto(url + "entries")
            assert response is not None and response.status == 403
            assert "this console is" in page.content() and "Entry" not in page.content()
            # The only entry since is the `audit search` this test made itself before the browser's visits.
            new = [e for e in _audit(d) if e["index"] > newest]
            assert [(e["action"], e["subject"]) for e in new] == [("audit.search", support.OFFICER.spiffe_id)], new
