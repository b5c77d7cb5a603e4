"""The HTML report of a tiny run, opened in headless Chromium: every figure is in it, and the report's own app
shows each one as a decoded image of non-zero size. A screenshot goes to results/report_screenshot.png."""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, TINY, snakemake

pytestmark = [pytest.mark.slow, pytest.mark.workflow]

SCREENSHOT = REPO / "results" / "report_screenshot.png"
# Scripts run inside the report once its React app exists (globals `app` and `results`, the report's own).
WHEN_READY = """<script>
(function ready() {
  if (typeof app === "undefined" || app === undefined) return setTimeout(ready, 50);
  %s
})();
</script>
"""
# Asks the app to show every image result in turn, waits for the <img> it renders, records its decoded and
# displayed size in <pre id="render-check">.
RENDER_CHECK = (
    WHEN_READY
    % """
  (async () => {
    const wait = ms => new Promise(resolve => setTimeout(resolve, ms));
    const sizes = {};
    for (const [path, entry] of Object.entries(results)) {
      if (!entry.mime_type.startsWith("image/")) continue;
      app.setView({content: "img", contentPath: entry.data_uri, resultPath: path});
      sizes[path] = null;
      for (let i = 0; i < 200 && sizes[path] === null; i++) {
        await wait(50);
        const img = [...document.querySelectorAll("#app img")].find(element => element.src === entry.data_uri);
        if (img && img.complete && img.naturalWidth > 0) {
          const box = img.getBoundingClientRect();
          sizes[path] = [img.naturalWidth, img.naturalHeight, box.width, box.height];
        }
      }
    }
    const out = document.createElement("pre");
    out.id = "render-check";
    out.textContent = JSON.stringify(sizes);
    document.body.appendChild(out);
  })();
"""
)
# Shows Fig. 2 of the first metric, for the screenshot.
SHOW_FIGURE_2 = (
    WHEN_READY
    % """
  const [path, entry] = Object.entries(results).find(([path]) => path.endsWith("similarity_matrices.png"));
  app.setView({content: "img", contentPath: entry.data_uri, resultPath: path});
"""
)


def chromium() -> str:
    """The Chromium executable; skips the test without one unless SIMCON_REQUIRE_CHROMIUM=1."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("SIMCON_REQUIRE_CHROMIUM") == "1":
            pytest.fail("SIMCON_REQUIRE_CHROMIUM=1 but no chromium on PATH")
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    return found


def headless(browser: str, *args: str) -> subprocess.CompletedProcess:
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1400,1000",
        "--virtual-time-budget=60000",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def with_script(workdir: Path, name: str, script: str) -> Path:
    """A copy of the run's report.html, report_<name>.html, with `script` at the end of its body."""
    head, tail = (workdir / "report.html").read_text().rsplit("</body>", 1)  # the page's end, not a string in a script
    page = workdir / f"report_{name}.html"
    page.write_text(head + script + "</body>" + tail)
    return page


def embedded_results(report: str) -> dict[str, dict]:
    """The report's `results` object: result path -> entry with mime_type and data_uri."""
    return json.loads(re.search(r"var results = (\{.*?\});\s*</script>", report, flags=re.S).group(1))


def decoded(data_uri: str) -> bytes:
    return base64.b64decode(data_uri.split("base64,", 1)[1])


@pytest.fixture(scope="module")
def report_run(tmp_path_factory) -> Path:
    """A tiny run with two metrics (so Fig. 3 has a panel and RSA is reported missing) and its report."""
    workdir = tmp_path_factory.mktemp("report")
    config = copy.deepcopy(TINY)
    config["metrics"] = ["cka_linear_unbiased", "cka_rbf0.4_unbiased"]
    config["structure"] = {"sample_size": {"samples_per_class": [2, 4, 6]}}
    result = snakemake(workdir, config)
    assert result.returncode == 0, result.stderr[-5000:]
    for name in ("report.html", "report.zip"):
        result = snakemake(workdir, config, "--report", str(workdir / name))
        assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_every_figure_is_embedded_and_decodes(report_run):
    results = embedded_results((report_run / "report.html").read_text())
    figures = sorted(str(p.relative_to(report_run)) for p in (report_run / "results").rglob("*.png"))
    assert len(figures) >= 16
    assert sorted(path for path in results if path.endswith(".png")) == figures
    for path in figures:
        data = decoded(results[path]["data_uri"])
        assert data == (report_run / path).read_bytes(), path
        pixels = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
        assert min(pixels.shape) > 150 and pixels.std() > 5, path  # a drawn figure, not a blank canvas


def test_tables_are_browsable_and_categories_follow_the_paper(report_run):
    report = (report_run / "report.html").read_text()
    results = embedded_results(report)
    headline = decoded(results["results/figures/headline_consistency.html"]["data_uri"]).decode()
    assert "<table" in headline and "cka_rbf0.4_unbiased" in headline and "mean_rho" in headline
    agreement = decoded(results["results/figures/metric_means_r.html"]["data_uri"]).decode()
    assert "rsa_correlation_spearman" in agreement and "not configured" in agreement
    categories = json.loads(re.search(r"var categories = (\{.*?\});\s*</script>", report, flags=re.S).group(1))
    table_1 = decoded(results["results/figures/model_categories.html"]["data_uri"]).decode()
    assert "<table" in table_1 and "Untrained" in table_1 and "Training objective" in table_1
    fig_5 = decoded(results["results/figures/cka_linear_unbiased/dataset_pairs_r.html"]["data_uri"]).decode()
    assert "<table" in fig_5 and "Untrained" in fig_5
    for category in (
        "4.1 Setup",
        "4.2 Similarity across datasets",
        "4.3 Clusters by model category",
        "4.4 Consistency across datasets",
        "Appendix",
        "Configuration",
    ):
        assert category in categories
    with zipfile.ZipFile(report_run / "report.zip") as archive:
        names = archive.namelist()
    assert any(name.endswith("report.html") for name in names)
    assert any(name.endswith("tsne.png") for name in names)


def test_chromium_renders_every_figure_in_the_report(report_run):
    browser = chromium()
    result = headless(browser, "--dump-dom", with_script(report_run, "render_check", RENDER_CHECK).as_uri())
    assert result.returncode == 0, result.stderr[-3000:]
    check = re.search(r'<pre id="render-check">(.*?)</pre>', result.stdout, flags=re.S)
    assert check, "the report did not finish rendering its figures"
    sizes = json.loads(check.group(1).replace("&quot;", '"'))
    results = embedded_results((report_run / "report.html").read_text())
    images = [path for path, entry in results.items() if entry["mime_type"].startswith("image/")]
    assert sorted(sizes) == sorted(images)
    for path, size in sizes.items():
        assert size is not None, f"{path} was not rendered"
        natural_width, natural_height, shown_width, shown_height = size
        assert (natural_width, natural_height) == Image.open(report_run / path).size, path
        assert shown_width > 100 and shown_height > 100, path
    assert "4.2 Similarity across datasets" in result.stdout  # the app's own menu rendered
    SCREENSHOT.parent.mkdir(exist_ok=True)
    shot = headless(browser, f"--screenshot={SCREENSHOT}", with_script(report_run, "figure_2", SHOW_FIGURE_2).as_uri())
    assert shot.returncode == 0 and SCREENSHOT.stat().st_size > 10_000, shot.stderr[-3000:]
