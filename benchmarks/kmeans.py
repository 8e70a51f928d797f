"""ssl_core k-means versus scikit-learn ``MiniBatchKMeans`` as the HuBERT recipe configures it.

Data: 39-dim MFCC features (13 MFCCs + deltas + delta-deltas, computed like fairseq's
``examples/hubert/simple_kmeans/dump_mfcc_feature.py``: 16 kHz, Kaldi-compatible MFCC with 25 ms / 10 ms
frames (400 / 160 samples), 23 mel bins, no energy) of every frame of every Free Spoken Digit Dataset
recording. FSDD has fewer frames than the target, so the frames are tiled with a little Gaussian jitter
(the case name says ``tiled``). Without the data folder a synthetic Gaussian mixture is used instead
(case name ``synthetic``).

Both implementations get the same float32 points; inertia is evaluated for both by one function
(:func:`nearest_sq_distance_sum`, all points to their nearest centroid, float64). Seconds are wall time of
the fit, initialisation included.

Run:
    python benchmarks/kmeans.py --json benchmarks/results/kmeans.json
    python benchmarks/kmeans.py --quick
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from _report import Report, base_parser
from sklearn.cluster import MiniBatchKMeans

from ssl_core._kmeans import kmeans

DATA_DIR = Path("/work/shared/data/fsdd/recordings")
SAMPLE_RATE = 16_000
N_CLUSTERS = 100

# fairseq examples/hubert/simple_kmeans/learn_kmeans.py defaults.
SKLEARN_SETTINGS = dict(
    init="k-means++",
    max_iter=100,
    batch_size=10_000,
    tol=0.0,
    max_no_improvement=100,
    n_init=20,
    reassignment_ratio=0.0,
    init_size=None,
    compute_labels=False,
)
# What the HuBERT recipe calls ours with: the shipped defaults, spelled out.
OURS_SETTINGS = dict(metric="l2", n_init=1, max_iter=30, tol=1e-4, chunk_size=65536)


def mfcc39(wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """``[frames, 39]`` MFCC + delta + delta-delta of a mono waveform, resampled to 16 kHz."""
    import torchaudio

    if sample_rate != SAMPLE_RATE:
        wav = torchaudio.functional.resample(wav, sample_rate, SAMPLE_RATE)
    mfccs = torchaudio.compliance.kaldi.mfcc(wav.view(1, -1), sample_frequency=SAMPLE_RATE, use_energy=False).T
    deltas = torchaudio.functional.compute_deltas(mfccs)
    delta_deltas = torchaudio.functional.compute_deltas(deltas)
    return torch.cat([mfccs, deltas, delta_deltas]).T.contiguous()


def load_points(n_points: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """``n_points`` x 39 float32 points and the case name saying where they came from."""
    rng = np.random.default_rng(seed)
    size = f"{n_points // 1000}k"
    wavs = sorted(DATA_DIR.glob("*.wav")) if DATA_DIR.is_dir() else []
    if not wavs:
        centres = rng.normal(scale=5.0, size=(N_CLUSTERS, 39))
        points = centres[rng.integers(N_CLUSTERS, size=n_points)] + rng.normal(size=(n_points, 39))
        return points.astype(np.float32), f"synthetic-gmm39-{size}-k{N_CLUSTERS}"
    import soundfile

    frames = []
    with torch.no_grad():
        for path in wavs[:: 1 if n_points > 100_000 else 2]:  # --quick: every other file is plenty
            audio, sample_rate = soundfile.read(path, dtype="float32", always_2d=True)
            frames.append(mfcc39(torch.from_numpy(audio.mean(axis=1)), sample_rate))
    real = torch.cat(frames).numpy()
    n_real = len(real)
    if n_real >= n_points:
        return real[rng.permutation(n_real)[:n_points]], f"fsdd-mfcc39-{size}-k{N_CLUSTERS}"
    # Tile: the first copy is exact, later copies get jitter of 1% of each feature's standard deviation.
    copies = [real] + [
        real + rng.normal(scale=0.01, size=real.shape).astype(np.float32) * real.std(axis=0)
        for _ in range(n_points // n_real)
    ]
    points = np.concatenate(copies)[:n_points]
    return points, f"fsdd-mfcc39-{n_real // 1000}k-tiled-{size}-k{N_CLUSTERS}"


def nearest_sq_distance_sum(points: np.ndarray, centroids: np.ndarray) -> float:
    """Sum over all points of the squared L2 distance to the nearest centroid (float64, exact differences)."""
    x = torch.from_numpy(points).double()
    c = torch.from_numpy(np.asarray(centroids)).double()
    total = 0.0
    for chunk in x.split(8192):
        total += float(torch.cdist(chunk, c).square().min(dim=1).values.sum())
    return total


def run_ours(points: np.ndarray, seed: int) -> tuple[float, np.ndarray]:
    x = torch.from_numpy(points)
    start = time.perf_counter()
    result = kmeans(x, N_CLUSTERS, seed=seed, **OURS_SETTINGS)
    return time.perf_counter() - start, result.centroids.numpy()


def run_sklearn(points: np.ndarray, seed: int) -> tuple[float, np.ndarray]:
    model = MiniBatchKMeans(n_clusters=N_CLUSTERS, random_state=seed, **SKLEARN_SETTINGS)
    start = time.perf_counter()
    model.fit(points)
    return time.perf_counter() - start, model.cluster_centers_


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    n_points, seeds = (50_000, [0]) if args.quick else (200_000, [0, 1, 2])
    points, case = load_points(n_points)
    print(f"case {case}: {points.shape[0]} x {points.shape[1]} points, torch threads {torch.get_num_threads()}")

    report = Report("kmeans", extra={"settings": {"ours": OURS_SETTINGS, "sklearn-minibatch": SKLEARN_SETTINGS}})
    for seed in seeds:
        for impl, fit in (("ours", run_ours), ("sklearn-minibatch", run_sklearn)):
            seconds, centroids = fit(points, seed)
            inertia = nearest_sq_distance_sum(points, centroids)
            report.add(impl=impl, case=case, metric="seconds", value=seconds, seed=seed)
            report.add(impl=impl, case=case, metric="inertia", value=inertia, seed=seed)
            print(f"seed {seed} {impl:<18} {seconds:8.2f} s  inertia {inertia:.6g}")

    print(report.table())
    for seed in seeds:
        ours_s, sk_s = (report.values(i, case, "seconds")[seeds.index(seed)] for i in ("ours", "sklearn-minibatch"))
        ours_i, sk_i = (report.values(i, case, "inertia")[seeds.index(seed)] for i in ("ours", "sklearn-minibatch"))
        print(f"seed {seed}: speed-up {sk_s / ours_s:.2f}x, inertia ratio {ours_i / sk_i - 1:+.4%}")
    speedup = report.median("sklearn-minibatch", case, "seconds") / report.median("ours", case, "seconds")
    inertia_ratio = report.median("ours", case, "inertia") / report.median("sklearn-minibatch", case, "inertia") - 1
    print(f"median: speed-up {speedup:.2f}x, inertia ratio {inertia_ratio:+.4%}")
    report.write(args.json)


if __name__ == "__main__":
    main()
