"""wav2vec 2.0 / HuBERT pretraining step throughput: ours vs HF transformers and torchaudio, same run.

One full training step (masking, negatives, forward, loss, backward, AdamW) on the SMALL
configuration (hidden 256, 4 layers, 4 heads, FFN 1024, 512-channel CNN), batch 8 x 1 s
of 16 kHz audio, in fp32, steps interleaved so load changes hit every implementation
alike:

* ``hf-transformers``: ``Wav2Vec2ForPreTraining`` (``feat_extract_norm = "layer"``, as
  ours) with its own mask (``_compute_mask_indices``) and negative sampler
  (``_sample_negative_indices``), both numpy, inside the timed step as in HF's
  pretraining example;
* ``torchaudio``: ``torchaudio.models.hubert_pretrain_model`` (``layer_norm`` extractor,
  no unmasked logits), cross-entropy on its masked logits + 10 x its feature penalty;
* ``ours``: ``speech.wav2vec2`` encoder with the ``speech.wav2vec2`` / ``speech.hubert``
  objective and ``speech.span_mask`` views; ``ours-fbank`` the same with the log-mel
  front-end; ``ours-bf16`` / ``ours-fbank-bf16`` under bf16 autocast (reported apart: the
  peers run fp32).

Rows: ``samples_per_s`` per timed step for every (impl, case); cases ``wav2vec2`` and
``hubert``. The input is Gaussian noise (the cost of a step does not depend on the audio).

Usage::

    python benchmarks/speech_throughput.py --json benchmarks/results/speech_throughput.json
    python benchmarks/speech_throughput.py --quick          # 3 timed steps per implementation
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import Report, base_parser

SMALL = {"hidden": 256, "layers": 4, "heads": 4, "ffn": 1024}
SAMPLE_RATE = 16000
NUM_CLUSTERS = 100


def _adamw(params: Any) -> Any:
    import torch

    return torch.optim.AdamW(list(params), lr=1e-4, weight_decay=0.01)


Frontend = Literal["waveform", "fbank"]


def ours_step(case: str, frontend: Frontend, bf16: bool, batch_size: int, seconds: float) -> Callable[[], None]:
    """A closure running one step of our pipeline (views -> objective -> backward -> AdamW)."""
    import torch

    from ssl_speech import HuBERTObjective, SpanMaskViews, Wav2Vec2Encoder, Wav2Vec2Objective

    torch.manual_seed(0)
    encoder = Wav2Vec2Encoder(preset="small", frontend=frontend)
    objective: torch.nn.Module
    if case == "wav2vec2":
        views = SpanMaskViews(mask_prob=0.65, mask_length=10)
        objective = Wav2Vec2Objective(embed_dim=encoder.embed_dim)
    else:
        views = SpanMaskViews(mask_prob=0.8, mask_length=10)
        objective = HuBERTObjective(embed_dim=encoder.embed_dim, num_clusters=NUM_CLUSTERS)
    optimizer = _adamw([*encoder.parameters(), *objective.parameters()])
    samples = int(seconds * SAMPLE_RATE)
    batch: dict[str, Any] = {"x": torch.randn(batch_size, samples)}
    if case == "hubert":
        frames = int(encoder.frontend.frames(torch.tensor([samples]))[0])
        batch["targets"] = torch.randint(0, NUM_CLUSTERS, (batch_size, frames))
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = objective(encoder, views(batch, generator))["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def hf_step(batch_size: int, seconds: float) -> Callable[[], None]:
    """One step of HF ``Wav2Vec2ForPreTraining`` as in HF's pretraining example (numpy mask + negatives)."""
    import numpy as np
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2ForPreTraining
    from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices

    torch.manual_seed(0)
    config = Wav2Vec2Config(
        hidden_size=SMALL["hidden"],
        num_hidden_layers=SMALL["layers"],
        num_attention_heads=SMALL["heads"],
        intermediate_size=SMALL["ffn"],
        feat_extract_norm="layer",
        conv_bias=False,
        do_stable_layer_norm=False,
        num_codevector_groups=2,
        num_codevectors_per_group=320,
        codevector_dim=256,
        proj_codevector_dim=256,
        num_negatives=100,
        mask_time_prob=0.65,
        mask_time_length=10,
        hidden_dropout=0.1,
        attention_dropout=0.1,
        activation_dropout=0.0,
        feat_proj_dropout=0.1,
        feat_quantizer_dropout=0.0,
        layerdrop=0.0,
        diversity_loss_weight=0.1,
    )
    model = Wav2Vec2ForPreTraining(config).train()
    optimizer = _adamw(model.parameters())
    samples = int(seconds * SAMPLE_RATE)
    x = torch.randn(batch_size, samples)
    frames = int(model._get_feat_extract_output_lengths(samples))
    rng_state = np.random.get_state()
    np.random.seed(0)

    def step() -> None:
        mask = _compute_mask_indices((batch_size, frames), mask_prob=0.65, mask_length=10, min_masks=2)
        negatives = _sample_negative_indices((batch_size, frames), 100, mask_time_indices=mask)
        out = model(
            x,
            mask_time_indices=torch.from_numpy(mask),
            sampled_negative_indices=torch.from_numpy(negatives),
        )
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()

    np.random.set_state(rng_state)
    return step


def torchaudio_hubert_step(batch_size: int, seconds: float) -> Callable[[], None]:
    """One step of ``torchaudio.models.hubert_pretrain_model`` (masked-only cross-entropy + feature penalty)."""
    import torch
    import torch.nn.functional as F
    from torchaudio.models import hubert_pretrain_model

    from ssl_speech._encoders import CONV_LAYERS

    torch.manual_seed(0)
    model = hubert_pretrain_model(
        extractor_mode="layer_norm",
        extractor_conv_layer_config=CONV_LAYERS,
        extractor_conv_bias=False,
        encoder_embed_dim=SMALL["hidden"],
        encoder_projection_dropout=0.1,
        encoder_pos_conv_kernel=128,
        encoder_pos_conv_groups=16,
        encoder_num_layers=SMALL["layers"],
        encoder_num_heads=SMALL["heads"],
        encoder_attention_dropout=0.1,
        encoder_ff_interm_features=SMALL["ffn"],
        encoder_ff_interm_dropout=0.0,
        encoder_dropout=0.1,
        encoder_layer_norm_first=False,
        encoder_layer_drop=0.0,
        mask_prob=0.8,
        mask_selection="static",
        mask_other=0.0,
        mask_length=10,
        no_mask_overlap=False,
        mask_min_space=1,
        mask_channel_prob=0.0,
        mask_channel_selection="static",
        mask_channel_other=0.0,
        mask_channel_length=10,
        no_mask_channel_overlap=False,
        mask_channel_min_space=1,
        skip_masked=False,
        skip_nomask=True,
        num_classes=NUM_CLUSTERS,
        final_dim=256,
        feature_grad_mult=0.1,
    ).train()
    optimizer = _adamw(model.parameters())
    samples = int(seconds * SAMPLE_RATE)
    x = torch.randn(batch_size, samples)
    frames = (samples - 400) // 320 + 1
    labels = torch.randint(0, NUM_CLUSTERS, (batch_size, frames))

    def step() -> None:
        logit_m, _, penalty = model(x, labels)
        loss = F.cross_entropy(logit_m, torch.zeros(len(logit_m), dtype=torch.long)) + 10.0 * penalty
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


Steps = dict[tuple[str, str], Callable[[], None]]


def measure(steps: Steps, repeats: int, warmup: int) -> dict[tuple[str, str], list[float]]:
    """Seconds per step for every implementation, interleaved after ``warmup`` untimed steps each."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[tuple[str, str], list[float]] = {key: [] for key in steps}
    for _ in range(repeats):
        for key, step in steps.items():
            started = time.perf_counter()
            step()
            times[key].append(time.perf_counter() - started)
    return times


PAIRS = [
    ("wav2vec2", "ours", "hf-transformers"),
    ("wav2vec2", "ours-bf16", "hf-transformers"),
    ("wav2vec2", "ours-fbank", "ours"),
    ("wav2vec2", "ours-fbank-bf16", "hf-transformers"),
    ("hubert", "ours", "torchaudio"),
    ("hubert", "ours-bf16", "torchaudio"),
    ("hubert", "ours-fbank", "ours"),
    ("hubert", "ours-fbank-bf16", "torchaudio"),
]


def summary(report: Report) -> str:
    """Median samples/s per implementation and the speed-up ratios the issue asks for."""
    lines = [f"{'case':<10} {'impl':<18} {'median samples/s':>17}"]
    cases = sorted({(r["case"], r["impl"]) for r in report.rows})
    for case, impl in cases:
        lines.append(f"{case:<10} {impl:<18} {report.median(impl, case, 'samples_per_s'):>17.2f}")
    lines.append("")
    lines.append(f"{'case':<10} {'ratio':<36} {'x':>6}")
    for case, impl, peer in PAIRS:
        if report.values(impl, case, "samples_per_s") and report.values(peer, case, "samples_per_s"):
            ratio = report.median(impl, case, "samples_per_s") / report.median(peer, case, "samples_per_s")
            lines.append(f"{case:<10} {impl + ' / ' + peer:<36} {ratio:>6.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=1.0, help="clip length (s)")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per implementation (default 15)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--cases", nargs="+", default=["wav2vec2", "hubert"], choices=["wav2vec2", "hubert"])
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 15)
    warmup = 1 if args.quick else 3
    report = Report("speech_throughput")
    report.extra["protocol"] = {
        "config": {**SMALL, "batch_size": args.batch_size, "seconds": args.seconds, "sample_rate": SAMPLE_RATE},
        "step": "views/mask + negatives, forward, loss, backward, AdamW",
        "threads": args.threads,
        "repeats": repeats,
        "warmup": warmup,
    }
    for case in args.cases:
        steps: Steps = {}
        if case == "wav2vec2":
            steps[(case, "hf-transformers")] = hf_step(args.batch_size, args.seconds)
        else:
            steps[(case, "torchaudio")] = torchaudio_hubert_step(args.batch_size, args.seconds)
        variants: list[tuple[str, Frontend, bool]] = [
            ("ours", "waveform", False),
            ("ours-bf16", "waveform", True),
            ("ours-fbank", "fbank", False),
            ("ours-fbank-bf16", "fbank", True),
        ]
        for impl, frontend, bf16 in variants:
            steps[(case, impl)] = ours_step(case, frontend, bf16, args.batch_size, args.seconds)
        for (case_, impl), vals in measure(steps, repeats, warmup).items():
            for i, seconds in enumerate(vals):
                report.add(impl=impl, case=case_, metric="samples_per_s", value=args.batch_size / seconds, seed=i)
        report.write(args.json)
    print(summary(report))
    report.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
