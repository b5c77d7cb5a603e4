"""Start-up cost of each job script: the wall and CPU time of a fresh Python that runs the script's imports (and
Snakemake's script preamble), and the packages that cost most, from `python -X importtime`.

    PYTHONPATH=src python benchmarks/startup.py [--repo DIR] [--repeats 3] [scripts/probe.py ...]

--repo measures another checkout's scripts and library (e.g. the commit before a change).
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

PREAMBLE = "import pickle\nfrom snakemake.logging import logger\nfrom snakemake.iocontainers import Snakemake\n"
SKIPPED = {"prefetch.py", "features_thingsvision.py"}  # a command-line tool; a script of another environment


def script_imports(path: Path) -> str:
    """The module-level import statements of a script, as code."""
    tree = ast.parse(path.read_text())
    return "\n".join(ast.unparse(node) for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom))


def run(code: str, env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds and -X importtime report of a fresh Python running `code`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, result.stderr


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scripts", nargs="*", type=Path)
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(args.repo / "src")}
    scripts = [args.repo / "scripts" / s.name for s in args.scripts] or sorted((args.repo / "scripts").glob("*.py"))
    print(f"{'script':34} {'wall s':>7} {'CPU s':>6}  heaviest imports (s)")
    for script in scripts:
        if script.name in SKIPPED:
            continue
        code = PREAMBLE + script_imports(script)
        runs = [run(code, env) for _ in range(args.repeats)]
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        top = ", ".join(f"{name} {seconds:.2f}" for name, seconds in heaviest(runs[-1][2]))
        print(f"{script.name:34} {wall:7.2f} {cpu:6.2f}  {top}", flush=True)


if __name__ == "__main__":
    main()
