"""DINO on a speech encoder (cross-modal mix) vs the same encoder with its own objective, vs random init.

``examples/pipelines/dino_speech.toml``: ssl-vision's ``vision.dino`` objective trains
ssl-speech's ``speech.wav2vec2`` encoder (SMALL, 4 x 256) on random audio crops
(``speech.multi_crop``: 2 x 0.4 s global, 4 x 0.2 s local, gain and noise) of FSDD's train
split. The same encoder is pretrained with its own objective (the ``speech.wav2vec2``
recipe) for the same number of steps, batch size and precision, and both, plus the
architecture at random init, are scored by the utterance probe (layer-weighted, mean
pooling, two linear layers, 50 epochs) for speaker and digit on FSDD's 300 test
utterances (takes 0-4). ``--frontend`` picks the encoder's front-end for both runs: the
log-mel one (``fbank``, the default, about 4x cheaper on CPU) or the waveform CNN; the
recorded results (``benchmarks/results/crossmodal_fsdd.json``) use ``waveform`` with 600
steps, because with ``fbank`` the random-init encoder is already at the probe's ceiling.

Rows: ``accuracy_pct`` for impl in ``dino_on_speech``, ``wav2vec2_objective``,
``random_init`` x case ``speaker`` / ``digit``; ``pretrain_seconds``, ``steps``,
``final_loss`` per pretrained impl (case ``fsdd``).

Usage::

    python benchmarks/crossmodal_fsdd.py --root ../shared/data/fsdd/recordings --json crossmodal_fsdd.json
    python benchmarks/crossmodal_fsdd.py --root ... --impls dino_on_speech --threads 1 --json d.json   # one per process
    python benchmarks/crossmodal_fsdd.py --merge d.json w.json --json benchmarks/results/crossmodal_fsdd.json
    python benchmarks/crossmodal_fsdd.py --quick --root ...   # 100 files per split, 10 steps, 5 probe epochs
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import Report, base_parser, merge_files

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = ROOT / "examples" / "pipelines" / "dino_speech.toml"
TASKS = ("speaker", "digit")
IMPLS = ("dino_on_speech", "wav2vec2_objective")
PROBE_KEYS = {"speaker": "speech.utterance_probe", "digit": "speech.utterance_probe#2"}


def _overrides(steps: int, precision: str, frontend: str, quick: bool) -> list[str]:
    epochs = 5 if quick else 50
    return [
        "plots=false",
        f"train.steps={steps}",
        f"train.precision={precision}",
        f"encoder.frontend={frontend}",
        f'evaluate=[{{name="speech.utterance_probe", target="speaker", epochs={epochs}}}, '
        f'{{name="speech.utterance_probe", target="digit", epochs={epochs}}}]',
        *(["data.limit=100", "data.progress=false"] if quick else []),
    ]


def pretrain(impl: str, root: str, steps: int, precision: str, frontend: str, seed: int, quick: bool) -> dict[str, Any]:
    """One pretraining run through ``ssl_core.run`` and its probes; accuracies in %."""
    import ssl_core
    from ssl_speech import wav2vec2

    overrides = [*_overrides(steps, precision, frontend, quick), f"seed={seed}"]
    if impl == "dino_on_speech":
        config: Any = str(PIPELINE)
    else:  # the encoder's own objective, same encoder and training budget
        config = wav2vec2(steps=steps)
        config["data"]["target"] = "speaker"  # the recipe's warm-up is train.warmup_ratio: it follows quick's steps
    started = time.perf_counter()
    result = ssl_core.run(config, overrides=overrides, root=root)
    metrics = result.metrics
    out: dict[str, Any] = {"wall_seconds": time.perf_counter() - started}
    for task, key in PROBE_KEYS.items():
        out[f"{task}_pct"] = 100.0 * metrics["evaluations"][key]["accuracy"]
        out[f"random_{task}_pct"] = 100.0 * metrics["random_init"][key]["accuracy"]
    train = metrics["train"]
    out.update(pretrain_seconds=train["seconds"], steps=float(train["steps"]), final_loss=train["final_loss"])
    return out


def summary(report: Report) -> str:
    """Mean accuracy per (impl, task)."""
    impls = [i for i in (*IMPLS, "random_init") if report.values(i, "speaker", "accuracy_pct")]
    lines = [f"{'encoder (utterance probe)':<28} {'speaker %':>10} {'digit %':>8}"]
    for impl in impls:
        speaker, digit = (statistics.mean(report.values(impl, t, "accuracy_pct")) for t in TASKS)
        lines.append(f"{impl:<28} {speaker:>10.1f} {digit:>8.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], merge=True)
    parser.add_argument("--root", default=None, help="FSDD's recordings folder (../shared/data/fsdd/recordings)")
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=list(IMPLS))
    parser.add_argument("--steps", type=int, default=None, help="pretraining steps (default 1000; --quick 10)")
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    parser.add_argument("--frontend", default="fbank", choices=["fbank", "waveform"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args(argv)

    report = Report("crossmodal_fsdd")
    if args.merge:
        return merge_files(report, args.merge, summary, args.json)
    root = args.root or str(ROOT.parent / "shared" / "data" / "fsdd" / "recordings")
    if not Path(root).is_dir():
        print(f"skipped: FSDD not found at {root}; pass --root to its recordings folder")
        return 0

    import torch

    torch.set_num_threads(args.threads)
    steps = args.steps or (10 if args.quick else 1000)
    report.extra["protocol"] = {
        "pipeline": "examples/pipelines/dino_speech.toml (vision.dino on speech.wav2vec2, speech.multi_crop views)",
        "own_objective": "speech.wav2vec2 recipe (lr 2e-4, mask 0.65 x 10)",
        "encoder": f"speech.wav2vec2 SMALL 4 x 256, {args.frontend} front-end",
        "steps": steps,
        "batch_size": 16,
        "precision": args.precision,
        "threads": args.threads,
        "probe": "speech.utterance_probe: layer-weighted, mean-pooled, 2 linear layers",
        "split": "FSDD takes 0-4 test (300), 5-49 train (2700)",
        "quick": args.quick,
    }
    for impl in args.impls:
        out = pretrain(impl, root, steps, args.precision, args.frontend, args.seed, args.quick)
        for task in TASKS:
            report.add(impl=impl, case=task, metric="accuracy_pct", value=out[f"{task}_pct"], seed=args.seed)
            if not report.values("random_init", task, "accuracy_pct"):
                report.add(impl="random_init", case=task, metric="accuracy_pct", value=out[f"random_{task}_pct"],
                           seed=args.seed)  # fmt: skip
        for metric in ("pretrain_seconds", "steps", "final_loss"):
            report.add(impl=impl, case="fsdd", metric=metric, value=out[metric], seed=args.seed)
        print(f"{impl}: " + ", ".join(f"{k} {v:.2f}" for k, v in out.items() if isinstance(v, float)), flush=True)
        report.write(args.json)
    print(summary(report))
    report.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
