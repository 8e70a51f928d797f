"""Evaluation at corpus scale: kNN on float16 vs float32 features, and the cost of chunked similarity.

Accuracy (impl ``float32`` / ``float16``): ``core.knn`` (k = 20 and 200, T = 0.07, DINO's
protocol) with the embeddings of each split held in float32 or float16
(``feature_storage``), on

- ``cifar10-randcnn``: the CIFAR-10 subset at ``/work/shared/data/cifar10`` (10 000 train,
  10 000 test JPEGs, 32 px) embedded by a random-init 4-layer CNN (D = 256), one encoder per seed;
- ``cifar10-pixels``: the same images as raw 3072-d pixel vectors;
- ``digits-pixels``: scikit-learn's 8x8 digits (1347 train / 450 test), raw 64-d pixels.

Rows: ``knn_top1@K``, ``knn_top5@K`` (fractions), and ``top1_disagreement@K``, the fraction of
test rows whose predicted class differs between the two dtypes (on the ``float16`` row).

Speed (case ``bank-N-D``, synthetic Gaussian features, 4 classes of random labels): seconds for
one ``knn_predict`` (k = 200) of the test rows against the bank, with the bank held as float32,
as float16 (each chunk upcast, float32 matmul; what the evaluator does), and a ``bf16-matmul``
variant (queries and bank chunks multiplied in bfloat16, top-k in float32), which was the
alternative considered; its ``top1_disagreement`` with float32 is recorded too. ``peak_extra_mb``
is the process's peak RSS during the call (``VmHWM``, reset just before it) minus its RSS before
(a fresh process per impl), for the default chunks (1024 x 65 536) and for the whole bank at once
(``unchunked-bank``, 1024 x N).

Run:
    python benchmarks/eval_scale.py --json benchmarks/results/eval_scale.json
    python benchmarks/eval_scale.py --quick
"""

from __future__ import annotations

import contextlib
import itertools
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _report import Report, base_parser
from torch import Tensor, nn

import ssl_core
from ssl_core._evaluation_functional import knn_predict

CIFAR_DIR = Path("/work/shared/data/cifar10")
KS = (20, 200)
TEMPERATURE = 0.07


# --------------------------------------------------------------------------- data and encoders


def cifar_split(split: str, limit: int | None) -> tuple[Tensor, Tensor]:
    """``[N, 3, 32, 32]`` float images in [0, 1] and ``[N]`` labels (classes: sorted folder names)."""
    from PIL import Image

    classes = sorted(p.name for p in (CIFAR_DIR / split).iterdir() if p.is_dir())
    files = [
        (path, label) for label, name in enumerate(classes) for path in sorted((CIFAR_DIR / split / name).glob("*"))
    ]
    if limit is not None:
        files = files[:: max(1, len(files) // limit)][:limit]
    images = np.stack([np.asarray(Image.open(path).convert("RGB").resize((32, 32))) for path, _ in files])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return x, torch.tensor([label for _, label in files])


def digits_split() -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    train, test = train_test_split(np.arange(len(data.target)), test_size=0.25, stratify=data.target, random_state=0)
    x, y = torch.tensor(data.data, dtype=torch.float32) / 16.0, torch.tensor(data.target)
    return (x[train], y[train]), (x[test], y[test])


class RandomCNN(ssl_core.EncoderBase):
    """A random-init CNN: four 3x3 conv + ReLU blocks (32, 64, 128, 256 channels), global average pool."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.embed_dim = 256
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            widths = [3, 32, 64, 128, 256]
            layers: list[nn.Module] = []
            for index, (a, b) in enumerate(itertools.pairwise(widths)):
                layers += [nn.Conv2d(a, b, 3, padding=1), nn.ReLU()]
                if index < 3:
                    layers.append(nn.MaxPool2d(2))
            self.net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, batch: dict[str, Tensor], token_mask: Tensor | None = None) -> ssl_core.Features:
        return ssl_core.Features(pooled=self.net(batch["x"]))


class Pixels(ssl_core.EncoderBase):
    """The raw pixels, flattened."""

    def forward(self, batch: dict[str, Tensor], token_mask: Tensor | None = None) -> ssl_core.Features:
        return ssl_core.Features(pooled=batch["x"].flatten(1))


def batches(x: Tensor, y: Tensor, size: int = 500) -> list[dict[str, Tensor]]:
    return [{"x": x[i : i + size], "y": y[i : i + size]} for i in range(0, len(y), size)]


# --------------------------------------------------------------------------- accuracy: float16 vs float32


def accuracy_rows(report: Report, case: str, encoder: Any, train: Any, test: Any, seed: int) -> None:
    features = {}
    for storage in ("float32", "float16"):
        metrics = ssl_core.KNNEvaluator(k=KS, temperature=TEMPERATURE, feature_storage=storage)(encoder, train, test)
        for key, value in metrics.items():
            report.add(impl=storage, case=case, metric=key, value=value, seed=seed)
        features[storage] = [ssl_core.embed(encoder, split, feature_storage=storage) for split in (train, test)]
        print(f"{case:<18} seed {seed} {storage}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    (train32, labels), (test32, test_labels) = features["float32"]
    (train16, _), (test16, _) = features["float16"]
    assert train16.dtype == torch.float16
    num_classes = int(max(labels.max(), test_labels.max())) + 1
    for k in KS:
        full = knn_predict(train32, labels, test32, k=k, temperature=TEMPERATURE, num_classes=num_classes)
        half = knn_predict(train16, labels, test16, k=k, temperature=TEMPERATURE, num_classes=num_classes)
        differing = float((full.argmax(1) != half.argmax(1)).float().mean())
        report.add(impl="float16", case=case, metric=f"top1_disagreement@{k}", value=differing, seed=seed)


# --------------------------------------------------------------------------- speed and memory of the kNN kernel


def bf16_knn(train: Tensor, labels: Tensor, test: Tensor, k: int, num_classes: int, chunk: int = 65_536) -> Tensor:
    """The rejected variant: similarities from a bfloat16 matmul (per bank chunk), top-k merged in float32."""
    inverse = 1.0 / train.float().norm(dim=1).clamp_min(1e-12)
    scores = []
    for query in test.split(1024):
        unit = F.normalize(query.float(), dim=1).bfloat16()
        best_s, best_i = None, None
        for start in range(0, train.shape[0], chunk):
            bank = train[start : start + chunk].bfloat16()
            sim = (unit @ bank.T).float() * inverse[start : start + chunk]
            s, i = sim.topk(min(k, sim.shape[1]), dim=1)
            if best_s is None:
                best_s, best_i = s, i + start
                continue
            cand, cand_i = torch.cat([best_s, s], 1), torch.cat([best_i, i + start], 1)
            best_s, pick = cand.topk(k, dim=1)
            best_i = cand_i.gather(1, pick)
        assert best_s is not None and best_i is not None
        votes = (best_s / TEMPERATURE).exp()
        scores.append(torch.zeros(len(query), num_classes).scatter_add_(1, labels[best_i], votes))
    return torch.cat(scores)


def synthetic_bank(n: int, dim: int, queries: int) -> tuple[Tensor, Tensor, Tensor]:
    """Four Gaussian classes; built in place, chunk by chunk, so that building peaks no higher than the result."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, dim, generator=g)
    labels, test_labels = torch.randint(0, 4, (n,), generator=g), torch.randint(0, 4, (queries,), generator=g)
    train, test = torch.empty(n, dim), torch.empty(queries, dim)
    for out, classes in ((train, labels), (test, test_labels)):
        for start in range(0, len(out), 8192):
            rows = slice(start, start + 8192)
            out[rows] = centres[classes[rows]] + 2.0 * torch.randn(len(classes[rows]), dim, generator=g)
    return train, labels, test


def current_rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (``VmHWM``) to the current RSS (Linux >= 4.0; ignored elsewhere)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    """``VmHWM``: this process's peak RSS. Unlike ``ru_maxrss`` it does not inherit the parent's size at fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def kernel_child(impl: str, n: int, dim: int, queries: int) -> dict[str, Any]:
    """One impl in this (fresh) process: seconds, peak RSS growth, predictions."""
    torch.set_num_threads(2)
    train, labels, test = synthetic_bank(n, dim, queries)
    if impl == "float16-bank":
        train = train.half()
    before = current_rss_mb()
    reset_peak_rss()
    start = time.perf_counter()
    if impl == "bf16-matmul":
        scores = bf16_knn(train, labels, test, k=200, num_classes=4)
    else:
        bank_chunk = n if impl == "unchunked-bank" else 65_536
        scores = knn_predict(
            train, labels, test, k=200, temperature=TEMPERATURE, num_classes=4, bank_batch_size=bank_chunk
        )
    seconds = time.perf_counter() - start
    peak = peak_rss_mb()
    return {"seconds": seconds, "peak_extra_mb": peak - before, "pred": scores.argmax(1).tolist()}


def kernel_rows(report: Report, n: int, dim: int, queries: int, repeats: int) -> None:
    case = f"bank-{n // 1000}k-d{dim}"
    predictions: dict[str, list[int]] = {}
    for repeat in range(repeats):
        for impl in ("float32-bank", "float16-bank", "bf16-matmul", "unchunked-bank"):
            command = [sys.executable, __file__, "--kernel-child", impl, str(n), str(dim), str(queries)]
            out = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
            predictions[impl] = out["pred"]
            report.add(impl=impl, case=case, metric="seconds", value=out["seconds"], seed=repeat)
            report.add(impl=impl, case=case, metric="peak_extra_mb", value=out["peak_extra_mb"], seed=repeat)
            print(f"{case} {impl:<15} {out['seconds']:7.2f} s  peak +{out['peak_extra_mb']:.0f} MB")
    reference = np.array(predictions["float32-bank"])
    for impl in ("float16-bank", "bf16-matmul", "unchunked-bank"):
        differing = float((np.array(predictions[impl]) != reference).mean())
        report.add(impl=impl, case=case, metric="top1_disagreement", value=differing, seed=0)


# --------------------------------------------------------------------------- main


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--kernel-child":
        impl, n, dim, queries = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        print(json.dumps(kernel_child(impl, n, dim, queries)))
        return
    parser = base_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    torch.set_num_threads(2)
    seeds = [0] if args.quick else [0, 1, 2]
    limit = 2000 if args.quick else None
    report = Report("eval_scale", extra={"ks": list(KS), "temperature": TEMPERATURE})

    (dx, dy), (tx, ty) = digits_split()
    accuracy_rows(report, "digits-pixels", Pixels(), batches(dx, dy), batches(tx, ty), seed=0)
    if CIFAR_DIR.is_dir():
        train, test = cifar_split("train", limit), cifar_split("test", limit)
        train_batches, test_batches = batches(*train), batches(*test)
        accuracy_rows(report, "cifar10-pixels", Pixels(), train_batches, test_batches, seed=0)
        for seed in seeds:
            accuracy_rows(report, "cifar10-randcnn", RandomCNN(seed), train_batches, test_batches, seed=seed)
    n, dim, queries = (50_000, 384, 1024) if args.quick else (200_000, 384, 4096)
    kernel_rows(report, n, dim, queries, repeats=1 if args.quick else 3)

    print(report.table())
    report.write(args.json)


if __name__ == "__main__":
    main()
