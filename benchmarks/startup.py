"""Start-up cost of each job: the wall and CPU time of a fresh Python that runs a script's imports (and Snakemake's
script preamble) and ends as a job does, without the interpreter's teardown; the teardown that saves (exit s: a
normal exit's extra wall time); the packages that cost most (`python -X importtime`); and what Snakemake adds per
job.

    PYTHONPATH=src python benchmarks/startup.py [--repo DIR] [--repeats 5] [--wrapper] [scripts/probe.py ...]

The times are the best of --repeats runs. --repo measures another checkout's scripts and library (e.g. the commit
before a change). --wrapper also times the jobs of a throw-away workflow of trivial jobs: a shell job, a shell job
that starts Python, and a `script:` job, each as the extra time of a run of N jobs over a run of none.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

PREAMBLE = "import pickle\nfrom snakemake.logging import logger\nfrom snakemake.iocontainers import Snakemake\n"
QUICK_EXIT = "\nimport os\nos._exit(0)"  # a job ends so (simcon.logs.snakemake_job): its teardown is not start-up
SKIPPED = {"prefetch.py", "features_thingsvision.py"}  # a command-line tool; a script of another environment
RULE = re.compile(r"^(?:local)?rule (\w+):.*?^    script:\s*\n\s+\"[./]*scripts/(\w+\.py)\"", re.M | re.S)

TRIVIAL_WORKFLOW = """\
rule all:
    input: [f"{config['kind']}/{i}" for i in range(int(config['jobs']))]

rule shell:
    output: "shell/{i}"
    shell: "touch {output}"

rule python:
    output: "python/{i}"
    params: python=sys.executable
    shell: "{params.python} -c 'import sys; open(sys.argv[1], \\"w\\").close()' {output}"

rule script:
    output: "script/{i}"
    script: "touch.py"
"""


def script_imports(path: Path) -> str:
    """The module-level import statements of a script, as code."""
    tree = ast.parse(path.read_text())
    return "\n".join(ast.unparse(node) for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom))


def script_rules(repo: Path) -> dict[str, list[str]]:
    """The rules that run each script, by script file name."""
    rules: dict[str, list[str]] = defaultdict(list)
    for smk in sorted((repo / "workflow/rules").glob("*.smk")):
        for block in re.split(r"\n(?=\S)", smk.read_text()):
            match = RULE.match(block)
            if match:
                rules[match.group(2)].append(match.group(1))
    return rules


def timed(command: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + system, children included) and stderr of a command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, result.stderr


def best(runs: list[tuple[float, float, str]]) -> tuple[float, float]:
    """The least wall and the least CPU time of several runs."""
    return min(r[0] for r in runs), min(r[1] for r in runs)


def heaviest(report: str, count: int = 4) -> list[tuple[str, float]]:
    """Packages by cumulative import time, each counted where it is first imported (not inside itself)."""
    totals: dict[str, float] = defaultdict(float)
    stack: list[tuple[int, str]] = []  # (indent, package) of the enclosing imports
    for line in reversed(report.splitlines()):  # -X importtime lists an import after the imports it makes
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)", line)
        if not match:
            continue
        indent, package = len(match.group(2)), match.group(3).split(".")[0]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if package not in {p for _, p in stack} and package != "simcon":
            totals[package] += int(match.group(1)) / 1e6
        stack.append((indent, package))
    return sorted(totals.items(), key=lambda item: -item[1])[:count]


def imports(repo: Path, scripts: list[Path], repeats: int) -> None:
    """Print the start-up of each script: bare Python, then Snakemake's preamble, then the script's imports."""
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    rules = script_rules(repo)
    print(f"{'job (script: rules)':60} {'wall s':>7} {'CPU s':>6} {'exit s':>6}  heaviest imports (s)")
    rows = [("python, nothing imported", "pass"), ("Snakemake's script preamble", PREAMBLE)]
    rows += [
        (f"{script.name}: {', '.join(rules.get(script.name, ['-']))}", PREAMBLE + script_imports(script))
        for script in scripts
        if script.name not in SKIPPED
    ]
    for label, code in rows:
        runs = [timed([sys.executable, "-X", "importtime", "-c", code + QUICK_EXIT], env) for _ in range(repeats)]
        wall, cpu = best(runs)
        teardown = best([timed([sys.executable, "-c", code], env) for _ in range(repeats)])[0] - wall
        top = ", ".join(f"{name} {seconds:.2f}" for name, seconds in heaviest(runs[-1][2]))
        print(f"{label[:60]:60} {wall:7.2f} {cpu:6.2f} {teardown:6.2f}  {top}", flush=True)


def wrapper(repeats: int, jobs: int = 10) -> None:
    """Print the time Snakemake takes per trivial job of each kind, over a run with no job."""
    snakemake = Path(sys.executable).with_name("snakemake")
    print(f"\nSnakemake per job ({jobs} jobs, --cores 1, best of {repeats}): the extra time over a run of no job")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "Snakefile").write_text(TRIVIAL_WORKFLOW)
        (folder / "touch.py").write_text('open(snakemake.output[0], "w").close()\n')

        def run(kind: str, n: int) -> tuple[float, float]:
            runs = []
            for _ in range(repeats):
                subprocess.run(["rm", "-rf", kind, ".snakemake"], cwd=folder, check=True)
                command = [str(snakemake), "all", "--cores", "1", "--quiet", "--config", f"kind={kind}", f"jobs={n}"]
                runs.append(timed(command, dict(os.environ), cwd=folder))
            return best(runs)

        empty_wall, empty_cpu = run("shell", 0)
        print(f"{'run with no job':60} {empty_wall:7.2f} {empty_cpu:6.2f}")
        for kind, label in (
            ("shell", "shell job (`touch`)"),
            ("python", "shell job starting Python"),
            ("script", "script job (preamble, a one-line script)"),
        ):
            wall, cpu = run(kind, jobs)
            print(f"{label:60} {(wall - empty_wall) / jobs:7.2f} {(cpu - empty_cpu) / jobs:6.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scripts", nargs="*", type=Path)
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--wrapper", action="store_true", help="also time Snakemake's own work per job")
    args = parser.parse_args()
    scripts = [args.repo / "scripts" / s.name for s in args.scripts] or sorted((args.repo / "scripts").glob("*.py"))
    imports(args.repo, scripts, args.repeats)
    if args.wrapper:
        wrapper(args.repeats)


if __name__ == "__main__":
    main()
