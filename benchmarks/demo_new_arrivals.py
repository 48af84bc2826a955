"""On the seeded demo: how many fresh visitors' home shelves show a new arrival (the exploration issue's done-when).

    SHOP_DEMO_VAR_DIR=/tmp/demo python manage.py seed_demo --seed 0
    SHOP_DEMO_VAR_DIR=/tmp/demo python manage.py recommender_train --sync
    SHOP_DEMO_VAR_DIR=/tmp/demo python benchmarks/demo_new_arrivals.py --visitors 40 --screenshot docs/new_arrival.png

New arrivals are the demo's products without any event (the synthetic shop's ``new_items``).
Each fresh visitor is a new browser session opening the home page (Django's test client on the
demo's own settings and database); the shelf's products are read from the widget's markup
(``data-rec-item``), and a product in an exploration slot is one whose reason starts with
"New arrival". With ``--screenshot`` one more fresh visitor's home page is captured in headless
Chromium. Writes ``benchmarks/results/demo_new_arrivals.json``. Target: at least 30% of the
shelves with a new arrival, none with more than 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "demo_new_arrivals.json"
ITEM = re.compile(r'data-rec-item="([^"]+)"')
MIN_SHARE, MAX_PER_SHELF = 0.3, 2


def home_shelf(client) -> list[str]:
    """The product ids of the home shelf ("Picked for you") of the page the client gets."""
    page = client.get("/").content.decode()
    start = page.find('data-rec-placement="home"')
    if start < 0:
        return []
    end = page.find("</section>", start)
    return ITEM.findall(page[start:end])


def screenshot(path: Path) -> dict:
    """Serve the demo on a free port and capture a fresh visitor's home page in headless Chromium."""
    import shutil
    import socket
    import subprocess

    from selenium import webdriver

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload",
                               "--insecure"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--window-size=1280,1500"):
        options.add_argument(flag)
    try:
        time.sleep(4)
        browser = webdriver.Chrome(service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")),
                                   options=options)
        try:
            browser.get(f"http://127.0.0.1:{port}/")
            reasons = [element.text for element in browser.find_elements("css selector", '[data-rec-placement="home"] .rec-widget__reason')]
            shelf = browser.find_elements("css selector", '[data-rec-placement="home"]')
            if shelf:
                browser.execute_script("arguments[0].scrollIntoView();", shelf[0])
                shelf[0].screenshot(str(path))
            else:
                browser.save_screenshot(str(path))
        finally:
            browser.quit()
    finally:
        server.terminate()
        server.wait(timeout=10)
    return {"screenshot": str(path.relative_to(ROOT)), "reasons": reasons}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--visitors", type=int, default=40)
    parser.add_argument("--screenshot", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_demo.settings")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.test import Client

    from recommender.models import Interaction
    from shop_demo.catalog.models import Product

    with_events = set(Interaction.objects.values_list("product_id", flat=True).distinct())
    new_ids = {str(pk) for pk in Product.objects.values_list("pk", flat=True) if pk not in with_events}
    per_shelf = []
    for _ in range(args.visitors):
        shelf = home_shelf(Client(HTTP_HOST="127.0.0.1"))  # a host the demo allows
        per_shelf.append(sum(item in new_ids for item in shelf))
    share = sum(count > 0 for count in per_shelf) / max(len(per_shelf), 1)
    result = {"command": "python benchmarks/demo_new_arrivals.py " + " ".join(argv or sys.argv[1:]),
              "visitors": args.visitors, "new_products": len(new_ids), "new_per_shelf": per_shelf,
              "share_with_new_arrival": share, "max_new_per_shelf": max(per_shelf, default=0),
              "meets_target": share >= MIN_SHARE and max(per_shelf, default=0) <= MAX_PER_SHELF}
    if args.screenshot:
        result.update(screenshot(args.screenshot.resolve()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"{args.visitors} fresh visitors: {share:.0%} of home shelves show a new arrival "
          f"(target ≥ {MIN_SHARE:.0%}), at most {result['max_new_per_shelf']} per shelf (target ≤ {MAX_PER_SHELF}); "
          f"{len(new_ids)} products without events")
    return result


if __name__ == "__main__":
    main()
