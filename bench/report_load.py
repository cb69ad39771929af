"""How a report reads in headless Chromium: load time (as a ratio to a blank page's), size, screens.

Opens a blank page and the report alternately (``--reps`` times each, after one warm-up of
each) in one headless Chromium and compares the medians of the load event
(``loadEventEnd - startTime`` of the navigation entry), so load from other processes hits
both alike. Also measures, at 1400 x 900 px: the page height in screens for every model
shown alone (the model switcher) and for all models, the pages it prints to (A4), the DOM size,
and the file size.

Usage: python bench/report_load.py REPORT.html [--reps 7] [--width 1400] [--height 900]
Needs selenium and chromedriver (as tests/test_browser.py does).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking")


def driver(width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--window-size={width},{height}")
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


_LOAD = ("const n = performance.getEntriesByType('navigation')[0];"
         "return [n.domContentLoadedEventEnd - n.startTime, n.loadEventEnd - n.startTime];")


def load_times(d, url: str) -> tuple[float, float]:
    """(DOMContentLoaded, load) in ms for one fresh navigation to ``url``."""
    d.get("about:blank")
    d.get(url)
    for _ in range(100):
        got = d.execute_script(_LOAD)
        if got[1] > 0:
            return got[0], got[1]
        d.implicitly_wait(0.05)
    return tuple(d.execute_script(_LOAD))


def printed_pages(d) -> int:
    """Pages of the page as Chromium prints it (A4, default margins), counted in the PDF."""
    import base64
    import re

    pdf = base64.b64decode(d.execute_cdp_cmd("Page.printToPDF", {"paperWidth": 8.27, "paperHeight": 11.69})["data"])
    return len(re.findall(rb"/Type\s*/Page(?!s)", pdf))


def screens(d, url: str, pages: bool = True) -> tuple[dict, dict]:
    """Document height / window height, and printed pages, with each model shown alone and with all."""
    d.get(url)
    models = d.execute_script("return Array.from(document.querySelectorAll('.switcher button'))"
                              ".map(b => b.getAttribute('data-pick'))")
    tall, printed = {}, {}
    for m in models or ["all"]:
        if models:
            d.execute_script("document.querySelector(`.switcher button[data-pick='${arguments[0]}']`).click()", m)
        tall[m] = round(d.execute_script(
            "return document.documentElement.scrollHeight / window.innerHeight"), 1)
        if pages:
            printed[m] = printed_pages(d)
    return tall, printed


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report", type=Path)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=900)
    p.add_argument("--no-print", action="store_true", help="skip counting printed pages")
    args = p.parse_args(argv)
    report = args.report.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        blank = Path(tmp) / "blank.html"
        blank.write_text("<!doctype html><html><head><meta charset='utf-8'><title>blank</title></head>"
                         "<body></body></html>")
        d = driver(args.width, args.height)
        try:
            urls = {"blank": blank.as_uri(), "report": report.as_uri()}
            for url in urls.values():  # warm-up: the browser's own start-up is not the page's
                load_times(d, url)
            times = {k: [] for k in urls}
            for _ in range(args.reps):
                for k, url in urls.items():
                    times[k].append(load_times(d, url))
            med = {k: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v))
                   for k, v in times.items()}
            nodes = d.execute_script("return document.getElementsByTagName('*').length")
            tall, printed = screens(d, urls["report"], pages=not args.no_print)
        finally:
            d.quit()
    result = {
        "report": str(report), "bytes": report.stat().st_size,
        "blank_load_ms": round(med["blank"][1], 1),
        "report_domcontentloaded_ms": round(med["report"][0], 1), "report_load_ms": round(med["report"][1], 1),
        "load_ratio": round(med["report"][1] / max(med["blank"][1], 1e-3), 1),
        "dom_nodes": nodes, "screens": tall, "printed_pages": printed, "window": [args.width, args.height],
        "reps": args.reps,
    }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
