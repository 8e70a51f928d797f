"""TS2Vec on UCR/UEA problems through ssl-core, beside the published TS2Vec accuracies and the official code.

For each dataset and seed: pretrain the ``timeseries.ts2vec`` recipe (200 iterations,
600 for train splits over 100,000 values, as TS2Vec), evaluate with TS2Vec's SVM protocol
(``timeseries.svm``), and evaluate the same architecture at random init through the same
evaluator. With ``--peer-repo PATH`` (a checkout of github.com/yuezhihan/ts2vec) the official
code is trained in the same run on the same arrays, seed, iteration count, batch size (8) and
thread count, and its representations (its averaged model, ``encoding_window="full_series"``)
go through the same SVM (:func:`ssl_timeseries.fit_svm`, TS2Vec's ``fit_svm``). Every
training runs in its own process, ours and the official code alternating which goes first
per seed. Rows (``benchmarks/_report.py``):

* ``impl="ours"``: ``accuracy``, ``pretrain_seconds`` and ``steps`` per seed;
* ``impl="random_init"``: ``accuracy`` per seed;
* ``impl="published"``: TS2Vec's published accuracy (Yue et al., AAAI 2022), ``seed=None``;
* ``impl="official"`` (``--peer-repo``): ``accuracy``, ``pretrain_seconds`` and ``steps`` per seed;
* ``impl="ours-bf16"`` (``--bf16``): ours under bf16 autocast, ``accuracy`` and ``pretrain_seconds``;
* ``impl="speedup"``: ``ours_vs_official`` (official seconds / ours) and ``bf16_vs_fp32`` per seed.

``pretrain_seconds`` is the training loop only: ssl-core's ``train.seconds`` for ours (online
monitors included, as the recipe runs them), the time of ``TS2Vec.fit`` for the official code.
The official code is imported from ``PATH`` at run time, never copied here.

Usage::

    python benchmarks/timeseries_ucr.py --json benchmarks/results/timeseries_ucr.json
    python benchmarks/timeseries_ucr.py --quick                       # GunPoint, 1 seed
    python benchmarks/timeseries_ucr.py --datasets Coffee Wine --seeds 0 1 2   # any UCR/UEA name
    python benchmarks/timeseries_ucr.py --datasets ArrowHead --set encoder.average_weights=false
    git -C ts2vec-mirror archive HEAD | tar -x -C /tmp/ts2vec   # the official code, anywhere
    python benchmarks/timeseries_ucr.py --datasets GunPoint ItalyPowerDemand ArrowHead --seeds 0 1 2 \\
        --peer-repo /tmp/ts2vec --bf16 --json benchmarks/results/timeseries_ucr.json
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import Report, base_parser

DEFAULT_DATASETS = ("GunPoint", "ArrowHead", "ItalyPowerDemand", "BasicMotions")
_RESULT = "RESULT "  # the line a worker process prints its measurements on


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


def run_official(peer_repo: str, dataset: str, seed: int, steps: int | None) -> dict[str, float]:
    """Train the official TS2Vec (imported from ``peer_repo``) on our arrays; evaluate with the same SVM.

    Seeds ``random``, NumPy and torch as its ``train.py`` does (``init_dl_program``);
    batch 8, lr 1e-3, repr 320, hidden 64, depth 10, its default ``max_train_length=None``.
    """
    import importlib
    import random

    import numpy as np
    import torch

    from ssl_timeseries import fit_svm, ts2vec_steps, ucr

    splits = ucr(dataset=dataset)
    x_train, y_train = splits.train.x.numpy(), splits.train.y.numpy()  # type: ignore[attr-defined]
    x_test, y_test = splits.test.x.numpy(), splits.test.y.numpy()  # type: ignore[attr-defined]
    n_steps = steps or ts2vec_steps(int(splits.info["num_values"]))
    sys.path.insert(0, str(Path(peer_repo).resolve()))
    TS2Vec = importlib.import_module("ts2vec").TS2Vec  # the official code, from the snapshot given on the command line

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    model = TS2Vec(
        input_dims=x_train.shape[-1], output_dims=320, hidden_dims=64, depth=10, device="cpu", lr=1e-3, batch_size=8
    )
    started = time.perf_counter()
    model.fit(x_train, n_iters=n_steps)
    seconds = time.perf_counter() - started
    train_repr = model.encode(x_train, encoding_window="full_series")
    test_repr = model.encode(x_test, encoding_window="full_series")
    svm = fit_svm(train_repr, y_train)
    return {
        "accuracy": float((svm.predict(test_repr) == y_test).mean()),
        "pretrain_seconds": seconds,
        "steps": float(model.n_iters),
    }


def _worker(argv: list[str]) -> int:
    """``--worker KIND DATASET SEED STEPS THREADS [PEER | OVERRIDE...]``: one training in this process."""
    kind, dataset, seed, steps, threads, *rest = argv
    import torch

    torch.set_num_threads(int(threads))
    n_steps = int(steps) or None
    if kind == "official":
        out = run_official(rest[0], dataset, int(seed), n_steps)
    else:
        out = run_one(dataset, int(seed), n_steps, rest)
    print(_RESULT + json.dumps(out), flush=True)
    return 0


def _spawn(kind: str, dataset: str, seed: int, steps: int | None, threads: int, rest: list[str]) -> dict[str, Any]:
    """Run one training in a fresh process; its measurements plus the load average before and after."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, dataset, str(seed)]
    command += [str(steps or 0), str(threads), *rest]
    load_before = os.getloadavg()[0]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} on {dataset} (seed {seed}) failed:\n{done.stderr[-4000:]}")
    line = next(x for x in reversed(done.stdout.splitlines()) if x.startswith(_RESULT))
    out: dict[str, Any] = json.loads(line[len(_RESULT) :])
    out["load"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return out


def _mean(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f}" if values else "-"


def summary(report: Report, datasets: list[str]) -> str:
    """One line per dataset: ours per seed, mean, published, random-init mean, seconds; then the speed lines."""
    header = (
        f"{'dataset':<18} {'ours per seed':<26} {'mean':>6} {'official':>8} {'published':>9} {'random-init':>11} "
        f"{'pretrain s':>10}"
    )
    lines = [header, "-" * len(header)]
    for name in datasets:
        ours = report.values("ours", name, "accuracy")
        published = report.values("published", name, "accuracy")
        secs = report.values("ours", name, "pretrain_seconds")
        per_seed = " ".join(f"{v:.3f}" for v in ours)
        pub = f"{published[0]:.3f}" if published else "-"
        lines.append(
            f"{name:<18} {per_seed:<26} {_mean(ours):>6} {_mean(report.values('official', name, 'accuracy')):>8} "
            f"{pub:>9} {_mean(report.values('random_init', name, 'accuracy')):>11} {statistics.mean(secs):>10.1f}"
        )
    speed = [r for r in report.rows if r["impl"] in ("official", "ours-bf16") and r["metric"] == "pretrain_seconds"]
    if speed:
        lines += [
            "",
            f"{'dataset':<18} {'seed':>4} {'ours s':>7} {'official s':>10} {'ratio':>6} {'bf16 s':>7} {'bf16 gain':>9}",
        ]
        value: dict[tuple[Any, ...], float] = {}  # (impl, case, metric, seed) -> the first row's value
        for r in report.rows:
            value.setdefault((r["impl"], r["case"], r["metric"], r["seed"]), r["value"])
        for name in datasets:
            for row in (
                r for r in report.rows if (r["impl"], r["case"], r["metric"]) == ("ours", name, "pretrain_seconds")
            ):
                seed = row["seed"]
                official = value.get(("official", name, "pretrain_seconds", seed))
                bf16 = value.get(("ours-bf16", name, "pretrain_seconds", seed))
                ratio = value.get(("speedup", name, "ours_vs_official", seed))
                gain = value.get(("speedup", name, "bf16_vs_fp32", seed))
                lines.append(
                    f"{name:<18} {row['seed']:>4} {row['value']:>7.1f} "
                    + (
                        f"{official:>10.1f} {ratio:>5.2f}x"
                        if official is not None and ratio is not None
                        else f"{'-':>10} {'-':>6}"
                    )
                    + (f" {bf16:>7.1f} {gain:>8.2f}x" if bf16 is not None and gain is not None else "")
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        return _worker(argv[1:])
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=None, help="UCR/UEA names (default: the four bundled sets)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default 0 1 2; --quick: 0)")
    parser.add_argument("--steps", type=int, default=None, help="override the TS2Vec iteration rule (200 / 600)")
    parser.add_argument(
        "--set", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides (encoder.average_weights=false)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core box)")
    parser.add_argument(
        "--peer-repo",
        default=None,
        metavar="PATH",
        help="yuezhihan/ts2vec (checkout, exported tree or bare mirror): train it side by side",
    )
    parser.add_argument("--bf16", action="store_true", help="also train ours under bf16 autocast (impl ours-bf16)")
    args = parser.parse_args(argv)

    from ssl_timeseries import PUBLISHED_TS2VEC

    peer, revision = _peer_tree(args.peer_repo) if args.peer_repo is not None else (None, None)
    datasets = args.datasets or (["GunPoint"] if args.quick else list(DEFAULT_DATASETS))
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    report = Report("timeseries_ucr")
    loads: list[dict[str, Any]] = []
    report.extra["protocol"] = {
        "recipe": "timeseries.ts2vec",
        "evaluator": "timeseries.svm",
        "seeds": seeds,
        "threads": args.threads,
        "overrides": args.set,
        "published_source": "TS2Vec (Yue et al., AAAI 2022), full UCR/UEA result tables",
        "official": None
        if args.peer_repo is None
        else {
            "source": "github.com/yuezhihan/ts2vec, imported from --peer-repo at run time",
            "revision": revision,
            "evaluation": "its averaged model, encode(full_series), then ssl_timeseries.fit_svm",
            "order": "ours first on even seeds, official first on odd seeds; one process per training",
        },
        "load_average_1min": loads,
    }
    for name in datasets:
        if name in PUBLISHED_TS2VEC:
            report.add(impl="published", case=name, metric="accuracy", value=PUBLISHED_TS2VEC[name], seed=None)
        for seed in seeds:
            kinds = ["ours"] + (["official"] if args.peer_repo else [])
            kinds = kinds if seed % 2 == 0 else kinds[::-1]
            kinds += ["ours-bf16"] if args.bf16 else []
            results: dict[str, dict[str, Any]] = {}
            for kind in kinds:
                if kind == "official":
                    rest = [str(peer)]
                elif kind == "ours-bf16":
                    rest = [*args.set, "train.precision=bf16"]
                else:
                    rest = list(args.set)
                out = results[kind] = _spawn(
                    "official" if kind == "official" else "ours", name, seed, args.steps, args.threads, rest
                )
                loads.append({"impl": kind, "case": name, "seed": seed, "before_after": out["load"]})
                report.add(impl=kind, case=name, metric="accuracy", value=out["accuracy"], seed=seed)
                report.add(impl=kind, case=name, metric="pretrain_seconds", value=out["pretrain_seconds"], seed=seed)
                report.add(impl=kind, case=name, metric="steps", value=out["steps"], seed=seed)
                if kind == "ours":
                    report.add(impl="random_init", case=name, metric="accuracy", value=out["random_init"], seed=seed)
                extra = f" (random init {out['random_init']:.3f})" if "random_init" in out else ""
                print(
                    f"{name} seed {seed} {kind}: accuracy {out['accuracy']:.3f}{extra}, "
                    f"pretraining {out['pretrain_seconds']:.1f} s for {int(out['steps'])} steps, load {out['load']}",
                    flush=True,
                )
            ours_s = results["ours"]["pretrain_seconds"]
            if "official" in results:
                ratio = results["official"]["pretrain_seconds"] / ours_s
                report.add(impl="speedup", case=name, metric="ours_vs_official", value=ratio, seed=seed)
            if "ours-bf16" in results:
                gain = ours_s / results["ours-bf16"]["pretrain_seconds"]
                report.add(impl="speedup", case=name, metric="bf16_vs_fp32", value=gain, seed=seed)
    print()
    print(summary(report, datasets))
    report.write(args.json)
    return 0


def _peer_tree(path: str) -> tuple[str, str | None]:
    """``(folder holding ts2vec.py, commit or None)`` for a checkout, an exported tree or a bare git mirror.

    A bare mirror (no work tree) is exported with ``git archive HEAD`` into a temporary folder.
    """
    import tempfile

    def git(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["git", "-C", path, *args], capture_output=True)

    try:
        head = git("rev-parse", "HEAD")
    except OSError:
        head = None
    revision = head.stdout.decode().strip() if head is not None and head.returncode == 0 else None
    if (Path(path) / "ts2vec.py").is_file():
        return path, revision
    if revision is None:
        raise SystemExit(f"--peer-repo {path}: no ts2vec.py and not a git repository (expected yuezhihan/ts2vec)")
    target = tempfile.mkdtemp(prefix="ts2vec-official-")
    archive = git("archive", "HEAD")
    subprocess.run(["tar", "-x", "-C", target], input=archive.stdout, check=True)
    if not (Path(target) / "ts2vec.py").is_file():
        raise SystemExit(f"--peer-repo {path}: its HEAD has no ts2vec.py (expected yuezhihan/ts2vec)")
    return target, revision


if __name__ == "__main__":
    raise SystemExit(main())
