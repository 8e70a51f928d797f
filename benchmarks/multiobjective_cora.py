"""GraphMAE alone vs GraphMAE + a GRACE-style contrastive loss on the same GAT (a multi-objective pipeline).

Both pretrain the GAT of GraphMAE's Cora recipe (2 layers, 512 hidden, 4 heads) for the
same number of full-graph steps with GraphMAE's optimiser settings; the second run is
``examples/pipelines/graphmae_grace_cora.toml`` (GraphMAE with weight 1, ``core.simclr``
on node embeddings of two ``graph.augment`` views with weight 0.5). Both are scored by
GraphMAE's node probe on the public split (best-validation test accuracy), beside the
GAT at random init.

Rows: ``accuracy_pct`` for impl in ``graphmae``, ``graphmae+grace``, ``random_init`` (case
``Cora``); ``pretrain_seconds`` per pretrained impl.

Usage::

    python benchmarks/multiobjective_cora.py --root ../shared/data/planetoid --json multiobjective_cora.json
    python benchmarks/multiobjective_cora.py --root ... --impls graphmae --threads 1 --json a.json  # one per process
    python benchmarks/multiobjective_cora.py --merge a.json b.json --json benchmarks/results/multiobjective_cora.json
    python benchmarks/multiobjective_cora.py --quick --root ...   # 5 steps, 20 probe epochs
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import Report, base_parser, merge_files

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = ROOT / "examples" / "pipelines" / "graphmae_grace_cora.toml"
IMPLS = ("graphmae", "graphmae+grace")


def pretrain(impl: str, root: str, steps: int, precision: str, seed: int, quick: bool) -> dict[str, float]:
    """One pretraining run and its node probe; accuracies in %."""
    import ssl_core
    from ssl_graph import graphmae

    config: Any = graphmae("Cora") if impl == "graphmae" else str(PIPELINE)
    probe = "epochs=20" if quick else "epochs=300"
    overrides = [
        "plots=false",
        f"seed={seed}",
        f"train.steps={steps}",
        f"train.precision={precision}",
        f'evaluate=[{{name="graph.node_probe", lr=0.01, weight_decay=1e-4, {probe}}}]',
    ]
    result = ssl_core.run(config, overrides=overrides, root=root)
    metrics = result.metrics
    return {
        "accuracy_pct": 100.0 * metrics["evaluations"]["graph.node_probe"]["accuracy"],
        "random_accuracy_pct": 100.0 * metrics["random_init"]["graph.node_probe"]["accuracy"],
        "pretrain_seconds": metrics["train"]["seconds"],
    }


def summary(report: Report) -> str:
    """Mean accuracy per impl."""
    lines = [f"{'encoder (node probe, Cora)':<28} {'test acc %':>10}"]
    for impl in (*IMPLS, "random_init"):
        values = report.values(impl, "Cora", "accuracy_pct")
        if values:
            lines.append(f"{impl:<28} {statistics.mean(values):>10.2f}  (n={len(values)})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], merge=True)
    parser.add_argument("--root", default=None, help="the planetoid folder (../shared/data/planetoid)")
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=list(IMPLS))
    parser.add_argument("--steps", type=int, default=None, help="full-graph steps (default 600; --quick 5)")
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args(argv)

    report = Report("multiobjective_cora")
    if args.merge:
        return merge_files(report, args.merge, summary, args.json)
    root = args.root or str(ROOT.parent / "shared" / "data" / "planetoid")
    if not (Path(root) / "Cora").is_dir():
        print(f"skipped: Cora not found under {root}; pass --root to the planetoid folder")
        return 0

    import torch

    torch.set_num_threads(args.threads)
    steps = args.steps or (5 if args.quick else 600)
    report.extra["protocol"] = {
        "graphmae": "graph.graphmae recipe (Cora): GAT 2 x 512 x 4 heads, Adam lr 1e-3, wd 2e-4, cosine",
        "graphmae+grace": "examples/pipelines/graphmae_grace_cora.toml: + core.simclr (tau 0.4, weight 0.5), "
        "graph.augment views",
        "steps": steps,
        "precision": args.precision,
        "threads": args.threads,
        "probe": "graph.node_probe: logistic regression, 300 epochs, best-validation test accuracy, public split",
        "quick": args.quick,
    }
    for seed in args.seeds:
        for impl in args.impls:
            out = pretrain(impl, root, steps, args.precision, seed, args.quick)
            report.add(impl=impl, case="Cora", metric="accuracy_pct", value=out["accuracy_pct"], seed=seed)
            report.add(impl=impl, case="Cora", metric="pretrain_seconds", value=out["pretrain_seconds"], seed=seed)
            if not [r for r in report.rows if r["impl"] == "random_init" and r["seed"] == seed]:
                report.add(impl="random_init", case="Cora", metric="accuracy_pct", value=out["random_accuracy_pct"],
                           seed=seed)  # fmt: skip
            print(f"{impl} seed {seed}: " + ", ".join(f"{k} {v:.2f}" for k, v in out.items()), flush=True)
            report.write(args.json)
    print(summary(report))
    report.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
