"""A fixture code site for the scraper's tests and benchmark: a threaded HTTP server on 127.0.0.1.

It serves 220 procedure pages that we generate here (our own short texts, in the shape of a code
site: an h1 title, a "CPT4 code" badge, h2 sections, a Similar Codes list linking other pages), a
sitemap index with a plain part, a gzipped part and a nested index, a robots.txt with Disallow, Allow
and Crawl-delay, and fault endpoints (``FAULTS``). Pages carry an ETag and Last-Modified and answer
conditional requests with 304. Every request is logged (``site.log``) for the tests to inspect.

Run it by hand with ``python tests/scrape_site.py --port 8000 [--latency 0.05]``.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import html
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SITES = [
    "knee joint",
    "shoulder",
    "lumbar spine",
    "wrist",
    "ankle",
    "hip joint",
    "elbow",
    "cervical spine",
    "thyroid gland",
    "gallbladder",
    "appendix",
    "groin",
    "cornea",
    "middle ear",
    "nasal septum",
    "tonsils",
    "bladder",
    "forearm skin",
    "coronary artery",
    "heel",
]
ACTIONS = [
    ("Arthroscopic repair", "repairs the damaged tissue through small keyhole openings"),
    ("Excision of a lesion", "cuts out an abnormal growth with a margin of healthy tissue"),
    ("Needle biopsy", "takes a small tissue sample with a hollow needle for the laboratory"),
    ("Drainage of an abscess", "opens and empties a pocket of infected fluid"),
    ("Removal of a foreign body", "finds and takes out an object that should not be there"),
    ("Endoscopic inspection", "looks inside with a thin camera to find the source of symptoms"),
    ("Reconstruction", "rebuilds the structure with grafts, anchors or sutures"),
    ("Injection of medication", "places medicine exactly where it is needed under imaging"),
    ("Fusion", "joins two bony parts so that they heal into one solid piece"),
    ("Partial resection", "removes the diseased part and keeps as much healthy tissue as possible"),
]
SUPPLIES = [
    ("A", "Test strips for a home glucose monitor"),
    ("A", "Lancets for fingerstick testing"),
    ("A", "Adhesive wound dressing, medium size"),
    ("A", "Ostomy pouch, drainable"),
    ("A", "Disposable syringe with needle"),
    ("L", "Knee orthosis with adjustable hinge"),
    ("L", "Wrist splint, prefabricated"),
    ("L", "Ankle support brace, elastic"),
    ("K", "Lightweight folding wheelchair"),
    ("K", "Seat cushion for a wheelchair"),
    ("J", "Injection of a long acting steroid"),
    ("J", "Injection of an antibiotic, per gram"),
    ("G", "Remote monitoring of heart rhythm"),
    ("G", "Counselling visit for quitting tobacco"),
    ("E", "Cane with a single tip"),
    ("E", "Walker with wheels, folding"),
    ("E", "Commode chair, stationary"),
    ("E", "Hospital bed, semi-electric"),
    ("E", "Oxygen concentrator, portable"),
    ("B", "Enteral feeding supply kit"),
]
#: robots.txt keeps us out of /private/ and the E0 codes except E0100.
DISALLOWED_PREFIXES = ("/private/", "/code/hcpcs/E0")
ALLOWED_EXCEPTION = "/code/hcpcs/E0100"
LAST_MODIFIED = formatdate(1_700_000_000, usegmt=True)


@dataclass
class Page:
    path: str
    code_system: str
    code: str
    title: str
    body: bytes = b""
    etag: str | None = None
    validators: bool = True  # ETag/Last-Modified and 304 support
    behaviour: str = ""  # "", "429_once", "503_once"


@functools.lru_cache(maxsize=4)
def gzip_bomb(size: int) -> bytes:
    """``size`` zero bytes, gzipped (about a thousandth of the size on the wire)."""
    return gzip.compress(b"\0" * size, compresslevel=6)


def slugify(text: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "-" for c in text)
    return "-".join(p for p in out.split("-") if p)[:60]


def _page_html(p: Page, similar: list[Page], idx: int) -> bytes:
    badge = "CPT4 code" if p.code_system == "cpt4" else "HCPCS code"
    site, act = SITES[idx % len(SITES)], ACTIONS[(idx // len(SITES)) % len(ACTIONS)]
    e = html.escape
    li = "".join
    sim = li(f'<li><a href="{e(s.path)}">{e(s.code)} - {e(s.title)}</a></li>' for s in similar)
    text = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(p.title)} | {e(p.code)}</title></head>
<body><header><a href="/">Search all medical codes</a></header>
<main>
<h1>{e(p.title)}</h1>
<span class="badge">{badge}</span>
<h2>Name of the Procedure:</h2>
<p>{e(p.title)} ({e(p.code)})</p>
<h2>Summary</h2>
<p>In this procedure the care team {act[1]}. It concerns the {site} and is listed under code {e(p.code)}.</p>
<h2>Purpose</h2>
<p>The aim is to relieve symptoms in the {site}, find their cause, and help the patient get back to
daily life with less pain.</p>
<h2>Indications</h2>
<ul><li>Symptoms in the {site} that last longer than six weeks.</li>
<li>Imaging that shows a problem suited to this approach.</li>
<li>Simpler treatments tried without enough relief.</li></ul>
<h2>Preparation</h2>
<ul><li>No food for six hours beforehand.</li>
<li>Bring a list of current medicines, including blood thinners.</li></ul>
<h2>Procedure Description</h2>
<ol><li>The patient is positioned and the skin over the {site} is cleaned.</li>
<li>The clinician {act[1]}.</li>
<li>The area is closed and covered with a clean dressing.</li></ol>
<h2>Risks and Complications</h2>
<ul><li>Bleeding or bruising near the {site}.</li><li>Infection, which is uncommon.</li></ul>
<h2>Recovery</h2>
<ul><li>Most people go home the same day.</li><li>Light activity is fine after a few days.</li></ul>
<h2>Similar Codes</h2>
<ul>{sim}</ul>
</main>
<footer><p>Fixture page number {idx}, written for procpipe's tests.</p></footer>
</body></html>
"""
    return text.encode("utf-8")


def build_pages() -> list[Page]:
    """The 220 site pages: 200 CPT4 procedures and 20 HCPCS supplies (deterministic)."""
    pages: list[Page] = []
    for i in range(200):
        site, act = SITES[i % len(SITES)], ACTIONS[(i // len(SITES)) % len(ACTIONS)]
        title = f"{act[0]} of the {site}"
        code = str(20000 + i * 37)
        pages.append(Page(f"/code/cpt4/{code}-{slugify(title)}", "cpt4", code, title))
    for j, (letter, title) in enumerate(SUPPLIES):
        code = f"E{100 + j - 14:04d}" if letter == "E" else f"{letter}{4200 + j:04d}"
        pages.append(Page(f"/code/hcpcs/{code}-{slugify(title)}", "hcpcs", code, title))
    pages[7].behaviour = "429_once"
    pages[11].behaviour = "503_once"
    pages[13].validators = False
    n = len(pages)
    for i, p in enumerate(pages):
        similar = [pages[(i + k) % n] for k in (1, 7, 13, 31)]
        p.body = _page_html(p, similar, i)
        p.etag = '"' + hashlib.sha256(p.body).hexdigest()[:16] + '"' if p.validators else None
    return pages


def _sitemap_xml(urls: list[str]) -> bytes:
    items = "".join(f"<url><loc>{html.escape(u)}</loc></url>\n" for u in urls)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n{items}</urlset>\n'
    ).encode()


def _index_xml(urls: list[str]) -> bytes:
    items = "".join(f"<sitemap><loc>{html.escape(u)}</loc></sitemap>\n" for u in urls)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n{items}</sitemapindex>\n'
    ).encode()


@dataclass
class Hit:
    t: float
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class FixtureSite:
    """The site. ``start()`` binds a free port on ``host``; ``stop()`` shuts it down."""

    host: str = "127.0.0.1"
    port: int = 0
    latency: float = 0.0
    crawl_delay: float | None = 0.001
    retry_after: str = "1"
    slow_seconds: float = 3.0
    oversize_bytes: int = 6 * 1024 * 1024
    bomb_bytes: int = 16 * 1024 * 1024
    offhost_url: str = "http://127.0.0.2:9/code/cpt4/99999-elsewhere"
    pages: list[Page] = field(default_factory=build_pages)
    log: list[Hit] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._by_path = {p.path: p for p in self.pages}
        self._server: ThreadingHTTPServer | None = None
        self._bomb: bytes | None = None
        self._stopping = threading.Event()

    # ------------------------------------------------------------ addresses

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    @property
    def sitemap_url(self) -> str:
        return self.url("/sitemap.xml")

    def page(self, path: str) -> Page:
        return self._by_path[path]

    def disallowed(self, path: str) -> bool:
        return path.startswith(DISALLOWED_PREFIXES) and not path.startswith(ALLOWED_EXCEPTION)

    @property
    def fetchable_pages(self) -> list[Page]:
        return [p for p in self.pages if not self.disallowed(p.path)]

    @property
    def disallowed_pages(self) -> list[Page]:
        return [p for p in self.pages if self.disallowed(p.path)]

    FAULTS = {
        "slow": "/fault/slow",
        "truncated": "/fault/truncated",
        "oversize": "/fault/oversize",
        "oversize_stream": "/fault/oversize-stream",
        "bomb": "/fault/bomb",
        "loop": "/fault/loop-a",
        "chain": "/fault/chain/0",
        "offhost": "/fault/offhost",
        "metadata": "/fault/metadata",
        "missing": "/fault/missing",
        "pdf": "/fault/report.pdf",
        "private": "/private/staff-notes",
    }

    def fault_url(self, name: str) -> str:
        return self.url(self.FAULTS[name])

    def sitemap_parts(self) -> dict[str, list[str]]:
        urls = [self.url(p.path) for p in self.pages]
        half = len(urls) // 2
        faults = [self.url(p) for p in self.FAULTS.values()]
        return {
            "/sitemaps/pages-1.xml": urls[:half],
            "/sitemaps/pages-2.xml.gz": urls[half:],
            "/sitemaps/faults.xml": faults,
        }

    # ------------------------------------------------------------ log helpers

    def hits(self, prefix: str = "") -> list[Hit]:
        with self._lock:
            return [h for h in self.log if h.path.startswith(prefix)]

    def reset_log(self) -> None:
        with self._lock:
            self.log.clear()

    def max_in_window(self, window: float = 1.0, prefix: str = "") -> int:
        """The most requests that started inside any ``window``-second span (server clock)."""
        ts = sorted(h.t for h in self.hits(prefix))
        best, j = 0, 0
        for i, t in enumerate(ts):
            while ts[j] <= t - window:
                j += 1
            best = max(best, i - j + 1)
        return best

    # ------------------------------------------------------------ serving

    def start(self) -> FixtureSite:
        site = self
        self._bomb = gzip_bomb(self.bomb_bytes)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else keep-alive replies stall 40 ms on delayed ACKs

            def handle(self) -> None:
                try:
                    super().handle()
                except (BrokenPipeError, ConnectionResetError, TimeoutError):
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                try:
                    site._handle(self)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name="fixture-site",
        ).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FixtureSite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _count(self, path: str) -> int:
        with self._lock:
            self.counts[path] = self.counts.get(path, 0) + 1
            return self.counts[path]

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler,
        status: int,
        body: bytes = b"",
        ctype: str = "text/plain",
        headers: dict[str, str] | None = None,
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?", 1)[0]
        with self._lock:
            headers = {k.lower(): v for k, v in h.headers.items()}
            self.log.append(Hit(time.monotonic(), h.command, path, headers))
        if self.latency:
            time.sleep(self.latency)
        n = self._count(path)
        send = self._send
        if path == "/robots.txt":
            lines = [
                "User-agent: *",
                "Disallow: /private/",
                "Disallow: /code/hcpcs/E0",
                f"Allow: {ALLOWED_EXCEPTION}",
            ]
            if self.crawl_delay is not None:
                lines.append(f"Crawl-delay: {self.crawl_delay:g}")
            lines.append(f"Sitemap: {self.sitemap_url}")
            return send(h, 200, ("\n".join(lines) + "\n").encode())
        if path == "/sitemap.xml":
            parts = ["/sitemaps/pages-1.xml", "/sitemaps/pages-2.xml.gz", "/sitemaps/nested.xml"]
            return send(h, 200, _index_xml([self.url(p) for p in parts]), "application/xml")
        if path == "/sitemaps/nested.xml":
            return send(h, 200, _index_xml([self.url("/sitemaps/faults.xml")]), "application/xml")
        parts = self.sitemap_parts()
        if path in parts:
            body = _sitemap_xml(parts[path])
            if path.endswith(".gz"):
                return send(h, 200, gzip.compress(body), "application/gzip")
            return send(h, 200, body, "application/xml")
        page = self._by_path.get(path)
        if page is not None:
            return self._serve_page(h, page, n)
        if path.startswith("/go/"):  # a good redirect, within the site
            target = next((p for p in self.pages if p.code == path[4:]), None)
            if target is not None:
                return send(h, 301, b"", headers={"Location": target.path})
        return self._serve_fault(h, path, n)

    def _serve_page(self, h: BaseHTTPRequestHandler, page: Page, n: int) -> None:
        if page.behaviour == "429_once" and n == 1:
            return self._send(h, 429, b"slow down\n", headers={"Retry-After": self.retry_after})
        if page.behaviour == "503_once" and n == 1:
            return self._send(h, 503, b"try again\n")
        headers: dict[str, str] = {}
        if page.validators:
            headers = {"ETag": page.etag or "", "Last-Modified": LAST_MODIFIED}
            inm, ims = h.headers.get("If-None-Match"), h.headers.get("If-Modified-Since")
            if inm is not None:
                if page.etag in [t.strip() for t in inm.split(",")]:
                    return self._send(h, 304, b"", "text/html", headers)
            elif ims is not None:
                try:
                    if parsedate_to_datetime(ims) >= parsedate_to_datetime(LAST_MODIFIED):
                        return self._send(h, 304, b"", "text/html", headers)
                except (TypeError, ValueError):
                    pass
        body = page.body
        if "gzip" in (h.headers.get("Accept-Encoding") or "") and int(page.code[-1], 36) % 3 == 0:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        self._send(h, 200, body, "text/html; charset=utf-8", headers)

    def _serve_fault(self, h: BaseHTTPRequestHandler, path: str, n: int) -> None:
        send = self._send
        if path == "/fault/slow":
            end = time.monotonic() + self.slow_seconds
            while time.monotonic() < end and not self._stopping.is_set():
                time.sleep(0.02)
            return send(h, 200, b"<html><h1>finally</h1></html>", "text/html")
        if path == "/fault/truncated":
            h.send_response(200)
            h.send_header("Content-Type", "text/html")
            h.send_header("Content-Length", "5000")
            h.end_headers()
            h.wfile.write(b"<html><body><h1>Cut short</h1>" + b"x" * 100)
            h.wfile.flush()
            h.close_connection = True
            return None
        if path == "/fault/oversize":
            return send(h, 200, b"<html>" + b"a" * self.oversize_bytes, "text/html")
        if path == "/fault/oversize-stream":  # no Content-Length: the size shows only while reading
            h.send_response(200)
            h.send_header("Content-Type", "text/html")
            h.send_header("Connection", "close")
            h.end_headers()
            chunk = b"b" * 65536
            for _ in range(self.oversize_bytes // len(chunk) + 1):
                h.wfile.write(chunk)
            h.close_connection = True
            return None
        if path == "/fault/bomb":
            return send(h, 200, self._bomb or b"", "text/html", {"Content-Encoding": "gzip"})
        if path == "/fault/loop-a":
            return send(h, 302, headers={"Location": "/fault/loop-b"})
        if path == "/fault/loop-b":
            return send(h, 302, headers={"Location": "/fault/loop-a"})
        if path.startswith("/fault/chain/"):
            k = int(path.rsplit("/", 1)[1]) if path.rsplit("/", 1)[1].isdigit() else 0
            return send(h, 302, headers={"Location": f"/fault/chain/{k + 1}"})
        if path == "/fault/offhost":
            return send(h, 302, headers={"Location": self.offhost_url})
        if path == "/fault/metadata":
            return send(h, 302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
        if path == "/fault/report.pdf":
            return send(h, 200, b"%PDF-1.4\n% fixture\n", "application/pdf")
        if path.startswith("/private/"):
            return send(h, 200, b"<html><h1>Staff only</h1></html>", "text/html")
        return send(h, 404, b"not found\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--latency", type=float, default=0.0)
    args = ap.parse_args()
    site = FixtureSite(host=args.host, port=args.port, latency=args.latency).start()
    print(f"serving {len(site.pages)} pages at {site.base} (sitemap {site.sitemap_url}); Ctrl-C stops")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        site.stop()


if __name__ == "__main__":
    main()
