"""The naming rule of the workflow (docs/design.md): a rule and its script share one name."""

import re

from conftest import REPO, rule_bodies


def test_every_rule_runs_the_script_of_its_name():
    bodies = rule_bodies()
    for rule, body in bodies.items():
        assert set(re.findall(r"scripts/(\w+)\.py", body)) <= {rule}, rule
    scripts = {path.stem for path in (REPO / "scripts").glob("*.py")}
    assert scripts - set(bodies) == {"prefetch"}  # the one script no rule runs: a command-line tool
