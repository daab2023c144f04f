"""Render a run report and the leaderboard in headless Chromium (Debian's `chromium`) and
check that the tables and the plots really render; keep screenshots.

    python benchmarks/report_render.py                 # a fresh embedded-model run on `sentiment`
    python benchmarks/report_render.py --db D --run R  # an existing run

Writes benchmarks/screenshots/run_report.png and leaderboard.png.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
]
RED, BLUE = (214, 39, 40), (31, 119, 180)  # the plot's running-best line and candidate points


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def browse(html: Path, png: Path, height: int = 2200) -> dict:
    """Load a page in headless Chromium: its DOM after load, and a screenshot."""
    exe = chromium()
    if exe is None:
        raise RuntimeError("Debian's chromium is not installed: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        common = [exe, *FLAGS, f"--user-data-dir={profile}", f"--window-size=1280,{height}"]
        dom = subprocess.run(
            [*common, "--dump-dom", html.resolve().as_uri()], capture_output=True, text=True, timeout=120
        ).stdout
        subprocess.run(
            [*common, f"--screenshot={png.resolve()}", html.resolve().as_uri()], capture_output=True, timeout=120
        )
    from PIL import Image

    img = Image.open(png).convert("RGB")
    pixels = img.getdata()

    def near(c, target, tol=40):
        return sum(abs(a - b) for a, b in zip(c, target)) < tol

    return {
        "dom_bytes": len(dom),
        "tables": len(re.findall(r"<table\b", dom)),
        "table_rows": len(re.findall(r"<tr\b", dom)),
        "png_images": len(re.findall(r"<img[^>]+src=\"data:image/png;base64,", dom)),
        "raw_script_tags": len(re.findall(r"<script\b", dom)),
        "screenshot": str(png),
        "size": img.size,
        "red_pixels": sum(1 for p in pixels if near(p, RED)),
        "blue_pixels": sum(1 for p in pixels if near(p, BLUE, 60)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", help="database with the run (default: a temporary one with a fresh run)")
    ap.add_argument("--run", help="run id (default: the newest run)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "screenshots"))
    args = ap.parse_args()

    from promptsearch.report import leaderboard as lb
    from promptsearch.report.run_report import render
    from promptsearch.store import Store

    tmp = Path(tempfile.mkdtemp())
    db = args.db
    if db is None:
        from promptsearch import search

        db = str(tmp / "runs.db")
        search("sentiment", db=db)
    store = Store(db)
    run = store.get_run(args.run) if args.run else store.runs(limit=1)[0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report_html = tmp / "report.html"
    report_html.write_text(render(json.loads(run.result), store.run_tests(run.id)), encoding="utf-8")
    board_html = tmp / "leaderboard.html"
    board_html.write_text(
        lb.to_html(lb.build([json.loads(r.result) for r in store.runs(limit=1000)])), encoding="utf-8"
    )
    results = {
        "run": run.id,
        "report": browse(report_html, out / "run_report.png"),
        "leaderboard": browse(board_html, out / "leaderboard.png", height=700),
    }
    print(json.dumps(results, indent=2))
    ok = (
        results["report"]["png_images"] >= 1
        and results["report"]["tables"] >= 3
        and results["report"]["red_pixels"] > 200
        and results["leaderboard"]["table_rows"] >= 2
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
