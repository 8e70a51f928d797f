"""Neighbour-sampled GraphMAE on a 2-million-node graph: memory and speed, features memory-mapped or in RAM.

Builds synthetic graph folders (``ssl_graph.write_synthetic_graph``: a power-law stochastic
block model, 10 undirected edges per node stored both ways, 128 float16 features, 8
classes) in a temporary folder, then runs the same short pretraining (recipe
``graph.graphmae_memmap``: 512 seed nodes per step, 10 + 10 neighbours, 2-layer GAT of
width 256, one torch thread, one DataLoader worker, no evaluation) on each through
``graph.memmap``, once with the arrays memory-mapped (``memmap``) and once read whole
into RAM (``in_memory``, ``data.in_memory = true``). Each run and each write is a
separate process; the parent samples the memory of the whole process tree (the worker
included) every 50 ms.

Rows: ``impl`` = ``memmap`` | ``in_memory`` | ``writer``; ``case`` = ``graph-2m`` (2,000,000
nodes, 20,000,000 undirected edges = 40,000,000 CSR entries) | ``graph-0.5m`` (a quarter
of that). Metrics: ``peak_rss_mb`` (summed over the tree: pages two processes share count
twice, and mapped file pages that were read count too), ``peak_pss_mb`` (shared pages
split between the processes), ``peak_anon_mb`` (anonymous memory only: what the kernel
cannot drop; mapped file pages are page cache it can evict and read again),
``samples_per_second`` (seed nodes per second, steps 2 to the last),
``sampled_nodes_per_second`` (nodes of the sampled subgraphs per second, the loop's own
figure), ``startup_seconds`` (process start to the end of the first training step);
``writer`` rows: ``write_seconds`` and the same memory figures for writing the folder.

Usage::

    python benchmarks/graph_scale.py --json benchmarks/results/graph_scale.json
    python benchmarks/graph_scale.py --quick          # 50k and 200k nodes, 10 steps
    python benchmarks/graph_scale.py --case graph-2m --json a.json   # one case (a few minutes each) ...
    python benchmarks/graph_scale.py --merge a.json b.json --json benchmarks/results/graph_scale.json
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _report import Report, base_parser

QUIET = ["train.progress=false", "plots=false", "compare_random_init=false", "evaluate=[]", "logger=[]"]
CASES = {"graph-0.5m": 500_000, "graph-2m": 2_000_000}
QUICK_CASES = {"graph-50k": 50_000, "graph-200k": 200_000}
EDGES_PER_NODE = 10  # undirected; stored both ways
BATCH_NODES = 512

WRITER = """
import json, sys, time
started = time.perf_counter()
from ssl_graph import write_synthetic_graph
spec = json.loads(sys.argv[1])
meta = write_synthetic_graph(spec["folder"], num_nodes=spec["num_nodes"], num_edges=spec["num_edges"],
                             in_dim=128, num_classes=8, feature_dtype="float16", seed=0)
print("RESULT " + json.dumps({"write_seconds": time.perf_counter() - started}))
"""

TRAINER = """
import json, sys, time
started = time.perf_counter()
import torch
torch.set_num_threads(1)
import ssl_core

spec = json.loads(sys.argv[1])
ends = {}

class StepTimes:
    @ssl_core.hookimpl
    def ssl_on_step_end(self, step):
        ends[step] = time.perf_counter()

hooks = ssl_core.make_plugin_manager(load_entry_points=False)
hooks.register(StepTimes())
result = ssl_core.run("graph.graphmae_memmap", root=spec["root"], overrides=spec["overrides"], hooks=hooks, out=None)
steps = max(ends)
print("RESULT " + json.dumps({
    "samples_per_second": (steps - 1) * spec["batch_nodes"] / (ends[steps] - ends[1]),
    "sampled_nodes_per_second": result.metrics["train"]["samples_per_second"],
    "startup_seconds": ends[1] - started,
}))
"""


def _anon_bytes(pid: int) -> int:
    """``RssAnon`` of one process (Linux), 0 where /proc is unavailable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def measure(script: str, spec: dict[str, Any]) -> dict[str, float]:
    """Run ``script`` in a child process; its peak RSS / PSS / anonymous memory (process tree) and its RESULT line."""
    import psutil

    child = subprocess.Popen(
        [sys.executable, "-c", script, json.dumps(spec)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    tree, peak, peak_pss, peak_anon = psutil.Process(child.pid), 0, 0, 0
    while child.poll() is None:
        try:
            processes = [tree, *tree.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in processes))
            peak_pss = max(peak_pss, sum(p.memory_full_info().pss for p in processes))
            peak_anon = max(peak_anon, sum(_anon_bytes(p.pid) for p in processes))
        except psutil.Error:
            pass
        time.sleep(0.05)
    out, err = child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"child failed: {err.decode()[-3000:]}")
    line = next(x for x in out.decode().splitlines() if x.startswith("RESULT "))
    memory = {"peak_rss_mb": peak / 2**20, "peak_pss_mb": peak_pss / 2**20, "peak_anon_mb": peak_anon / 2**20}
    return {**memory, **json.loads(line[len("RESULT ") :])}


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], merge=True)
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (default 100, quick 10)")
    parser.add_argument("--case", action="append", choices=[*CASES, *QUICK_CASES], help="default: every case")
    args = parser.parse_args()
    if args.merge:  # one file per case, run one after the other
        merged = Report("graph_scale")
        for path in args.merge:
            merged.extra.setdefault("protocol", merged.merge(path).get("protocol"))
        print(merged.table())
        merged.write(args.json)
        return
    cases = QUICK_CASES if args.quick else CASES
    if args.case:
        cases = {case: {**CASES, **QUICK_CASES}[case] for case in args.case}
    steps = args.steps or (10 if args.quick else 100)
    report = Report("graph_scale")
    report.extra["protocol"] = {
        "recipe": "graph.graphmae_memmap", "steps": steps, "batch_nodes": BATCH_NODES, "num_neighbors": [10, 10],
        "hidden_dim": 256, "in_dim": 128, "feature_dtype": "float16", "undirected_edges_per_node": EDGES_PER_NODE,
        "torch_threads": 1, "num_workers": 1,
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="ssl-graph-scale-") as scratch:
        for case, num_nodes in cases.items():
            folder = Path(scratch) / case
            spec = {"folder": str(folder), "num_nodes": num_nodes, "num_edges": EDGES_PER_NODE * num_nodes}
            runs: list[tuple[str, dict[str, float]]] = [("writer", measure(WRITER, spec))]
            for impl in ("memmap", "in_memory"):
                overrides = [
                    *QUIET, f"train.steps={steps}", f"train.batch_size={BATCH_NODES}", "train.num_workers=1",
                    "train.log_every=1000", f"data.in_memory={'true' if impl == 'in_memory' else 'false'}",
                ]  # fmt: skip
                spec = {"root": str(folder), "overrides": overrides, "batch_nodes": BATCH_NODES}
                runs.append((impl, measure(TRAINER, spec)))
            for impl, values in runs:
                for metric, value in values.items():
                    report.add(impl=impl, case=case, metric=metric, value=value, seed=0)
                print(f"{case} {impl:<9} " + "  ".join(f"{k} {v:.1f}" for k, v in values.items()), flush=True)
    print(report.table())
    report.write(args.json)


if __name__ == "__main__":
    main()
