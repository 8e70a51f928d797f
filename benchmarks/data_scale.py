"""Memory and speed of pretraining as the corpus grows: streamed from disk against decoded into RAM.

For each modality the same short pretraining runs on corpora of 1x, 4x and 16x the base
size, once through the in-memory dataset provider and once through the streaming one
(items decoded in DataLoader workers). Each run is a separate process; the parent samples
the resident memory of the whole process tree (workers included) every 50 ms.

Rows: ``impl`` = ``streaming`` | ``in_memory``, ``case`` = ``<modality>-<N>x``, metrics
``peak_rss_mb`` (summed over the tree: each worker's copy of the shared libraries counts
again), ``peak_pss_mb`` (proportional set size: shared pages counted once),
``samples_per_second`` and ``startup_seconds`` (process start to the end of the first
training step).

Modalities measured here: ``timeseries`` (random-walk series; ``timeseries.arrays`` .npz
against ``timeseries.memmap``), ``image`` (CIFAR-10 JPEGs replicated; the image folder in
memory against streamed) when ``../shared/data/cifar10`` is present, and ``speech`` (FSDD
resampled to 16 kHz, pitch-shifted, gain-scaled and joined into 3.2 h at 1x, 51.2 h at
16x; SMALL wav2vec 2.0 on ``speech.audio_folder`` in memory against ``speech.manifest``)
when ``../shared/data/fsdd`` is present. The in-memory speech run stops at 4x: 16x would
hold 11.5 GB of float32 audio.

Usage::

    python benchmarks/data_scale.py --json benchmarks/results/data_scale.json
    python benchmarks/data_scale.py --quick          # 1x and 4x of a smaller base
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _report import Report, base_parser

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
QUIET = ["train.progress=false", "plots=false", "compare_random_init=false", "evaluate=[]", "logger=[]"]


def build_series(folder: Path, factor: int, base: int, length: int = 512) -> dict[str, Path]:
    """Random-walk series (two classes of opposite drift): ``.npz`` for memory, ``.npy`` files for the memory map."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(factor)
    n = base * factor
    x = np.empty((n, length, 1), dtype=np.float32)
    for start in range(0, n, 4096):  # chunked so that building 16x does not itself need 16x of memory twice
        stop = min(n, start + 4096)
        steps = rng.standard_normal((stop - start, length, 1)).astype(np.float32)
        steps += np.where(np.arange(start, stop) % 2 == 0, 0.05, -0.05)[:, None, None].astype(np.float32)
        x[start:stop] = np.cumsum(steps, axis=1)
    y = np.arange(n) % 2
    test_x, test_y = x[:64], y[:64]
    np.save(folder / "x_train.npy", x)
    np.save(folder / "y_train.npy", y)
    np.save(folder / "x_test.npy", test_x)
    np.save(folder / "y_test.npy", test_y)
    npz = folder / "series.npz"
    np.savez(npz, x_train=x, y_train=y, x_test=test_x, y_test=test_y)
    return {"in_memory": npz, "streaming": folder}


def series_run(paths: dict[str, Path], impl: str, steps: int) -> tuple[str, dict[str, Any], list[str]]:
    data = (
        {"name": "timeseries.arrays", "path": str(paths["in_memory"])}
        if impl == "in_memory"
        else {"name": "timeseries.memmap", "root": str(paths["streaming"])}
    )
    overrides = [f"train.steps={steps}", "train.batch_size=16", f"train.num_workers={2 if impl == 'streaming' else 0}"]
    return "timeseries.ts2vec", {"data": data}, overrides


def build_images(folder: Path, factor: int, base: int) -> dict[str, Path]:
    """The CIFAR-10 train JPEGs, ``base`` per class, replicated ``factor`` times (hard links: the same bytes)."""
    source = SHARED / "cifar10" / "train"
    for cls in sorted(p for p in source.iterdir() if p.is_dir()):
        files = sorted(cls.glob("*.jpg"))[:base]
        for split, copies in (("train", factor), ("test", 1)):
            target = folder / split / cls.name
            target.mkdir(parents=True, exist_ok=True)
            for copy in range(copies if split == "train" else 1):
                for f in files[: base if split == "train" else 4]:
                    link = target / f"{copy}-{f.name}"
                    if not link.exists():
                        link.hardlink_to(f)
    return {"in_memory": folder, "streaming": folder}


def image_run(paths: dict[str, Path], impl: str, steps: int) -> tuple[str, dict[str, Any], list[str]]:
    data = {"name": "vision.image_folder", "root": str(paths[impl]), "stream": impl == "streaming"}
    overrides = [
        f"train.steps={steps}", "train.batch_size=64", f"train.num_workers={2 if impl == 'streaming' else 0}",
        "encoder.depth=2",
    ]  # fmt: skip
    return "vision.mae", {"data": data}, overrides


def _stretch(wave: np.ndarray, ratio: float) -> np.ndarray:
    """``wave`` resampled to ``ratio`` times its length (linear interpolation)."""
    length = max(2, round(len(wave) * ratio))
    return np.interp(np.linspace(0, len(wave) - 1, length), np.arange(len(wave)), wave).astype(np.float32)


def build_speech(folder: Path, factor: int, base_seconds: int) -> dict[str, Path]:
    """``factor * base_seconds`` of 16 kHz audio made from FSDD: each file joins 1-3 recordings of one digit.

    Every recording is resampled from 8 kHz, pitch-shifted (resampled by 0.9-1.1, which
    also changes its tempo) and scaled by a random gain; files are distinct at every
    factor (no hard links), so the page cache cannot hold a 16x corpus for free. Also
    writes the manifest that ``speech.manifest`` reads (``ssl speech-manifest``).
    """
    import soundfile

    from ssl_speech import write_manifest

    source = sorted((SHARED / "fsdd" / "recordings").glob("*.wav"))
    recordings = [(int(p.name.split("_")[0]), soundfile.read(p, dtype="float32")[0]) for p in source]
    by_digit = {d: [w for digit, w in recordings if digit == d] for d in range(10)}
    rng = np.random.default_rng(factor)
    audio, total, number = folder / "audio", 0.0, 0
    while total < factor * base_seconds:
        digit = int(rng.integers(10))
        parts = []
        for _ in range(int(rng.integers(1, 4))):
            wave = by_digit[digit][int(rng.integers(len(by_digit[digit])))]
            wave = _stretch(wave, 2.0 / rng.uniform(0.9, 1.1)) * rng.uniform(0.3, 1.5)
            parts += [wave, np.zeros(int(rng.integers(800, 2400)), dtype=np.float32)]
        clip = np.clip(np.concatenate(parts), -1.0, 1.0)
        target = audio / str(digit) / f"{number:07d}.wav"
        target.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(target, clip, 16000, subtype="PCM_16")
        total, number = total + len(clip) / 16000, number + 1
    write_manifest(audio, folder / "manifest", layout="folder", valid_fraction=0.1, progress=False)
    print(f"{folder.name}: {number} files, {total / 3600:.2f} h of audio")
    return {"in_memory": audio, "streaming": folder / "manifest"}


def speech_run(paths: dict[str, Path], impl: str, steps: int) -> tuple[str, dict[str, Any], list[str]]:
    data = (
        {"name": "speech.audio_folder", "root": str(paths["in_memory"]), "progress": False}
        if impl == "in_memory"
        else {"name": "speech.manifest", "root": str(paths["streaming"])}
    )  # whole files on both paths (no crop), padded to the longest in the batch: the same work per step
    overrides = [
        f"train.steps={steps}", "train.batch_size=8", f"train.num_workers={2 if impl == 'streaming' else 0}",
        "train.precision=fp32",
    ]  # fmt: skip
    return "speech.wav2vec2", {"data": data}, overrides


MODALITIES: dict[str, tuple[Callable[..., dict[str, Path]], Callable[..., Any], int, int]] = {
    # name: (build corpus, run config, base size, quick base size)
    "timeseries": (build_series, series_run, 32768, 512),
    "image": (build_images, image_run, 100, 20),
    "speech": (build_speech, speech_run, 11_520, 600),  # seconds of audio: 3.2 h at 1x, 51.2 h at 16x
}
IN_MEMORY_LIMIT: dict[str, int] = {"speech": 4}
"""The largest factor at which the in-memory path is run (16x speech would hold 11.5 GB of float32 audio)."""

WORKER = """
import json, sys, time
started = time.perf_counter()
import torch
torch.set_num_threads(1)
import ssl_core

spec = json.loads(sys.argv[1])
first = {}

class FirstStep:
    @ssl_core.hookimpl
    def ssl_on_step_end(self, step):
        if step == 1:
            first["seconds"] = time.perf_counter() - started

hooks = ssl_core.make_plugin_manager(load_entry_points=False)
hooks.register(FirstStep())
table = ", ".join(f"{k} = {json.dumps(v)}" for k, v in spec["data"].items())
overrides = [*spec["overrides"], "data={" + table + "}"]
result = ssl_core.run(spec["recipe"], overrides=overrides, hooks=hooks, out=None)
print("RESULT " + json.dumps({"samples_per_second": result.metrics["train"]["samples_per_second"],
                              "startup_seconds": first["seconds"]}))
"""


def measure(recipe: str, data: dict[str, Any], overrides: list[str]) -> dict[str, float]:
    """Run one pretraining in a child process; its peak RSS (process tree), throughput and startup time."""
    import psutil

    spec = json.dumps({"recipe": recipe, "data": data, "overrides": [*QUIET, *overrides]})
    child = subprocess.Popen([sys.executable, "-c", WORKER, spec], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tree, peak, peak_pss = psutil.Process(child.pid), 0, 0
    while child.poll() is None:
        try:
            processes = [tree, *tree.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in processes))
            peak_pss = max(peak_pss, sum(p.memory_full_info().pss for p in processes))  # shared pages counted once
        except psutil.Error:
            pass
        time.sleep(0.05)
    out, err = child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"{recipe} failed: {err.decode()[-2000:]}")
    line = next(x for x in out.decode().splitlines() if x.startswith("RESULT "))
    return {"peak_rss_mb": peak / 2**20, "peak_pss_mb": peak_pss / 2**20, **json.loads(line[len("RESULT ") :])}


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--modality", action="append", choices=list(MODALITIES), help="default: every available")
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (default 40, quick 10)")
    args = parser.parse_args()
    factors = (1, 4) if args.quick else (1, 4, 16)
    steps = args.steps or (10 if args.quick else 40)
    needs = {"image": SHARED / "cifar10", "speech": SHARED / "fsdd" / "recordings"}
    available = [m for m in MODALITIES if m not in needs or needs[m].is_dir()]
    for missing in sorted(set(MODALITIES) - set(available)):
        print(f"skipping {missing}: {needs[missing]} is absent")
    chosen = args.modality or available
    report = Report("data_scale")
    with tempfile.TemporaryDirectory(prefix="ssl-data-scale-") as scratch:
        for modality in chosen:
            build, configure, base, quick_base = MODALITIES[modality]
            for factor in factors:
                folder = Path(scratch) / f"{modality}-{factor}x"
                paths = build(folder, factor, quick_base if args.quick else base)
                for impl in ("in_memory", "streaming"):
                    if impl == "in_memory" and factor > IN_MEMORY_LIMIT.get(modality, factor):
                        print(f"{modality}-{factor}x in_memory: not run (would not fit in this machine's memory)")
                        continue
                    recipe, data, overrides = configure(paths, impl, steps)
                    values = measure(recipe, data["data"], overrides)
                    for metric, value in values.items():
                        report.add(impl=impl, case=f"{modality}-{factor}x", metric=metric, value=value, seed=0)
                    print(f"{modality}-{factor}x {impl:<9} " + "  ".join(f"{k} {v:.1f}" for k, v in values.items()))
                shutil.rmtree(folder, ignore_errors=True)  # one corpus on disk at a time (16x speech is 5.9 GB)
    print(report.table())
    report.write(args.json)


if __name__ == "__main__":
    main()
