"""`python -m bench`: run every bench/bench_*.py in turn, each in its own process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    failed = 0
    for path in sorted(Path(__file__).parent.glob("bench_*.py")):
        print(f"\n=== {path.stem} ===", flush=True)
        failed += subprocess.call([sys.executable, "-m", f"bench.{path.stem}"]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
