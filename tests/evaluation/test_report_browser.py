"""The HTML report in a real browser (Debian's headless chromium through selenium): no console errors,
every picture decoded, nothing fetched from the network, the per-class table sorts on click."""

from __future__ import annotations

import json

import pytest

from objdet.evaluation.report import write_report

from evaluation.realdata import draw_images, small_set

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


@pytest.fixture
def browser(chromium_driver_paths, tmp_path):
    chromium, driver_path = chromium_driver_paths
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
                 "--window-size=1200,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(driver_path)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _column(driver, table_id: str, col: int) -> list[str]:
    return [row.find_elements(By.TAG_NAME, "td")[col].get_attribute("data-value") or
            row.find_elements(By.TAG_NAME, "td")[col].text
            for row in driver.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")]


def test_report_in_headless_chromium(browser, tmp_path):
    gt, dt_a, dt_b = small_set(seed=4)
    draw_images(gt, tmp_path / "images")
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    out = write_report(str(tmp_path / "gt.json"), [dt_a, dt_b], tmp_path / "report.html", images=tmp_path / "images",
                       names=["model A", "model B"], n_boot=50)
    browser.get(out.resolve().as_uri())
    browser.save_screenshot(str(tmp_path / "report_top.png"))

    severe = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert severe == []
    pictures = browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.src.slice(0, 11)]);")
    assert len(pictures) >= 10  # PR curves, confusion matrix, reliability diagram and galleries of both models
    assert all(complete and width > 0 and src.startswith("data:image") for _, complete, width, src in pictures), pictures
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('data:'));")
    assert fetched == []

    names = {c["name"] for c in gt["categories"]}
    assert set(_column(browser, "classes-a", 0)) == names  # class names in the cells
    header = browser.find_element(By.CSS_SELECTOR, "#classes-a thead th:nth-child(2)")  # AP
    assert header.text == "AP"
    header.click()
    first = [float(v) for v in _column(browser, "classes-a", 1)]
    assert first == sorted(first, reverse=True) and header.get_attribute("data-dir") == "desc"
    header.click()
    second = [float(v) for v in _column(browser, "classes-a", 1)]
    assert second == sorted(second) and second != first
    browser.find_element(By.CSS_SELECTOR, "#classes-a thead th:nth-child(1)").click()
    assert _column(browser, "classes-a", 0) == sorted(names, reverse=True)
    browser.set_window_size(1200, 6000)
    browser.save_screenshot(str(tmp_path / "report_full.png"))
    assert (tmp_path / "report_full.png").stat().st_size > 10_000
