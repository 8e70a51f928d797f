"""TS2Vec on UCR/UEA problems through ssl-core, beside the published TS2Vec accuracies.

For each dataset and seed: pretrain the ``timeseries.ts2vec`` recipe (200 iterations,
600 for train splits over 100,000 values, as TS2Vec), evaluate with TS2Vec's SVM protocol
(``timeseries.svm``), and evaluate the same architecture at random init through the same
evaluator. Rows (``benchmarks/_report.py``):

* ``impl="ours"``: ``accuracy`` and ``pretrain_seconds`` per seed;
* ``impl="random_init"``: ``accuracy`` per seed;
* ``impl="published"``: TS2Vec's published accuracy (Yue et al., AAAI 2022), ``seed=None``.

Usage::

    python benchmarks/timeseries_ucr.py --json benchmarks/results/timeseries_ucr.json
    python benchmarks/timeseries_ucr.py --quick                       # GunPoint, 1 seed
    python benchmarks/timeseries_ucr.py --datasets Coffee Wine --seeds 0 1 2   # any UCR/UEA name
    python benchmarks/timeseries_ucr.py --datasets ArrowHead --set encoder.average_weights=false
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import Report, base_parser

DEFAULT_DATASETS = ("GunPoint", "ArrowHead", "ItalyPowerDemand", "BasicMotions")


def run_one(dataset: str, seed: int, steps: int | None, extra: list[str] | None = None) -> dict[str, float]:
    """Pretrain + evaluate one (dataset, seed); returns accuracy, random-init accuracy, seconds."""
    import ssl_core
    from ssl_timeseries import ts2vec, ts2vec_steps, ucr

    splits = ucr(dataset=dataset)
    n_steps = steps or ts2vec_steps(int(splits.info["num_values"]))
    config = ts2vec(dataset)
    config["seed"] = seed
    started = time.perf_counter()
    overrides = [f"train.steps={n_steps}", "train.progress=false", "plots=false", *(extra or [])]
    result = ssl_core.run(config, overrides=overrides)
    wall = time.perf_counter() - started
    metrics = result.metrics
    return {
        "accuracy": metrics["evaluations"]["timeseries.svm"]["accuracy"],
        "random_init": metrics["random_init"]["timeseries.svm"]["accuracy"],
        "pretrain_seconds": metrics["train"]["seconds"],
        "wall_seconds": wall,
        "steps": float(n_steps),
    }


def summary(report: Report, datasets: list[str]) -> str:
    """One line per dataset: ours per seed, mean, published, random-init mean, seconds."""
    header = (
        f"{'dataset':<18} {'ours per seed':<26} {'mean':>6} {'published':>9} {'random-init':>11} {'pretrain s':>10}"
    )
    lines = [header, "-" * len(header)]
    for name in datasets:
        ours = report.values("ours", name, "accuracy")
        published = report.values("published", name, "accuracy")
        rand = report.values("random_init", name, "accuracy")
        secs = report.values("ours", name, "pretrain_seconds")
        per_seed = " ".join(f"{v:.3f}" for v in ours)
        pub = f"{published[0]:.3f}" if published else "-"
        lines.append(
            f"{name:<18} {per_seed:<26} {statistics.mean(ours):>6.3f} {pub:>9} "
            f"{statistics.mean(rand):>11.3f} {statistics.mean(secs):>10.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=None, help="UCR/UEA names (default: the four bundled sets)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default 0 1 2; --quick: 0)")
    parser.add_argument("--steps", type=int, default=None, help="override the TS2Vec iteration rule (200 / 600)")
    parser.add_argument(
        "--set", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides (encoder.average_weights=false)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core box)")
    args = parser.parse_args(argv)

    import torch

    from ssl_timeseries import PUBLISHED_TS2VEC

    torch.set_num_threads(args.threads)
    datasets = args.datasets or (["GunPoint"] if args.quick else list(DEFAULT_DATASETS))
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    report = Report("timeseries_ucr")
    report.extra["protocol"] = {
        "recipe": "timeseries.ts2vec",
        "evaluator": "timeseries.svm",
        "seeds": seeds,
        "threads": args.threads,
        "overrides": args.set,
        "published_source": "TS2Vec (Yue et al., AAAI 2022), full UCR/UEA result tables",
    }
    for name in datasets:
        if name in PUBLISHED_TS2VEC:
            report.add(impl="published", case=name, metric="accuracy", value=PUBLISHED_TS2VEC[name], seed=None)
        for seed in seeds:
            out = run_one(name, seed, args.steps, args.set)
            report.add(impl="ours", case=name, metric="accuracy", value=out["accuracy"], seed=seed)
            report.add(impl="random_init", case=name, metric="accuracy", value=out["random_init"], seed=seed)
            report.add(impl="ours", case=name, metric="pretrain_seconds", value=out["pretrain_seconds"], seed=seed)
            report.add(impl="ours", case=name, metric="steps", value=out["steps"], seed=seed)
            print(
                f"{name} seed {seed}: accuracy {out['accuracy']:.3f} (random init {out['random_init']:.3f}), "
                f"pretraining {out['pretrain_seconds']:.1f} s for {int(out['steps'])} steps",
                flush=True,
            )
    print()
    print(summary(report, datasets))
    report.write(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
