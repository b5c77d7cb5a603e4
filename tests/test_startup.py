"""Each job script imports only what its job needs: a fresh Python runs a script's module-level imports and reports
the packages loaded (tests/test_config.py checks the same of the workflow's parse)."""

import ast
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPTS = REPO / "scripts"
# a fresh Python that imports this checkout's simcon
SRC_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
MODEL_BACKENDS = ("timm", "open_clip", "transformers", "torchvision")
# The scripts that build or load models, or run outside the workflow (a command-line tool, thingsvision's environment)
BACKEND_SCRIPTS = {
    "features.py",
    "layer_features.py",
    "check_model.py",
    "check_layers.py",
    "prefetch.py",
    "features_thingsvision.py",
}
# The jobs that run most often (one per model, dataset and seed; per dataset and metric), and what they never load
LEAN_JOBS = {
    "probe.py": (*MODEL_BACKENDS, "sklearn", "scipy", "pandas", "matplotlib", "PIL"),
    "similarity.py": (*MODEL_BACKENDS, "sklearn", "scipy", "matplotlib", "PIL"),
}


def loaded_packages(script: str) -> tuple[set[str], str | None]:
    """The top-level packages a fresh Python holds after the script's module-level imports, and matplotlib's
    backend (None when matplotlib is not loaded)."""
    tree = ast.parse((SCRIPTS / script).read_text())
    imports = "\n".join(ast.unparse(node) for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom))
    code = (
        f"{imports}\nimport json, sys\n"
        "backend = sys.modules['matplotlib'].get_backend() if 'matplotlib' in sys.modules else None\n"
        "print(json.dumps([sorted({name.split('.')[0] for name in sys.modules}), backend]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=SRC_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    packages, backend = json.loads(result.stdout.splitlines()[-1])
    return set(packages), backend


@pytest.mark.parametrize("script", sorted(LEAN_JOBS))
def test_probe_and_similarity_jobs_load_no_backend_scikit_learn_or_matplotlib(script):
    packages, _ = loaded_packages(script)
    assert "torch" in packages
    assert packages.isdisjoint(LEAN_JOBS[script]), sorted(packages.intersection(LEAN_JOBS[script]))


@pytest.mark.slow
@pytest.mark.parametrize(
    "script", sorted(path.name for path in SCRIPTS.glob("*.py") if path.name not in {*BACKEND_SCRIPTS, *LEAN_JOBS})
)
def test_scripts_load_matplotlib_only_to_draw_and_no_model_backend(script):
    packages, backend = loaded_packages(script)
    assert packages.isdisjoint({*MODEL_BACKENDS, "sklearn"}), sorted(packages.intersection(MODEL_BACKENDS))
    draws = "plots" in (SCRIPTS / script).read_text()
    assert ("matplotlib" in packages) == draws
    assert backend is None or backend.lower() == "agg"


JOB_BODY = """
import atexit, pathlib, sys
from simcon.logs import snakemake_job

out = pathlib.Path(sys.argv[1])

class Teardown:
    def __del__(self):
        (out / "teardown").write_text("ran")

kept_until_teardown = Teardown()
atexit.register(lambda: (out / "atexit").write_text("ran"))
skipped = ("consistency", "needs more", [str(out / "table.csv")]) if sys.argv[2] == "skip" else None
with snakemake_job(out / "job.log", skipped=skipped):
    print("working")
    with open(out / "result.txt", "w") as result:
        result.write("x" * 100_000)
    if sys.argv[2] == "fail":
        raise ValueError("bad input: culprit")
"""


def run_job_body(tmp_path, outcome):
    command = [sys.executable, "-c", JOB_BODY, str(tmp_path), outcome]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=SRC_ENV)


def test_a_job_that_succeeds_ends_at_once_with_its_log_output_and_atexit_handlers_complete(tmp_path):
    result = run_job_body(tmp_path, "succeed")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "job.log").read_text() == "working\n"
    assert (tmp_path / "result.txt").read_text() == "x" * 100_000
    assert (tmp_path / "atexit").read_text() == "ran"
    assert not (tmp_path / "teardown").exists()  # the interpreter's teardown was skipped


def test_a_skipped_job_writes_its_placeholders_instead_of_running_and_ends_as_one_that_succeeds(tmp_path):
    result = run_job_body(tmp_path, "skip")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "job.log").read_text() == "consistency skipped: needs more\n"
    assert (tmp_path / "table.csv").read_text() == "skipped\nconsistency skipped: needs more\n"
    assert not (tmp_path / "result.txt").exists()  # the block did not run
    assert (tmp_path / "atexit").read_text() == "ran" and not (tmp_path / "teardown").exists()


def test_a_job_that_fails_logs_its_traceback_and_exits_with_an_error(tmp_path):
    result = run_job_body(tmp_path, "fail")
    assert result.returncode == 1
    log = (tmp_path / "job.log").read_text()
    assert log.startswith("working\nTraceback") and "ValueError: bad input: culprit" in log
    assert (tmp_path / "atexit").read_text() == "ran"


@pytest.mark.parametrize("script", sorted(path.name for path in SCRIPTS.glob("*.py") if path.name != "prefetch.py"))
def test_every_job_script_ends_with_its_job_block(script):
    """Code after the `with snakemake_job(...)` (or `analysis_job(...)`) block would never run: the block ends the
    process."""
    body = ast.parse((SCRIPTS / script).read_text()).body
    frame = ast.unparse(body[-1].items[0]) if isinstance(body[-1], ast.With) else ""
    assert frame.startswith(("snakemake_job(", "analysis_job(")), frame
