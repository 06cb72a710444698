"""The Snakemake report of the demo pipeline, opened in a real headless Chromium.

The report is built from the demo pipeline's run (tests/integration/test_demo_pipeline.py's
``demo`` fixture: reused when that module already ran in this session, else run once here),
then opened with selenium. The report is a React single-page app: the test clicks through it
as a reader would (category, subcategory, a result's eye button, its info button) and checks
that every figure the run declares is listed and displayed (``naturalWidth > 0``), that every
caption's text is there, that the pages (final table, plan, audit) hold tables, and saves
screenshots that must not be blank.

Chromium and its driver come from Debian (``chromium``, ``chromium-driver``): installed with
apt-get when missing and the test runs as root (CI does), skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_demo_pipeline import demo, snakemake  # noqa: F401  (demo: the shared fixture)

from evalwatt.config.load import load_config
from evalwatt.report.figure_specs import FigureSpec
from evalwatt.smk import common as ew_common
from evalwatt.smk import report as ew_report

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CAPTIONS = REPO / "workflow" / "report"
PAGES = {"energy_table": "energy_table.rst", "plan": "plan.rst", "audit": "audit.rst"}
CHROMIUM, DRIVER = "chromium", "chromedriver"
WAIT_S = 20.0


@pytest.fixture(scope="module")
def finished_demo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo pipeline's work folder: the one test_demo_pipeline.py finished in this session
    if it ran before this module, else its fixture runs here (once)."""
    for done in sorted(tmp_path_factory.getbasetemp().glob("demo*/results/ci/final")):
        if (done / "energy_table.parquet").exists():
            return done.parents[2]
    return request.getfixturevalue("demo")


@pytest.fixture(scope="module")
def report(finished_demo: Path) -> tuple[Path, float]:
    """Build the report where the layout puts it; return its path and the build time."""
    config = load_config(finished_demo / "config.yaml", check_environment=False)
    path = finished_demo / ew_common.layout(config).report()
    started = time.monotonic()
    done = snakemake(finished_demo, "--report", str(path))
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert path.stat().st_size > 100_000
    return path, elapsed


def _chromium() -> tuple[str, str]:
    """Paths of Chromium and its driver; install them from Debian as root, else skip."""
    if shutil.which(CHROMIUM) is None or shutil.which(DRIVER) is None:
        if os.geteuid() != 0:
            pytest.skip(
                "the report test needs Debian's chromium and chromium-driver; not root, so "
                "not installing them (apt-get install chromium chromium-driver)"
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", CHROMIUM, "chromium-driver"],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
    return str(shutil.which(CHROMIUM)), str(shutil.which(DRIVER))


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extra")
    chromium, driver = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1600,1100"):
        options.add_argument(flag)
    options.add_argument("--disable-dev-shm-usage")
    service = webdriver.ChromeService(executable_path=driver)
    browser = webdriver.Chrome(options=options, service=service)
    try:
        yield browser
    finally:
        browser.quit()


def _plain(rst: str) -> str:
    """A caption's opening words as the report shows them: markup gone, spaces collapsed."""
    text = re.sub(r"\*\*|``", "", rst)
    return " ".join(text.split())[:70]


def _wait(condition, what: str) -> object:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {WAIT_S} s waiting for {what}")


def _open(browser, url: str, category: str, subcategory: str) -> None:  # type: ignore[no-untyped-def]
    """From the report's landing page, click a category, then (when it has several) one of
    its subcategories, as a reader would."""
    from selenium.webdriver.common.by import By

    browser.get("about:blank")  # a fresh page each time: nothing left of the last view
    browser.get(url)
    _wait(lambda: browser.find_elements(By.LINK_TEXT, category), f"category {category!r}")
    browser.find_element(By.LINK_TEXT, category).click()
    # a category of one subcategory opens its results at once; else click the subcategory
    found = _wait(
        lambda: (
            browser.find_elements(By.LINK_TEXT, subcategory)
            or browser.find_elements(By.XPATH, "//tbody/tr[td]")
        ),
        f"subcategory {subcategory!r} or its results",
    )
    if found[0].tag_name == "a":  # type: ignore[index]
        found[0].click()  # type: ignore[index]


def _show(browser, label: str):  # type: ignore[no-untyped-def]
    """Click a result's eye button (by its label) and return the row's info button."""
    from selenium.webdriver.common.by import By

    row = f"//tr[td[normalize-space()={label!r}]]"
    buttons = _wait(lambda: browser.find_elements(By.XPATH, f"{row}//a"), f"result {label!r}")
    buttons[0].click()  # type: ignore[index]
    return buttons[1]  # type: ignore[index]


def _caption_shown(browser, info, caption: str) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    info.click()
    expected = _plain((CAPTIONS / caption).read_text())
    _wait(
        lambda: expected in " ".join(browser.find_element(By.TAG_NAME, "body").text.split()),
        f"caption {caption} ({expected!r})",
    )


def _non_trivial(png: Path) -> None:
    from PIL import Image

    image = Image.open(png).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert image.width >= 800 and image.height >= 600, png
    assert len(colours) > 50, f"{png}: {len(colours)} colours, a blank page"


def test_every_figure_and_caption_is_shown(finished_demo, report, browser, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    path, build_s = report
    print(f"report built in {build_s:.1f} s: {path}")
    config = load_config(finished_demo / "config.yaml", check_environment=False)
    specs: list[FigureSpec] = ew_report.figure_specs(ew_common.plan(config))
    assert {s.name for s in specs} >= {"power_timeline__cell", "power_timeline__baseline"}
    shown: dict[str, str] = {}
    for spec in specs:
        _open(browser, path.as_uri(), spec.category, spec.subcategory)
        info = _show(browser, spec.label[1])
        # the figure's own image (its data URI names the file), not the report's logo
        selector = f"img[src^='data:image/png'][src*='filename={spec.name}.png']"
        found = _wait(lambda s=selector: browser.find_elements(By.CSS_SELECTOR, s), spec.name)
        img = found[0]  # type: ignore[index]
        _wait(
            lambda img=img: browser.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth", img
            ),
            f"{spec.name} to load",
        )
        width = browser.execute_script("return arguments[0].naturalWidth", img)
        assert width > 0, spec.name
        shown[spec.name] = img.get_attribute("src")[:200]
        shot = tmp_path / f"{spec.name}.png"
        assert browser.save_screenshot(str(shot)), shot
        _non_trivial(shot)
        _caption_shown(browser, info, spec.caption)
    # each figure showed its own image, not the previous one again
    assert len(set(shown.values())) == len(specs), shown
    print(f"screenshots in {tmp_path}")


def test_the_pages_hold_the_table_the_plan_and_the_audit(report, browser, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    path, _ = report
    labels = {
        "energy_table": "final table: every cell, then the fastest setting",
        "plan": "plan: GPUs per model, cells, GPU-hour preview",
        "audit": "audit summary: job by job, every energy source",
    }
    expected = {
        "energy_table": "SmolLM2-135M-Instruct",
        "plan": "GPU-hour preview",
        "audit": "cpu-model",
    }
    for name, caption in PAGES.items():
        _open(browser, path.as_uri(), ew_report.REPORT_TABLES, "Run")
        info = _show(browser, labels[name])
        frame = _wait(lambda: browser.find_elements(By.TAG_NAME, "iframe"), f"{name} page")
        browser.switch_to.frame(frame[0])  # type: ignore[index]
        try:
            _wait(lambda: browser.find_elements(By.TAG_NAME, "table"), f"a table in {name}")
            assert expected[name] in browser.find_element(By.TAG_NAME, "body").text, name
        finally:
            browser.switch_to.default_content()
        shot = tmp_path / f"page-{name}.png"
        assert browser.save_screenshot(str(shot)), shot
        _non_trivial(shot)
        _caption_shown(browser, info, caption)
