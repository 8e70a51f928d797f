"""GraphMAE on a Planetoid graph through ssl-core, beside the published result, plus epoch cost.

Accuracy: for each seed, pretrain the ``graph.graphmae`` recipe (Cora: 1500 full-graph
epochs, GraphMAE's ``configs.yml``), then GraphMAE's node protocol (``graph.node_probe``:
logistic regression on the frozen embeddings, model selection on the validation nodes);
the same architecture at random init goes through the same probe.

Epoch cost, in the same run and on the same graph and model: one full GraphMAE training
step (masking, encoder, decoder, loss, backward, Adam) with

* ``pyg-gatconv``: the layers' own ``torch_geometric.nn.GATConv.propagate`` (the
  reference implementation's path), fp32;
* ``ours``: the fused CSR path (``graph.gat`` / ``graph.graphmae`` defaults), fp32;
* ``ours-bf16``: the fused path under bf16 autocast.

Rows (``benchmarks/_report.py``): ``accuracy_pct``, ``final_accuracy_pct``,
``seconds_per_epoch`` per seed for ``ours``; ``accuracy_pct`` per seed for
``random_init``; the published mean and std (``published``); ``epoch_seconds`` per
repeat for the three step implementations.

Usage::

    python benchmarks/graph_planetoid.py --root ../shared/data/planetoid --json benchmarks/results/graph_planetoid.json
    python benchmarks/graph_planetoid.py --quick --root ../shared/data/planetoid    # 1 seed, 100 epochs
    python benchmarks/graph_planetoid.py --dataset CiteSeer --root DATA --seeds 0 1 2
    python benchmarks/graph_planetoid.py --merge a.json b.json --json all.json       # combine parallel runs
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import Report, base_parser


def run_seed(dataset: str, root: str | None, seed: int, epochs: int | None, precision: str) -> dict[str, float]:
    """Pretrain + probe one seed; returns test accuracies (%), random-init accuracy (%), seconds."""
    import ssl_core
    from ssl_graph import graphmae

    config = graphmae(dataset)
    config["seed"] = seed
    overrides = ["train.progress=false", "plots=false", f"train.precision={precision}"]
    if epochs is not None:
        overrides.append(f"train.steps={epochs}")
    result = ssl_core.run(config, overrides=overrides, root=root)
    metrics = result.metrics
    probe = metrics["evaluations"]["graph.node_probe"]
    steps = int(result.config.train.steps)
    return {
        "accuracy_pct": 100.0 * probe["accuracy"],
        "final_accuracy_pct": 100.0 * probe["final_accuracy"],
        "random_init_pct": 100.0 * metrics["random_init"]["graph.node_probe"]["accuracy"],
        "seconds_per_epoch": metrics["train"]["seconds"] / steps,
        "epochs": float(steps),
    }


def epoch_costs(dataset: str, root: str | None, repeats: int, warmup: int = 3) -> dict[str, list[float]]:
    """Seconds per GraphMAE training step for the PyG path, ours fp32 and ours bf16, interleaved."""
    import torch

    from ssl_graph import GATEncoder, GraphMAEObjective, NodeMaskViews, graphmae, planetoid

    cfg = graphmae(dataset)
    splits = planetoid(root, dataset=dataset)
    graph = splits.train[0]
    in_dim = splits.info["in_dim"]
    enc_opts = {k: v for k, v in cfg["encoder"].items() if k != "name"}
    views = NodeMaskViews(**{k: v for k, v in cfg["views"].items() if k != "name"})
    setups: dict[str, tuple[Any, Any, Any, bool]] = {}
    for impl, fused, bf16 in (("pyg-gatconv", False, False), ("ours", True, False), ("ours-bf16", True, True)):
        torch.manual_seed(0)
        encoder = GATEncoder(in_dim=in_dim, fused=fused, **enc_opts)
        objective = GraphMAEObjective(embed_dim=encoder.embed_dim, in_dim=in_dim, alpha=cfg["objective"]["alpha"],
                                      fused=fused)  # fmt: skip
        params = list(encoder.parameters()) + list(objective.parameters())
        optimizer = torch.optim.Adam(params, lr=1e-3, weight_decay=cfg["train"]["weight_decay"])
        setups[impl] = (encoder, objective, optimizer, bf16)
    generator = torch.Generator().manual_seed(0)

    def step(impl: str) -> float:
        encoder, objective, optimizer, bf16 = setups[impl]
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = objective(encoder, views(graph, generator))["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - started

    for impl in setups:
        for _ in range(warmup):
            step(impl)
    times: dict[str, list[float]] = {impl: [] for impl in setups}
    for _ in range(repeats):
        for impl in setups:  # interleaved, so load changes hit every implementation alike
            times[impl].append(step(impl))
    return times


def summary(report: Report, dataset: str) -> str:
    ours = report.values("ours", dataset, "accuracy_pct")
    final = report.values("ours", dataset, "final_accuracy_pct")
    rand = report.values("random_init", dataset, "accuracy_pct")
    published = report.values("published", dataset, "accuracy_pct")
    published_std = report.values("published", dataset, "accuracy_std_pct")
    spe = report.values("ours", dataset, "seconds_per_epoch")
    lines = [f"GraphMAE on {dataset}: node classification test accuracy (%), {len(ours)} seeds"]
    if ours:
        std = statistics.pstdev(ours) if len(ours) > 1 else 0.0
        lines.append(f"  ours (val-selected)  {statistics.mean(ours):6.2f} +/- {std:.2f}   per seed: "
                     + " ".join(f"{v:.1f}" for v in ours))  # fmt: skip
        lines.append(f"  ours (last epoch)    {statistics.mean(final):6.2f}")
        lines.append(f"  random-init encoder  {statistics.mean(rand):6.2f}")
        lines.append(f"  pretraining          {statistics.mean(spe):.3f} s per epoch (mean over seeds)")
    if published:
        lines.append(f"  published            {published[0]:6.2f} +/- {published_std[0]:.2f}")
    costs = {impl: report.values(impl, dataset, "epoch_seconds") for impl in ("pyg-gatconv", "ours", "ours-bf16")}
    if all(costs.values()):
        base = statistics.median(costs["pyg-gatconv"])
        lines.append("  epoch cost (median s, speed-up over the PyG GATConv path):")
        for impl, vals in costs.items():
            med = statistics.median(vals)
            lines.append(f"    {impl:<12} {med:.3f} s   {base / med:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], merge=True)
    parser.add_argument("--dataset", default="Cora", help="Cora, CiteSeer or PubMed")
    parser.add_argument("--root", default=None, help="folder holding <dataset>/raw (default: download to the cache)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default 0..19 (--quick: 0)")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (--quick: 100)")
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16"], help="pretraining precision")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per implementation (default 20)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--skip-accuracy", action="store_true", help="only measure the epoch cost")
    parser.add_argument("--skip-speed", action="store_true", help="only pretrain and evaluate")
    args = parser.parse_args(argv)

    report = Report("graph_planetoid")
    if args.merge:
        for path in args.merge:  # the published figure once, not once per file
            doc = report.merge(path, keep=lambda r: r["impl"] != "published" or not report.values(
                "published", r["case"], r["metric"]))  # fmt: skip
            report.extra.setdefault("protocol", doc.get("protocol"))
        print(summary(report, args.dataset))
        report.write(args.json)
        return 0

    import torch

    from ssl_graph import PUBLISHED_GRAPHMAE

    torch.set_num_threads(args.threads)
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else list(range(20)))
    epochs = args.epochs if args.epochs is not None else (100 if args.quick else None)
    report.extra["protocol"] = {
        "recipe": "graph.graphmae",
        "evaluator": "graph.node_probe (val-selected test accuracy)",
        "dataset": args.dataset,
        "seeds": seeds,
        "epochs": epochs or "recipe",
        "precision": args.precision,
        "threads": args.threads,
        "published_source": "GraphMAE (Hou et al., KDD 2022), Table 1",
    }
    if args.dataset in PUBLISHED_GRAPHMAE:
        mean, std = PUBLISHED_GRAPHMAE[args.dataset]
        report.add(impl="published", case=args.dataset, metric="accuracy_pct", value=mean)
        report.add(impl="published", case=args.dataset, metric="accuracy_std_pct", value=std)
    if not args.skip_speed:
        repeats = args.repeats or (5 if args.quick else 20)
        for impl, vals in epoch_costs(args.dataset, args.root, repeats).items():
            for i, v in enumerate(vals):
                report.add(impl=impl, case=args.dataset, metric="epoch_seconds", value=v, seed=i)
        report.write(args.json)
    if not args.skip_accuracy:
        for seed in seeds:
            out = run_seed(args.dataset, args.root, seed, epochs, args.precision)
            for metric in ("accuracy_pct", "final_accuracy_pct", "seconds_per_epoch", "epochs"):
                report.add(impl="ours", case=args.dataset, metric=metric, value=out[metric], seed=seed)
            report.add(impl="random_init", case=args.dataset, metric="accuracy_pct", value=out["random_init_pct"],
                       seed=seed)  # fmt: skip
            print(
                f"{args.dataset} seed {seed}: {out['accuracy_pct']:.1f}% (last epoch {out['final_accuracy_pct']:.1f}%,"
                f" random init {out['random_init_pct']:.1f}%), {out['seconds_per_epoch']:.3f} s/epoch",
                flush=True,
            )
            report.write(args.json)  # after every seed, so a cut-off run keeps what it measured
    print()
    print(summary(report, args.dataset))
    report.write(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
