"""wav2vec 2.0 and HuBERT pretrained on FSDD, probed for digit and speaker, beside random init and MFCCs.

For each method, the ``speech.wav2vec2`` / ``speech.hubert`` recipe (SMALL encoder, 4 x 256,
waveform CNN; bf16 autocast; batches of 16 length-bucketed utterances) pretrains on FSDD's
train split (2,700 utterances, takes 5-49) for ``--steps`` steps; HuBERT's iteration-1
targets are k-means (100) on 39-d MFCCs of the train split (``ssl hubert-labels``). Then the
utterance probe (SUPERB style: softmax-weighted layers, mean pooling, two linear layers,
50 epochs) is trained on the train split and tested on the 300 test utterances (takes
0-4), once for the digit and once for the speaker. The same probe runs on the same
architecture at random init (in the same run) and on MFCCs (``speech.mfcc``).

Rows: ``accuracy_pct`` for (impl in ``wav2vec2``, ``hubert``, ``random_init``, ``mfcc``) x
(case ``digit``, ``speaker``); ``pretrain_seconds``, ``steps``, ``final_loss`` and
``final_objective_accuracy`` per method.

``--methods hubert2`` runs HuBERT's two iterations (issue 17): iteration 1 on the MFCC
k-means labels for ``--steps`` steps, k-means (``--clusters2``, default 100) on transformer
layer ``--layer`` (default 3) of the iteration-1 encoder, then iteration 2 on those labels
for ``--steps2`` steps (default ``--steps``), from scratch or, with ``--init2 iteration-1``,
from iteration 1's encoder. The total budget is the sum,
stated in the rows ``steps`` (case ``fsdd``). Rows: ``accuracy`` (in %) for impl in
``hubert-iter1``, ``hubert-iter2``, ``random`` x case in ``digit``, ``speaker``; with
``--equal-budget`` also ``hubert-iter1-long``: iteration 1 trained for the whole budget
(``--steps`` + ``--steps2``), so iteration 2 is compared with the same number of steps.

``--subset N`` (issue 19) trains on N clips only, takes 5 .. 5 + N / 60 - 1 of every digit and
speaker (600: 10 takes each), the small corpus of short clips where wav2vec 2.0's quantiser
collapsed; the probes train on those N clips and test on the usual 300. Rows: ``accuracy`` (in
%) for impl in ``wav2vec2``, ``hubert``, ``random``, ``mfcc`` x case ``digit`` (and
``speaker``), and per wav2vec 2.0 run ``min_perplexity`` (the lowest codebook perplexity of any
step: every step is logged) beside ``max_perplexity`` (G x V), and the curve
``perplexity_step<N>`` (step 1 and every 50 steps).
``--set KEY=VALUE`` (repeatable) changes the recipe, for the ablation in docs/speech.md.

Usage::

    python benchmarks/speech_fsdd.py --root ../shared/data/fsdd/recordings --json benchmarks/results/speech_fsdd.json
    python benchmarks/speech_fsdd.py --root ... --methods hubert --threads 1 --json h.json    # one method per process
    python benchmarks/speech_fsdd.py --merge w.json h.json --json benchmarks/results/speech_fsdd.json
    python benchmarks/speech_fsdd.py --quick --root ...    # 100 files per split, 20 steps, 5 probe epochs
    python benchmarks/speech_fsdd.py --root ... --methods hubert2 --steps 1000 --equal-budget --json h2.json
    python benchmarks/speech_fsdd.py --root ... --subset 600 --methods wav2vec2 --set objective.num_negatives=50
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import Report, base_parser, merge_files

TASKS = ("digit", "speaker")
PERPLEXITY_EVERY = 50
"""The subset study's perplexity curve: rows ``perplexity_step<N>`` at step 1 and every 50 steps."""


def _probe_overrides(quick: bool) -> list[str]:
    return ['evaluate=[{name="speech.utterance_probe", target="digit", epochs=5}, '
            '{name="speech.utterance_probe", target="speaker", epochs=5}]'] if quick else []  # fmt: skip


def pretrain(
    method: str, root: str, steps: int, precision: str, seed: int, quick: bool,
    train_takes: int | None = None, extra: Sequence[str] = (),
) -> dict[str, Any]:  # fmt: skip
    """Pretrain + probe one method through ``ssl_core.run``; accuracies in %, plus training facts.

    ``train_takes``: train on that many takes per digit and speaker (``fsdd(train_takes=...)``);
    ``extra``: more ``--set`` overrides, applied last.
    """
    import ssl_core
    from ssl_speech import fsdd, hubert, hubert_labels, save_labels, wav2vec2

    limit = 100 if quick else None
    with tempfile.TemporaryDirectory() as tmp:
        if method == "hubert":
            splits = fsdd(root, limit=limit, progress=False, train_takes=train_takes)
            labels_path = save_labels(hubert_labels(splits, source="mfcc", num_clusters=100, seed=seed),
                                      Path(tmp) / "labels.pt")  # fmt: skip
            config = hubert(str(labels_path), steps=steps)
        else:
            config = wav2vec2(steps=steps)
        config["seed"] = seed
        overrides = ["plots=false", f"train.precision={precision}", *_probe_overrides(quick)]
        if limit is not None:
            overrides.append(f"data.limit={limit}")
        if train_takes is not None:  # the subset study: every step's perplexity counts towards the minimum
            overrides.extend([f"data.train_takes={train_takes}", "train.log_every=1"])
        overrides.extend(extra)
        started = time.perf_counter()
        result = ssl_core.run(config, overrides=overrides, root=root)
    metrics = result.metrics
    out: dict[str, Any] = {"wall_seconds": time.perf_counter() - started}
    for task, value in _probe(metrics, "evaluations").items():
        out[f"{task}_pct"] = value
    if "random_init" in metrics:  # absent with --set compare_random_init=false (ablation runs)
        for task, value in _probe(metrics, "random_init").items():
            out[f"random_{task}_pct"] = value
    train = metrics["train"]
    history = result.history
    out.update(pretrain_seconds=train["seconds"], steps=float(train["steps"]), final_loss=train["final_loss"])
    if history and "accuracy" in history[-1]:
        out["final_objective_accuracy"] = float(history[-1]["accuracy"])
    perplexities = [float(row["perplexity"]) for row in history if "perplexity" in row]
    if perplexities:
        out["min_perplexity"] = min(perplexities)
        curve_steps = {1, *range(PERPLEXITY_EVERY, steps + 1, PERPLEXITY_EVERY)}
        out["perplexity_curve"] = {int(row["step"]): float(row["perplexity"]) for row in history
                                   if "perplexity" in row and int(row["step"]) in curve_steps}  # fmt: skip
        params = result.config.objectives[0].params  # the quantiser's G x V (the objective's defaults: 2 x 320)
        out["max_perplexity"] = float(params.get("num_groups", 2) * params.get("num_entries", 320))
    return out


def _probe(metrics: dict[str, Any], section: str) -> dict[str, float]:
    keys = ["speech.utterance_probe", "speech.utterance_probe#2"]
    return {task: 100.0 * metrics[section][key]["accuracy"] for task, key in zip(TASKS, keys, strict=True)}


def hubert_two_iterations(
    root: str, steps: int, steps2: int, layer: int, clusters2: int, precision: str, seed: int, quick: bool,
    equal_budget: bool, init2: str = "scratch",
) -> dict[str, dict[str, float]]:  # fmt: skip
    """HuBERT iteration 1 (MFCC labels), layer k-means, iteration 2; probes in % per impl.

    ``init2``: ``"scratch"`` (HuBERT: a new model on the new labels) or ``"iteration-1"``
    (iteration 2 starts from iteration 1's encoder; the objective's cluster embeddings are new).

    Returns ``{impl: {"digit", "speaker", "pretrain_seconds", "steps"}}`` for ``hubert-iter1``,
    ``hubert-iter2``, ``random`` (and ``hubert-iter1-long`` with ``equal_budget``).
    """
    import ssl_core
    from ssl_speech import fsdd, hubert, hubert_labels, save_labels

    limit = 100 if quick else None
    overrides = ["plots=false", f"train.precision={precision}", *_probe_overrides(quick)]
    if limit is not None:
        overrides.append(f"data.limit={limit}")
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        splits = fsdd(root, limit=limit, progress=False)
        mfcc = save_labels(hubert_labels(splits, source="mfcc", num_clusters=100, seed=seed), Path(tmp) / "mfcc.pt")

        def run(labels: Path, n_steps: int, clusters: int, name: str, random_init: bool, start: Any = None) -> Any:
            config = hubert(str(labels), steps=n_steps, num_clusters=clusters)
            config.update({"seed": seed, "compare_random_init": random_init})
            print(f"hubert2: {name} ({n_steps} steps on {labels.name})", flush=True)
            state = None if start is None else start.state_dict()
            return ssl_core.run(config, overrides=overrides, root=root, out=Path(tmp) / name, encoder_state=state)

        first = run(mfcc, steps, 100, "iteration-1", True)
        out["hubert-iter1"] = {**_probe(first.metrics, "evaluations"), "steps": float(steps),
                               "pretrain_seconds": first.metrics["train"]["seconds"]}  # fmt: skip
        out["random"] = _probe(first.metrics, "random_init")
        layer_labels = hubert_labels(splits, source="layer", encoder=first.encoder, layer=layer,
                                     num_clusters=clusters2, seed=seed)  # fmt: skip
        start = first.encoder if init2 == "iteration-1" else None
        layer_file = save_labels(layer_labels, Path(tmp) / f"layer{layer}.pt")
        second = run(layer_file, steps2, clusters2, "iteration-2", False, start)
        out["hubert-iter2"] = {**_probe(second.metrics, "evaluations"), "steps": float(steps + steps2),
                               "pretrain_seconds": first.metrics["train"]["seconds"]
                               + second.metrics["train"]["seconds"]}  # fmt: skip
        if equal_budget:
            long = run(mfcc, steps + steps2, 100, "iteration-1-long", False)
            out["hubert-iter1-long"] = {**_probe(long.metrics, "evaluations"), "steps": float(steps + steps2),
                                        "pretrain_seconds": long.metrics["train"]["seconds"]}  # fmt: skip
    return out


def mfcc_baseline(root: str, seed: int, quick: bool, train_takes: int | None = None) -> dict[str, float]:
    """The utterance probe on 39-d MFCC + deltas (``speech.mfcc``), digit and speaker accuracy in %."""
    import ssl_core
    from ssl_speech import MFCCEncoder, UtteranceProbeEvaluator, fsdd

    splits = fsdd(root, limit=100 if quick else None, progress=False, train_takes=train_takes)
    evaluators = {task: UtteranceProbeEvaluator(target=task, seed=seed, epochs=5 if quick else 50) for task in TASKS}
    results = ssl_core.evaluate(MFCCEncoder(), splits, evaluators, batch_size=64)
    return {f"{task}_pct": 100.0 * results[task]["accuracy"] for task in TASKS}


def summary(report: Report) -> str:
    """Mean accuracy per (impl, task) and the pretrained-minus-random gaps."""
    # the --subset rows are named as issue 19 asks: accuracy, random
    subset = any(report.values(impl, "digit", "accuracy") for impl in ("wav2vec2", "hubert", "mfcc"))
    metric, random = ("accuracy", "random") if subset else ("accuracy_pct", "random_init")
    impls = [i for i in ("wav2vec2", "hubert", random, "mfcc") if report.values(i, "digit", metric)]
    lines = [f"{'encoder (utterance probe)':<28} {'digit %':>8} {'speaker %':>10}"]
    mean = {(i, t): statistics.mean(report.values(i, t, metric)) for i in impls for t in TASKS}
    for impl in impls:
        lines.append(f"{impl:<28} {mean[(impl, 'digit')]:>8.1f} {mean[(impl, 'speaker')]:>10.1f}")
    if (random, "digit") in mean:
        for impl in ("wav2vec2", "hubert"):
            if (impl, "digit") in mean:
                gaps = [mean[(impl, t)] - mean[(random, t)] for t in TASKS]
                seconds = statistics.mean(report.values(impl, "fsdd", "pretrain_seconds"))
                steps = statistics.mean(report.values(impl, "fsdd", "steps"))
                lines.append(f"{impl} - random init: digit {gaps[0]:+.1f}, speaker {gaps[1]:+.1f} points "
                             f"({steps:.0f} steps, {seconds / 60:.1f} min pretraining)")  # fmt: skip
    for low, high in zip(report.values("wav2vec2", "fsdd", "min_perplexity"),
                         report.values("wav2vec2", "fsdd", "max_perplexity"), strict=False):  # fmt: skip
        lines.append(f"wav2vec2 codebook: lowest perplexity {low:.1f} of {high:.0f} ({100 * low / high:.1f}%)")
    for impl in ("hubert-iter1", "hubert-iter1-long", "hubert-iter2", *(() if subset else ("random",))):
        values = {t: report.values(impl, t, "accuracy") for t in TASKS}
        if all(values.values()):
            steps = report.values(impl, "fsdd", "steps")
            budget = f" ({steps[0]:.0f} steps in all)" if steps else ""
            lines.append(f"{impl:<28} {statistics.mean(values['digit']):>8.1f} "
                         f"{statistics.mean(values['speaker']):>10.1f}{budget}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], merge=True)
    parser.add_argument("--root", default=None, help="FSDD's recordings folder (../shared/data/fsdd/recordings)")
    parser.add_argument("--methods", nargs="+", default=["wav2vec2", "hubert", "mfcc"],
                        choices=["wav2vec2", "hubert", "hubert2", "mfcc"])  # fmt: skip
    parser.add_argument("--steps2", type=int, default=None, help="hubert2: iteration-2 steps (default --steps)")
    parser.add_argument("--layer", type=int, default=3, help="hubert2: the iteration-1 layer clustered for iteration 2")
    parser.add_argument("--clusters2", type=int, default=100, help="hubert2: k of the iteration-2 labels")
    parser.add_argument("--init2", default="scratch", choices=["scratch", "iteration-1"],
                        help="hubert2: iteration 2 from scratch (HuBERT) or from iteration 1's encoder")  # fmt: skip
    parser.add_argument("--equal-budget", action="store_true",
                        help="hubert2: also train iteration 1 for the whole two-iteration budget")  # fmt: skip
    parser.add_argument("--steps", type=int, default=None, help="pretraining steps (default 2000; --quick 20)")
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--subset", type=int, default=None,
                        help="train on N clips (a multiple of 60: N / 60 takes per digit and speaker)")  # fmt: skip
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a recipe override for wav2vec2 / hubert (repeatable)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.subset is not None and (args.subset < 60 or args.subset % 60):
        parser.error(f"--subset must be a positive multiple of 60 (6 speakers x 10 digits), got {args.subset}")
    train_takes = None if args.subset is None else args.subset // 60

    report = Report("speech_fsdd")
    if args.merge:
        return merge_files(report, args.merge, summary, args.json)
    if args.root is None or not Path(args.root).is_dir():
        parser.error("--root must be FSDD's recordings folder, e.g. ../shared/data/fsdd/recordings")

    import torch

    torch.set_num_threads(args.threads)
    steps = args.steps or (20 if args.quick else 2000)
    report.extra["protocol"] = {
        "recipes": "speech.wav2vec2 (lr 2e-4) / speech.hubert (lr 5e-4): SMALL 4 x 256, waveform CNN, batch 16",
        "steps": steps,
        "precision": args.precision,
        "threads": args.threads,
        "hubert_targets": "k-means 100 on 39-d MFCC + deltas of the train split (iteration 1)",
        "probe": "speech.utterance_probe: layer-weighted, mean-pooled, 2 linear layers, 50 epochs",
        "split": "FSDD takes 0-4 test (300), 5-49 train (2700)",
        "quick": args.quick,
        "subset": args.subset,
        "overrides": args.overrides,
    }
    if args.subset is not None:
        split = f"FSDD takes 0-4 test (300), takes 5-{4 + train_takes} train ({args.subset})"
        report.extra["protocol"]["split"] = split
    for method in args.methods:
        if method == "hubert2":
            steps2 = args.steps2 or steps
            results = hubert_two_iterations(args.root, steps, steps2, args.layer, args.clusters2, args.precision,
                                            args.seed, args.quick, args.equal_budget, args.init2)  # fmt: skip
            report.extra["protocol"]["hubert2"] = {"steps": [steps, steps2], "layer": args.layer, "init2": args.init2,
                                                   "clusters2": args.clusters2, "accuracy": "percent"}  # fmt: skip
            for impl, values in results.items():
                for task in TASKS:
                    report.add(impl=impl, case=task, metric="accuracy", value=values[task], seed=args.seed)
                for metric in ("steps", "pretrain_seconds"):
                    if metric in values:
                        report.add(impl=impl, case="fsdd", metric=metric, value=values[metric], seed=args.seed)
                print(f"{impl}: " + ", ".join(f"{k} {v:.1f}" for k, v in values.items()), flush=True)
            report.write(args.json)
            continue
        # the subset study (issue 19) names its rows as that issue does: accuracy, random
        accuracy, random = ("accuracy", "random") if args.subset is not None else ("accuracy_pct", "random_init")
        if method == "mfcc":
            out = mfcc_baseline(args.root, args.seed, args.quick, train_takes)
            for task in TASKS:
                report.add(impl="mfcc", case=task, metric=accuracy, value=out[f"{task}_pct"], seed=args.seed)
        else:
            out = pretrain(method, args.root, steps, args.precision, args.seed, args.quick, train_takes, args.overrides)
            for task in TASKS:
                report.add(impl=method, case=task, metric=accuracy, value=out[f"{task}_pct"], seed=args.seed)
                if f"random_{task}_pct" in out:
                    report.add(impl=random, case=task, metric=accuracy, value=out[f"random_{task}_pct"], seed=args.seed)
            for metric in ("pretrain_seconds", "steps", "final_loss", "final_objective_accuracy", "min_perplexity",
                           "max_perplexity"):  # fmt: skip
                if metric in out:
                    report.add(impl=method, case="fsdd", metric=metric, value=out[metric], seed=args.seed)
            for step, value in out.get("perplexity_curve", {}).items():
                report.add(impl=method, case="fsdd", metric=f"perplexity_step{step}", value=value, seed=args.seed)
        print(f"{method}: " + ", ".join(f"{k} {v:.2f}" for k, v in out.items() if isinstance(v, float)), flush=True)
        report.write(args.json)
    print(summary(report))
    report.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
