"""Download the weights of every model of one or more config files into the torch and Hugging Face caches.

Run it where there is network (a cluster's login node), with the same cache variables as the jobs
(TORCH_HOME, HF_HOME), so compute nodes without network find every file:

    python scripts/prefetch.py config/paper.yaml [more.yaml ...] [--only MODEL ...]

Models of the thingsvision backend are left to thingsvision's environment (they download on first use there).
"""

import argparse
import sys
from pathlib import Path

import yaml
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from simcon.models import build_model  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configfiles", nargs="+", type=Path, help="workflow config files whose models to fetch")
    parser.add_argument("--only", nargs="+", default=[], help="fetch only these model ids")
    args = parser.parse_args()
    models = {
        model_id: spec
        for path in args.configfiles
        for model_id, spec in (yaml.safe_load(path.read_text()).get("models") or {}).items()
        if not args.only or model_id in args.only
    }
    fetch = {
        m: s for m, s in models.items() if s.get("weights", "pretrained") != "random" and s["backend"] != "thingsvision"
    }
    failed = {}
    for model_id, spec in tqdm(fetch.items(), desc="prefetch", unit="model"):
        try:
            build_model(model_id, {"weights": "pretrained", **spec})
        except Exception as error:  # report every model that failed, not only the first
            failed[model_id] = f"{type(error).__name__}: {error}"
    print(f"fetched {len(fetch) - len(failed)} of {len(fetch)} models; {len(models) - len(fetch)} need no download")
    for model_id, reason in failed.items():
        print(f"FAILED {model_id}: {reason}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
