"""Wall time of `mofi demo` per step, as a new user runs it.

    .venv/bin/python benchmarks/demo_wall_time.py [--quick] [--fresh]

Runs ``mofi demo`` (with the local stack and data where the settings put them, as `make demo` does)
and prints one JSON line: the total wall time and each step's seconds from the demo's state file.
``--fresh`` redoes the I2E dataset and everything after it; the fetched and built data and the
scorer bootstrap stay cached (their seconds are then the time to find them). Run it twice without
``--fresh`` to measure a resumed run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from mofi.settings import load_settings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="The committed fixture and a tiny model.")
    ap.add_argument("--fresh", action="store_true", help="Redo I2E, training, indexing and the report.")
    args = ap.parse_args()
    mode = "quick" if args.quick else "full"
    state = Path(load_settings().stack.data_dir).parent / f"demo-{mode}" / "state.json"
    cmd = [
        sys.executable,
        "-m",
        "mofi.cli",
        "demo",
        *(["--quick"] if args.quick else []),
        *(["--fresh"] if args.fresh else []),
    ]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    total = time.monotonic() - t0
    if proc.returncode != 0:
        sys.exit(f"mofi demo failed with exit code {proc.returncode}")
    recorded = json.loads(state.read_text())
    print(
        json.dumps(
            {
                "mode": mode,
                "fresh": args.fresh,
                "total_s": round(total, 1),
                "steps_s": recorded.get("timings", {}),
                "cpus": os.cpu_count(),
                "i2e": recorded.get("stream"),
                "map": recorded.get("pipeline", {}).get("metrics", {}).get("map"),
            }
        )
    )


if __name__ == "__main__":
    main()
