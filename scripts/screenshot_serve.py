"""A screenshot of `alexnet-cifar serve`'s page after classifying one image (for the README).

    python scripts/screenshot_serve.py runs/ RUN_ID IMAGE docs/images/serve.png

Starts the server on a free loopback port, opens the page in headless Chromium (Selenium with the
system's chromium and chromedriver), picks the run, uploads IMAGE, waits for the top-5, and saves
the window as a PNG.
"""

import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import uvicorn
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from alexnet_cifar.serve.app import create_app


def main(runs: Path, run_id: str, image: Path, out: Path) -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(runs), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1000,1000", "--hide-scrollbars"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium")
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(shutil.which("chromedriver")))
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, "tr.run"))
        for row in browser.find_elements(By.CSS_SELECTOR, "tr.run"):
            if row.text.split()[0] == run_id:
                row.click()
        Select(browser.find_element(By.ID, "run")).select_by_value(run_id)
        browser.find_element(By.ID, "files").send_keys(str(image.resolve()))
        browser.find_element(By.CSS_SELECTOR, "#try button").click()
        WebDriverWait(browser, 60).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".top5 li"))
        time.sleep(2.5)  # the curve's next poll
        browser.save_screenshot(str(out))
    finally:
        browser.quit()
        server.should_exit = True
    print(f"screenshot: {out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])))
