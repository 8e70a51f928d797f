"""MAE and DINO on CIFAR-10: ours vs lightly's documented example modules, same backbone, data and run.

Backbone for everyone: a ViT-Tiny-like timm ``VisionTransformer`` (32 px, patch 4, width 192,
depth 12, 3 heads). MAE: decoder 128 x 4 (4 heads), mask 75%, batch 128. DINO: head
512 / 64 / 2048, 2 x 32 px global + 6 x 16 px local crops, batch 64. The peer is
``benchmarks/_lightly_vision.py`` (lightly's ``examples/pytorch/{mae,dino}.py`` on that ViT).

Parts (``--part``, default all):

* ``step``: the model step alone (forward, loss, backward, optimizer, EMA), on ready-made
  views, steps interleaved between implementations; ours with ssl-core's optimizer (fused
  AdamW), lightly with its examples' (AdamW for MAE, Adam for DINO, torch defaults). Rows ``step_samples_per_s``;
  ``gflop_per_sample`` (counted by ``torch.utils.flop_counter`` over forward + backward)
  and ``roofline_fraction`` (GFLOP per sample x samples/s over the measured 2048 x 2048
  matmul peak at the same thread count and fp32, row ``peak_gflops`` under impl ``machine``).
  Implementations: ``lightly`` (fp32), ``ours`` (fp32), ``ours-bf16`` (bf16 autocast).
* ``e2e``: training from the JPEG folder. lightly: ``ImageFolder`` + its ``MAETransform`` /
  ``DINOTransform`` (PIL, per image) in DataLoader workers, as its examples. Ours: the
  ``vision.cifar10`` provider (decodes the folder once into memory) and batched
  augmentation on the training device, through ssl-core's training loop. Rows
  ``e2e_steady_samples_per_s`` (after one warm-up step) and, for ours, ``decode_seconds``
  (decoding the train folder); ``e2e_epoch_samples_per_s`` charges that one-time decode to
  one epoch of the 10k-image train folder.
* ``knn``: pretrain for ``--epochs`` on the 10k-image train folder, then kNN top-1 (k 20 and
  200, T 0.07, ssl-core's evaluator) on the 10k test images. lightly with its examples'
  optimisers (MAE AdamW 1.5e-4; DINO Adam 1e-3, momentum per epoch); ours with the
  ``vision.mae`` / ``vision.dino`` recipes in fp32 and bf16; plus the random-init ViT.

Usage::

    python benchmarks/vision_cifar.py --json benchmarks/results/vision_cifar.json
    python benchmarks/vision_cifar.py --quick        # CI-sized: few steps, small subsets
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import Report, base_parser, bf16_skip_reason, machine_load, warn_if_loaded

ROOT = Path(__file__).resolve().parent.parent / ".." / "shared" / "data" / "cifar10"
VIT = {"img_size": 32, "patch_size": 4, "embed_dim": 192, "depth": 12, "num_heads": 3}
MAE_BATCH, DINO_BATCH, NUM_LOCAL = 128, 64, 6
DINO_HEAD = {"hidden_dim": 512, "bottleneck_dim": 64, "out_dim": 2048}
METHODS = ("mae", "dino")


# ----------------------------------------------------------------------------- model steps


def _dino_views(batch: int, seed: int = 0) -> tuple[list[Any], Any]:
    import torch

    g = torch.Generator().manual_seed(seed)
    views = [torch.rand(batch, 3, 32, 32, generator=g) for _ in range(2)]
    views += [torch.rand(batch, 3, 16, 16, generator=g) for _ in range(NUM_LOCAL)]
    return views, g


def ours_step(method: str, bf16: bool) -> tuple[Callable[[], None], Callable[[], None], int]:
    """(one training step, one forward + backward for FLOP counting, batch size) of our MAE or DINO."""
    import torch

    from ssl_core import TrainConfig, Views
    from ssl_core._train import PretrainModel, _make_optimizer
    from ssl_vision import DINOObjective, MAEObjective, ViTEncoder, random_patch_mask

    torch.manual_seed(0)
    if method == "mae":
        encoder = ViTEncoder("tiny", image_size=32, patch_size=4, pos_embed="sincos")
        objective: torch.nn.Module = MAEObjective(192, image_size=32, patch_size=4, decoder_dim=128,
                                                  decoder_depth=4, decoder_heads=4)  # fmt: skip
        g = torch.Generator().manual_seed(0)
        crops = torch.rand(MAE_BATCH, 3, 32, 32, generator=g)

        def make_views() -> Views:
            return Views(batches=[{"x": crops}], masks=[random_patch_mask(MAE_BATCH, 64, 0.75, g)])

        batch = MAE_BATCH
    else:
        encoder = ViTEncoder("tiny", image_size=32, patch_size=4)
        objective = DINOObjective(192, encoder=encoder, **DINO_HEAD)
        tensors, _ = _dino_views(DINO_BATCH)
        fixed = Views(batches=[{"x": t} for t in tensors], extras={"num_global": 2})

        def make_views() -> Views:
            return fixed

        batch = DINO_BATCH
    optimizer = _make_optimizer(PretrainModel(encoder, objective), TrainConfig(lr=1e-4))  # what ssl-core's loop uses
    encoder.train()
    objective.train()
    count = [0]

    def forward_backward() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = objective(encoder, make_views())["loss"]
        loss.backward()

    def count_forward_backward() -> None:
        """Counted with fused attention, so the FLOPs are the same model math as lightly's count."""
        modules = [
            m for root in (encoder, objective) for m in root.modules() if isinstance(getattr(m, "attention", None), str)
        ]
        saved = [m.attention for m in modules]
        for m in modules:
            m.attention = "fused"
        try:
            forward_backward()
        finally:
            for m, value in zip(modules, saved, strict=True):
                m.attention = value

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        forward_backward()
        optimizer.step()
        count[0] += 1
        on_step_end = getattr(objective, "on_step_end", None)
        if on_step_end is not None:
            on_step_end(count[0], 10_000)

    return step, count_forward_backward, batch


def lightly_model(method: str, backbone: str = "vit-tiny") -> tuple[Any, Any]:
    """lightly's example module for ``method`` on the benchmark ViT (or, for DINO, our CIFAR ResNet-18), and its
    example's optimizer."""
    import _lightly_vision as lv

    if method == "mae":
        model: Any = lv.LightlyMAE(lv.make_vit(**VIT), decoder_dim=128, decoder_depth=4, decoder_heads=4)
        return model, lv.mae_optimizer(model)
    if backbone == "resnet18":  # the same network as ours: timm's ResNet-18 with the CIFAR stem, pooled 512-d
        from ssl_vision import ResNetEncoder

        net = ResNetEncoder("resnet18", cifar_stem=True).net
        model = lv.LightlyDINO(net, *DINO_HEAD.values(), input_dim=512)
    else:
        model = lv.LightlyDINO(lv.make_vit(**VIT, dynamic_img_size=True), *DINO_HEAD.values())
    return model, lv.dino_optimizer(model)


def lightly_step(method: str) -> tuple[Callable[[], None], Callable[[], None], int]:
    """(one training step, one forward + backward, batch size) of lightly's example module."""
    import _lightly_vision as lv
    import torch

    torch.manual_seed(0)
    model, optimizer = lightly_model(method)
    if method == "mae":
        images = torch.randn(MAE_BATCH, 3, 32, 32, generator=torch.Generator().manual_seed(0))

        def step() -> None:
            lv.mae_train_step(model, optimizer, images)

        def forward_backward() -> None:
            model.training_loss(images).backward()

        return step, forward_backward, MAE_BATCH
    views, _ = _dino_views(DINO_BATCH)
    count = [0]

    def dino_step() -> None:
        count[0] += 1
        lv.dino_train_step(model, optimizer, views, epoch=1, momentum_step=count[0], momentum_total=10_000)

    def dino_forward_backward() -> None:
        model.training_loss(views, epoch=1).backward()

    return dino_step, dino_forward_backward, DINO_BATCH


def count_gflop(forward_backward: Callable[[], None]) -> float:
    """GFLOP of one forward + backward, counted by ``torch.utils.flop_counter``."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        forward_backward()
    return counter.get_total_flops() / 1e9


def matmul_peak_gflops(dtype_name: str = "fp32", size: int = 2048, repeats: int = 8) -> float:
    """Measured GFLOP/s of a ``size`` x ``size`` matmul at the current thread count (best of ``repeats``)."""
    import torch

    dtype = torch.float32 if dtype_name == "fp32" else torch.bfloat16
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def bench_steps(report: Report, methods: tuple[str, ...], warmup: int, steps: int, threads: int) -> None:
    config = f"threads={threads} workers=0"
    no_bf16 = bf16_skip_reason()
    if no_bf16:
        print(f"note: {no_bf16}")
    report.add(impl="machine", case="matmul-2048", metric="peak_gflops", value=matmul_peak_gflops("fp32"))
    if not no_bf16:
        report.add(impl="machine", case="matmul-2048-bf16", metric="peak_gflops", value=matmul_peak_gflops("bf16"))
    peak = report.values("machine", "matmul-2048", "peak_gflops")[-1]
    for method in methods:
        impls = {"lightly": lightly_step(method), "ours": ours_step(method, False)}
        if not no_bf16:
            impls["ours-bf16"] = ours_step(method, True)
        for impl, (step, forward_backward, batch) in impls.items():
            report.add(impl=impl, case=method, metric="gflop_per_sample", value=count_gflop(forward_backward) / batch)
            for _ in range(warmup):
                step()
        first_load = machine_load()
        for _ in range(steps):
            for impl, (step, _, batch) in impls.items():
                before = machine_load()
                start = time.perf_counter()
                step()
                rate = batch / (time.perf_counter() - start)
                load = (before, machine_load())
                report.add(impl=impl, case=method, metric="step_samples_per_s", value=rate, seed=0, config=config,
                           load=load)  # fmt: skip
                gflop = report.values(impl, method, "gflop_per_sample")[0]
                report.add(impl=impl, case=method, metric="roofline_fraction", value=gflop * rate / peak, seed=0)
        warn_if_loaded((first_load, machine_load()), threads, f"the {method} model steps")
        print(f"{method}: " + ", ".join(
            f"{impl} {report.median(impl, method, 'step_samples_per_s'):.1f}/s" for impl in impls))  # fmt: skip


# ----------------------------------------------------------------------------- end to end


def _recipe(method: str, epochs: float, train_size: int, precision: str, backbone: str = "vit-tiny") -> dict[str, Any]:
    import ssl_vision

    config = ssl_vision.mae(epochs=epochs, train_size=train_size) if method == "mae" else ssl_vision.dino(
        epochs=epochs, train_size=train_size, backbone=backbone)  # fmt: skip
    config["train"]["precision"] = precision
    return config


def _train_images(root: Path, limit: int | None) -> list[Path]:
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    samples = make_dataset(str(root / "train"), {c: i for i, c in enumerate(classes)}, extensions=IMG_EXTENSIONS)
    return [Path(p) for p, _ in samples][:limit]


def ours_e2e(method: str, root: Path, steps: int, precision: str, workers: int = 0) -> tuple[float, float, int]:
    """(steady samples/s through ssl-core's loop from the decoded folder, seconds to decode the train folder, N)."""
    from ssl_core import PipelineConfig, build_pipeline, init_distributed, load_config, train
    from ssl_vision import decode_images

    paths = _train_images(root, None)
    start = time.perf_counter()
    decode_images(paths, progress=False)
    decode_seconds = time.perf_counter() - start
    config = _recipe(method, 1, 10_000, precision)
    config["train"].update({"steps": steps, "progress": False, "log_every": 1, "num_workers": workers})
    cfg: PipelineConfig = load_config(config)
    built = build_pipeline(cfg, root=str(root))
    result = train(encoder=built.encoder, objective=built.objective, views=built.views, dataset=built.splits.train,
                   collate=built.splits.collate, cfg=cfg.train, ctx=init_distributed("cpu"))  # fmt: skip
    seconds = [row["seconds"] for row in result.history]
    rate = (len(seconds) - 1) * cfg.train.batch_size / (seconds[-1] - seconds[0])
    return rate, decode_seconds, len(paths)


def lightly_loader(
    method: str, root: Path, workers: int, batch: int, limit: int | None = None, n_local: int = NUM_LOCAL
) -> Any:
    import _lightly_vision as lv
    import torch
    from torch.utils.data import DataLoader, Subset
    from torchvision.datasets import ImageFolder

    transform = lv.mae_transform(32) if method == "mae" else lv.dino_transform(32, 16, n_local)
    dataset: Any = ImageFolder(str(root / "train"), transform=transform)
    if limit is not None:
        dataset = Subset(dataset, list(range(0, len(dataset), max(1, len(dataset) // limit)))[:limit])
    return DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                      persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))  # fmt: skip


def lightly_e2e(method: str, root: Path, steps: int, workers: int) -> float:
    """Steady samples/s of lightly's example loop over ``ImageFolder`` + its transform in DataLoader workers."""
    import _lightly_vision as lv
    import torch

    torch.manual_seed(0)
    batch = MAE_BATCH if method == "mae" else DINO_BATCH
    loader = iter(lightly_loader(method, root, workers, batch))
    model, optimizer = lightly_model(method)
    start = 0.0
    for index in range(steps):
        if index == 1:
            start = time.perf_counter()
        views, _ = next(loader)
        if method == "mae":
            lv.mae_train_step(model, optimizer, views[0])
        else:
            lv.dino_train_step(model, optimizer, views, epoch=0, momentum_step=0, momentum_total=1)
    return (steps - 1) * batch / (time.perf_counter() - start)


E2EConfig = tuple[str, int, int]  # (impl family "lightly" / "ours", torch threads, DataLoader workers)


def parse_e2e_configs(text: str) -> list[E2EConfig]:
    """``"lightly:1:1,ours:2:0"`` -> ``[("lightly", 1, 1), ("ours", 2, 0)]`` (impl:threads:workers).

    Example:
        >>> parse_e2e_configs("lightly:2:1,ours:2:0")
        [('lightly', 2, 1), ('ours', 2, 0)]
    """
    configs: list[E2EConfig] = []
    for item in filter(None, text.split(",")):
        impl, threads, workers = item.split(":")
        if impl not in ("lightly", "ours"):
            raise ValueError(f"--e2e-configs: impl must be lightly or ours, got {impl!r} in {item!r}")
        configs.append((impl, int(threads), int(workers)))
    return configs


def bench_e2e(report: Report, methods: tuple[str, ...], root: Path, steps: int, configs: list[E2EConfig]) -> None:
    """Each (impl, threads, workers) config end to end; rows carry ``config`` and the load before/after."""
    import torch

    no_bf16 = bf16_skip_reason()
    if no_bf16:
        print(f"note: {no_bf16}")
    ours_precisions = [("ours", "fp32")] if no_bf16 else [("ours", "fp32"), ("ours-bf16", "bf16")]
    for method in methods:
        for family, threads, workers in configs:
            torch.set_num_threads(threads)
            config = f"threads={threads} workers={workers}"
            before = machine_load()
            if family == "lightly":
                rate = lightly_e2e(method, root, steps, workers)
                load = (before, machine_load())
                for metric in ("e2e_steady_samples_per_s", "e2e_epoch_samples_per_s"):
                    report.add(impl="lightly", case=method, metric=metric, value=rate, seed=0, config=config,
                               load=load)  # fmt: skip
                print(f"{method} end-to-end, lightly ({config}): {rate:.1f}/s", flush=True)
            else:
                for impl, precision in ours_precisions:
                    before = machine_load()
                    steady, decode_seconds, n = ours_e2e(method, root, steps, precision, workers)
                    load = (before, machine_load())
                    epoch_rate = n / (decode_seconds + n / steady)
                    for metric, value in (("e2e_steady_samples_per_s", steady), ("decode_seconds", decode_seconds),
                                          ("e2e_epoch_samples_per_s", epoch_rate)):  # fmt: skip
                        report.add(impl=impl, case=method, metric=metric, value=value, seed=0, config=config,
                                   load=load)  # fmt: skip
                    print(f"{method} end-to-end, {impl} ({config}): {steady:.1f}/s", flush=True)
            warn_if_loaded(load, threads + workers, f"{method} end to end ({family}, {config})")
        print(e2e_summary(report, method))


def e2e_summary(report: Report, method: str) -> str:
    """Each impl's fastest config end to end, and ours over lightly at those (equal resources)."""
    best: dict[str, tuple[float, str]] = {}
    rows = [r for r in report.rows if r["case"] == method and r["metric"] == "e2e_steady_samples_per_s"]
    for row in rows:
        if row["value"] > best.get(row["impl"], (0.0, ""))[0]:
            best[row["impl"]] = (row["value"], row.get("config", ""))
    lines = [f"{method} end to end, best config per impl:"]
    lines += [f"  {impl:<10} {rate:8.1f} samples/s  ({config})" for impl, (rate, config) in sorted(best.items())]
    if "lightly" in best:
        for impl in ("ours", "ours-bf16"):
            if impl in best:
                lines.append(f"  {impl} / lightly: {best[impl][0] / best['lightly'][0]:.2f}x")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- kNN after pretraining


def _knn(encoder: Any, splits: Any, limit: int | None) -> dict[str, float]:
    import torch
    from torch.utils.data import DataLoader, Subset

    from ssl_core import KNNEvaluator

    def loader(ds: Any) -> Any:
        if limit is not None:
            ds = Subset(ds, list(range(0, len(ds), max(1, len(ds) // limit)))[:limit])
        return DataLoader(ds, batch_size=500, collate_fn=splits.collate)

    torch.manual_seed(0)
    return KNNEvaluator(k=(20, 200), temperature=0.07, num_classes=splits.num_classes)(
        encoder, loader(splits.train), loader(splits.test)
    )


def _record_knn(report: Report, impl: str, method: str, metrics: dict[str, float], seed: int, epochs: float) -> None:
    for k in (20, 200):
        report.add(impl=impl, case=method, metric=f"knn_top1@{k}", value=100 * metrics[f"knn_top1@{k}"], seed=seed)
    print(f"{method} {impl} ({epochs} epochs): kNN top-1 @20 {100 * metrics['knn_top1@20']:.2f}%")


def ours_knn(
    method: str,
    root: Path,
    epochs: float,
    precision: str,
    limit: int | None,
    overrides: list[str] | None = None,
    curve: bool = False,
    backbone: str = "vit-tiny",
) -> tuple[dict[str, float], float, dict[int, float]]:
    """Pretrain with the recipe; (final kNN, seconds of training, {epoch: kNN top-1 @20} when ``curve``).

    The curve comes from the training loop's monitor at every epoch's end, with the whole
    train split as the bank and the whole test split as queries (k 20, T 0.07): the same
    number the kNN evaluator gives. Its time is not counted in ``seconds``.
    """
    from ssl_core import run

    train_size = limit or 10_000
    config = _recipe(method, epochs, train_size, precision, backbone)
    config.update({"evaluate": [], "compare_random_init": False, "plots": False})
    config["train"]["progress"] = True
    per_epoch = max(1, math.ceil(train_size / config["train"]["batch_size"]))
    if curve:
        config["train"].update({"monitor_every": per_epoch, "monitor_samples": train_size})
    else:
        config["train"]["monitor_every"] = 0
    result = run(config, root=str(root), overrides=overrides or [])
    seconds = float(result.metrics["train"]["seconds"])
    from ssl_vision import cifar10

    points: dict[int, float] = {}
    if curve:
        monitors = result.metrics.get("monitors", {})
        knn = monitors.get("curves", {}).get("monitor/knn_top1", [])
        monitor_seconds = float(monitors.get("seconds", 0.0))
        seconds -= monitor_seconds
        for step, value in zip(monitors.get("steps", []), knn, strict=False):
            if value is not None:
                points[round(step / per_epoch)] = 100 * value
    return _knn(result.encoder, cifar10(str(root)), limit), seconds, points


def lightly_knn(
    method: str, root: Path, epochs: int, workers: int, limit: int | None, per_step_ema: bool = False,
    curve: bool = False, backbone: str = "vit-tiny", n_local: int = NUM_LOCAL,
) -> tuple[dict[str, float], float, dict[int, float]]:  # fmt: skip
    """lightly's example loop; (final kNN, seconds of training, {epoch: kNN top-1 @20} when ``curve``)."""
    import _lightly_vision as lv
    import torch
    from tqdm.auto import tqdm

    from ssl_core import EncoderBase, Features
    from ssl_vision import cifar10
    from ssl_vision._encoders import _Normalize

    torch.manual_seed(0)
    batch = MAE_BATCH if method == "mae" else DINO_BATCH
    loader = lightly_loader(method, root, workers, batch, limit, n_local)
    model, optimizer = lightly_model(method, backbone)

    class Backbone(EncoderBase):
        def __init__(self) -> None:
            super().__init__()
            self.model, self.normalize = model, _Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
            self.embed_dim = 512 if backbone == "resnet18" else 192

        def forward(self, batch: dict[str, Any], token_mask: Any = None) -> Features:
            return Features(pooled=self.model.features(self.normalize(batch["x"])))

    splits = cifar10(str(root))
    points: dict[int, float] = {}
    evaluating = 0.0
    if curve:
        points[0] = 100 * _knn(Backbone(), splits, limit)["knn_top1@20"]
        model.train()
    start = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        for index, (views, _) in enumerate(tqdm(loader, desc=f"lightly {method} epoch {epoch}")):
            if method == "mae":
                lv.mae_train_step(model, optimizer, views[0])
            else:
                if per_step_ema:  # DINO's own schedule: cosine over iterations
                    step, total = epoch * len(loader) + index, epochs * len(loader)
                else:  # lightly's example: cosine over epochs (with one epoch the momentum is 1 throughout)
                    step, total = epoch, epochs
                lv.dino_train_step(model, optimizer, views, epoch=epoch, momentum_step=step, momentum_total=total)
        if curve:
            began = time.perf_counter()
            points[epoch + 1] = 100 * _knn(Backbone(), splits, limit)["knn_top1@20"]
            model.train()
            evaluating += time.perf_counter() - began
    seconds = time.perf_counter() - start - evaluating
    return _knn(Backbone(), splits, limit), seconds, points


def _record_curve(report: Report, impl: str, method: str, points: dict[int, float]) -> None:
    for epoch, value in sorted(points.items()):
        report.add(impl=impl, case=method, metric=f"knn_top1@20_epoch{epoch}", value=value, seed=0)


def plot_curves(report: Report, method: str, path: Path) -> None:
    """kNN top-1 @20 against epochs for every impl with a curve (and random init as a line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    impls = sorted({r["impl"] for r in report.rows if r["case"] == method and "_epoch" in r["metric"]})
    for impl in impls:
        rows = [r for r in report.rows if r["impl"] == impl and r["case"] == method and "_epoch" in r["metric"]]
        points = sorted((int(r["metric"].rsplit("_epoch", 1)[1]), r["value"]) for r in rows)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=impl)
    base = report.values("random-init", method, "knn_top1@20")
    if base:
        ax.axhline(base[0], color="grey", linestyle="--", label="random init")
        ax.axhline(base[0] + 5, color="grey", linestyle=":", label="random init + 5")
    ax.set_xlabel("epoch (10k-image CIFAR-10 subset)")
    ax.set_ylabel("kNN top-1 @20 (%)")
    ax.set_title(f"{method}: kNN on the 10k test images after each epoch")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


def bench_knn(report: Report, methods: tuple[str, ...], root: Path, epochs: float, workers: int,
              limit: int | None, impls: tuple[str, ...], overrides: list[str], label: str = "",
              curve: bool = False, precision: str = "auto", backbone: str = "vit-tiny") -> None:  # fmt: skip
    """Random init, lightly's example and ours (``ours``: ``precision``; ``ours-fp32`` / ``ours-bf16``).

    ``backbone`` (DINO): ``vit-tiny`` or ``resnet18`` for every impl, random init included;
    lightly gets as many local crops as our recipe for that backbone.
    """
    import ssl_vision
    from ssl_vision import ResNetEncoder, ViTEncoder, cifar10

    for method in methods:
        resnet = backbone == "resnet18" and method == "dino"
        n_local = int(ssl_vision.dino(backbone="resnet18")["views"]["num_local"]) if resnet else NUM_LOCAL
        if "random" in impls:
            import torch

            torch.manual_seed(0)
            random_init = ResNetEncoder("resnet18", cifar_stem=True) if resnet else ViTEncoder("tiny", 32, 4)
            _record_knn(report, "random-init", method, _knn(random_init, cifar10(str(root)), limit), 0, 0)
        for name, per_step in (("lightly", False), ("lightly-per-step-ema", True)):
            if name in impls and (method == "dino" or not per_step):
                metrics, seconds, points = lightly_knn(method, root, int(epochs), workers, limit, per_step, curve,
                                                       backbone, n_local)  # fmt: skip
                _record_knn(report, name, method, metrics, 0, epochs)
                _record_curve(report, name, method, points)
                report.add(impl=name, case=method, metric="pretrain_seconds", value=seconds, seed=0)
        for impl, impl_precision in (("ours", precision), ("ours-fp32", "fp32"), ("ours-bf16", "bf16")):
            if impl in impls:
                metrics, seconds, points = ours_knn(method, root, epochs, impl_precision, limit, overrides, curve,
                                                    backbone if method == "dino" else "vit-tiny")  # fmt: skip
                impl = impl + label
                _record_knn(report, impl, method, metrics, 0, epochs)
                _record_curve(report, impl, method, points)
                report.add(impl=impl, case=method, metric="pretrain_seconds", value=seconds, seed=0)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "step", "e2e", "knn"), default="all")
    parser.add_argument("--methods", default="mae,dino", help="comma-separated: mae, dino")
    parser.add_argument("--root", type=Path, default=ROOT, help="CIFAR-10 ImageFolder copy with train/ and test/")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for lightly's PIL pipeline")
    parser.add_argument(
        "--e2e-configs",
        default=None,
        help="end-to-end configs impl:threads:workers, comma-separated (equal resources: "
        "lightly:2:1,lightly:2:2,lightly:1:1,ours:2:0); default lightly:THREADS:WORKERS,ours:THREADS:0",
    )
    parser.add_argument("--e2e-steps", type=int, default=12, help="training steps per end-to-end measurement")
    parser.add_argument("--epochs", type=float, default=1.0, help="pretraining epochs for the kNN part")
    parser.add_argument(
        "--knn-impls",
        default="random,lightly,ours",
        help="random, lightly, lightly-per-step-ema, ours (at --precision), ours-fp32, ours-bf16",
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("fp32", "bf16", "auto"),
        help="precision of impl 'ours' (auto: bf16 where the CPU has it natively)",
    )
    parser.add_argument(
        "--curve", action="store_true", help="kNN after every epoch (rows knn_top1@20_epoch<N>) and a PNG of the curves"
    )
    parser.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="where the curve PNG goes (default: next to --json, else vision_cifar_<method>_knn.png)",
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="key=value override for our kNN runs (an ablation); label them with --label")  # fmt: skip
    parser.add_argument("--backbone", default="vit-tiny", choices=("vit-tiny", "resnet18"),
                        help="the kNN part's DINO backbone (all impls and random init); MAE keeps the ViT")  # fmt: skip
    parser.add_argument("--label", default="", help="suffix for our impl names in the kNN rows, e.g. -rawpix")
    parser.add_argument("--merge", type=Path, action="append", default=[], help="add the rows of earlier JSON files")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    methods = tuple(m for m in args.methods.split(",") if m)
    if not set(methods) <= set(METHODS):
        parser.error(f"--methods takes {', '.join(METHODS)}")
    report = Report("vision_cifar")
    for path in args.merge:
        report.merge(path)
    report.extra["protocol"] = {"vit": VIT, "mae_batch": MAE_BATCH, "dino_batch": DINO_BATCH, "dino_head": DINO_HEAD,
                                "num_local": NUM_LOCAL, "threads": args.threads, "workers": args.workers,
                                "epochs": args.epochs, "quick": args.quick}  # fmt: skip
    root = args.root.resolve()
    if args.part in ("all", "step"):
        bench_steps(report, methods, warmup=1 if args.quick else 3, steps=2 if args.quick else 8, threads=args.threads)
    needs_data = args.part in ("all", "e2e", "knn")
    if needs_data and not (root / "train").is_dir():
        print(f"skipping the data parts: no CIFAR-10 ImageFolder copy at {root} (pass --root)")
    elif needs_data:
        if args.part in ("all", "e2e"):
            configs = parse_e2e_configs(
                args.e2e_configs or f"lightly:{args.threads}:{args.workers},ours:{args.threads}:0"
            )
            bench_e2e(report, methods, root, steps=3 if args.quick else args.e2e_steps, configs=configs)
            torch.set_num_threads(args.threads)
        if args.part in ("all", "knn"):
            impls = tuple(args.knn_impls.split(","))
            bench_knn(report, methods, root, 1 if args.quick else args.epochs, args.workers,
                      500 if args.quick else None, impls, args.overrides, args.label, args.curve,
                      args.precision, args.backbone)  # fmt: skip
            report.extra["protocol"]["knn_precision"] = args.precision
            report.extra["protocol"]["knn_backbone"] = args.backbone
            if args.curve:
                for method in methods:
                    folder = args.json.parent if args.json else Path(".")
                    plot_curves(report, method, args.plot or folder / f"vision_cifar_{method}_knn.png")
    print(report.table())
    report.write(args.json)


if __name__ == "__main__":
    main()
