"""Shared plumbing for benchmark scripts: environment capture, JSON rows, tables.

Every benchmark writes
``{"benchmark", "commit", "environment", "rows": [{"impl", "case", "metric", "value", "seed"}]}``
with one row per raw measurement; summaries are computed from the rows.

Example:
    >>> report = Report("demo")
    >>> report.add(impl="ours", case="toy", metric="seconds", value=1.0, seed=0)
    >>> report.rows[0]["impl"]
    'ours'
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Report",
    "base_parser",
    "bf16_skip_reason",
    "environment",
    "git_commit",
    "machine_load",
    "merge_files",
    "warn_if_loaded",
]


def git_commit() -> str:
    """The current commit hash (with ``-dirty`` when the tree has changes), or ``unknown``."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def environment() -> dict[str, Any]:
    """Python, platform, CPU count, thread count and versions of the key libraries."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("torch", "numpy", "scikit-learn", "torchaudio", "torchvision", "torch-geometric", "tsai", "lightly"):
        with contextlib.suppress(PackageNotFoundError):
            env[dist] = version(dist)
    if "torch" in sys.modules:
        import torch

        from ssl_core._results import environment as run_environment

        env["torch_threads"] = torch.get_num_threads()
        env["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        run_env = run_environment()
        env["cpu"], env["cpu_native_bf16"] = run_env["cpu"], run_env["cpu_native_bf16"]
    return env


def bf16_skip_reason() -> str | None:
    """Why CPU bf16 rows are left out on this machine (no native bf16), or ``None`` when they are measured.

    On a CPU without AVX-512 or AMX a bf16 matmul is emulated (95x slower than fp32 on an
    AVX2 AMD EPYC), so a bf16 row would time the emulation, and take hours.
    """
    from ssl_core import native_bf16

    if native_bf16("cpu"):
        return None
    return "this CPU has no native bf16 (no AVX-512 or AMX): the bf16 rows are left out"


def machine_load() -> float:
    """The machine's 1-minute load average (``os.getloadavg()[0]``); ``nan`` where the OS has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return float("nan")


def warn_if_loaded(load: tuple[float, float], own: int, what: str) -> bool:
    """Print a warning and return ``True`` when the load exceeded what the benchmark itself runs.

    ``load`` is (before, after) a measurement, ``own`` the threads plus worker processes the
    measurement uses; anything more than ``own + 0.75`` was other work, so the measurement
    was not taken on a quiet machine.

    Example:
        >>> warn_if_loaded((1.0, 1.2), own=1, what="step")
        False
    """
    if max(load) > own + 0.75:
        print(f"warning: {what} ran on a loaded machine: load average {load[0]:.2f} -> {load[1]:.2f} "
              f"with {own} thread(s)/worker(s) of its own; its timings are not a quiet-machine figure")  # fmt: skip
        return True
    return False


def base_parser(description: str, *, merge: bool = False) -> argparse.ArgumentParser:
    """An argument parser with the flags every benchmark takes: ``--json`` and ``--quick``.

    ``merge=True`` adds ``--merge FILE ...`` for scripts whose runs are split over processes
    (one method per process) and combined afterwards with :func:`merge_files`.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", type=Path, default=None, help="write the raw rows to this JSON file")
    parser.add_argument("--quick", action="store_true", help="a CI-sized run (smaller data, fewer repeats)")
    if merge:
        parser.add_argument("--merge", nargs="+", type=Path, default=None, help="combine these JSON files; run nothing")
    return parser


@dataclass
class Report:
    """Collects raw measurements and renders them as JSON and a summary table."""

    benchmark: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(
        self,
        *,
        impl: str,
        case: str,
        metric: str,
        value: float,
        seed: int | None = None,
        config: str | None = None,
        load: tuple[float, float] | None = None,
    ) -> None:
        """Record one raw measurement.

        ``config`` (e.g. ``"threads=2 workers=1"``) and ``load`` (the 1-minute load average
        before and after the measurement) are added to the row when given.
        """
        row: dict[str, Any] = {"impl": impl, "case": case, "metric": metric, "value": float(value), "seed": seed}
        if config is not None:
            row["config"] = config
        if load is not None:
            row["load"] = [float(load[0]), float(load[1])]
        self.rows.append(row)

    def values(self, impl: str, case: str, metric: str) -> list[float]:
        """All raw values recorded for one (impl, case, metric)."""
        return [r["value"] for r in self.rows if (r["impl"], r["case"], r["metric"]) == (impl, case, metric)]

    def median(self, impl: str, case: str, metric: str) -> float:
        """Median of the raw values for one (impl, case, metric)."""
        return statistics.median(self.values(impl, case, metric))

    def merge(self, path: Path, keep: Any = None) -> dict[str, Any]:
        """Add the rows of another run's JSON (those ``keep(row)`` accepts, default all); returns its document.

        The source file, its commit and its protocol are listed under ``merged_from``.
        """
        doc: dict[str, Any] = json.loads(path.read_text())
        self.rows.extend(r for r in doc["rows"] if keep is None or keep(r))
        self.extra.setdefault("merged_from", []).append(
            {"file": str(path), "commit": doc.get("commit"), "protocol": doc.get("protocol")}
        )
        return doc

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        return {
            "benchmark": self.benchmark,
            "commit": git_commit(),
            "environment": environment(),
            **self.extra,
            "rows": self.rows,
        }

    def write(self, path: Path | None) -> None:
        """Write the JSON document to ``path`` (parents created); no-op when ``None``."""
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        print(f"wrote {path}")

    def table(self) -> str:
        """A plain-text table: median, min, max and count per (case, metric, impl)."""
        groups: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        for r in self.rows:
            groups[(r["case"], r["metric"], r["impl"])].append(r["value"])
        header = f"{'case':<28} {'metric':<24} {'impl':<24} {'median':>12} {'min':>12} {'max':>12} {'n':>3}"
        lines = [header, "-" * len(header)]
        for (case, metric, impl), vals in sorted(groups.items()):
            lines.append(
                f"{case:<28} {metric:<24} {impl:<24} {statistics.median(vals):>12.4g} "
                f"{min(vals):>12.4g} {max(vals):>12.4g} {len(vals):>3}"
            )
        return "\n".join(lines)


def merge_files(report: Report, paths: list[Path], summary: Callable[[Report], str], out: Path | None) -> int:
    """Add every file's rows to ``report``, print ``summary(report)``, write ``out``; the exit status (0)."""
    for path in paths:
        report.merge(path)
    print(summary(report))
    report.write(out)
    return 0
