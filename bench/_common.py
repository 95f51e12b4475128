"""What every benchmark shares: where results go and how they are printed."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def save_results(name: str, figures: dict[str, Any]) -> Path:
    """Write one benchmark's figures to bench/results/<name>.json, with when and where."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    record = {
        "benchmark": name,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": _cpus()},
        "figures": figures,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


def ratio(value: float, baseline: float) -> float:
    return round(value / baseline, 3) if baseline else float("nan")
