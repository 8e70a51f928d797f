"""Wall time of `ssl plugins --json` against a bare `python -c pass` (target: within 10x).

Also times the obvious alternative, listing entry points with ``importlib.metadata``
(what most plugin systems do), to show what the direct ``entry_points.txt`` scan buys.
Runs are interleaved so machine noise hits every variant alike.

    python benchmarks/plugins_listing.py --json bench-results/plugins_listing.json
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from _report import Report, base_parser

IMPORTLIB_LISTING = (
    "import json, importlib.metadata as m\n"
    "eps = [(e.group, e.name, e.value, e.dist.name) for d in m.distributions() for e in d.entry_points "
    "if e.group.startswith('ssl_core.')]\n"
    "json.dumps(eps)\n"
)


def _ssl_command() -> list[str]:
    script = Path(sys.executable).parent / "ssl"
    if script.exists():
        return [str(script), "plugins", "--json"]
    found = shutil.which("ssl")
    return [found, "plugins", "--json"] if found else [sys.executable, "-m", "ssl_core", "plugins", "--json"]


def _time(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    args = base_parser(__doc__ or "").parse_args()
    repeats = 5 if args.quick else 25
    variants = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "ours": _ssl_command(),
        "importlib.metadata scan": [sys.executable, "-c", IMPORTLIB_LISTING],
    }
    report = Report("plugins_listing")
    for cmd in variants.values():  # warm the page cache
        _time(cmd)
    for i in range(repeats):
        for impl, cmd in variants.items():
            report.add(impl=impl, case="ssl plugins --json", metric="seconds", value=_time(cmd), seed=i)
    print(report.table())
    base = report.median("python -c pass", "ssl plugins --json", "seconds")
    for impl in ("ours", "importlib.metadata scan"):
        ratio = report.median(impl, "ssl plugins --json", "seconds") / base
        print(f"{impl}: {ratio:.1f}x a bare interpreter start (median of {repeats})")
    report.write(args.json)


if __name__ == "__main__":
    main()
