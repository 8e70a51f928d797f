"""View generators: span masking for wav2vec 2.0 / HuBERT, random crops for DINO-style objectives.

``SpanMaskViews``: span-mask settings and a seed drawn for this batch.

The mask is over encoder frames, whose number depends on the encoder's front-end, so the
objective draws it (with :func:`ssl_speech.functional.span_mask`), and its negatives and
Gumbel noise, from a generator seeded with the ``span_seed`` this view draws from the
pipeline's generator: runs are reproducible and resume exactly.

Example:
    >>> import torch
    >>> v = SpanMaskViews()({"x": torch.zeros(2, 16000)}, torch.Generator())
    >>> v.extras["mask_prob"], v.extras["mask_length"], v.batches[0]["span_seed"].dtype
    (0.65, 10, torch.int64)
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ssl_core import Views

__all__ = ["AudioMultiCropViews", "SpanMaskViews"]


class SpanMaskViews:
    """wav2vec 2.0 / HuBERT masking settings (``mask_prob`` of frames as span starts, ``mask_length`` frames each).

    Defaults are wav2vec 2.0's (0.65, 10); HuBERT uses ``mask_prob = 0.8``.

    Example:
        >>> SpanMaskViews(mask_prob=0.0)
        Traceback (most recent call last):
        ...
        ValueError: mask_prob must be in (0, 1], got 0.0
    """

    modality: ClassVar[str] = "audio"
    num_views: ClassVar[int] = 1

    def __init__(self, mask_prob: float = 0.65, mask_length: int = 10, min_masks: int = 2) -> None:
        if not 0.0 < mask_prob <= 1.0:
            raise ValueError(f"mask_prob must be in (0, 1], got {mask_prob}")
        if mask_length < 1:
            raise ValueError(f"mask_length must be at least 1, got {mask_length}")
        self.mask_prob, self.mask_length, self.min_masks = mask_prob, mask_length, min_masks

    def __call__(self, batch: dict[str, Any], generator: torch.Generator) -> Views:
        if not isinstance(batch.get("x"), torch.Tensor):
            raise ValueError("SpanMaskViews needs an audio batch with waveforms under 'x'")
        seed = torch.randint(0, 2**62, (), generator=generator, device=generator.device)
        return Views(
            batches=[{**batch, "span_seed": seed}],
            extras={
                "mask_prob": self.mask_prob,
                "mask_length": self.mask_length,
                "min_masks": self.min_masks,
            },
        )


class AudioMultiCropViews:
    """Random crops of each utterance, with gain and noise: DINO's global/local views for audio.

    Each view is a batch of ``num_global`` crops of ``global_seconds`` (first), then
    ``num_local`` crops of ``local_seconds``, cut at a random offset inside each
    utterance's real samples. Shorter utterances are kept whole and zero-padded, with
    ``lengths`` telling the encoder where they end. Each crop then gets a random gain
    (uniform in ``+-gain_db``) and, with probability ``noise_prob``, white noise at a
    random signal-to-noise ratio in ``snr_db``. Everything runs batched on the batch's
    device and draws from the pipeline's generator (reproducible, exact resume).
    The speaker-verification DINO recipes (Han et al., 2022; Chen et al., 2023) crop
    2-4 s segments of long recordings; FSDD's utterances are 0.14-2.3 s (median 0.42 s),
    hence the shorter defaults.

    Example:
        >>> import torch
        >>> views = AudioMultiCropViews(global_seconds=0.25, local_seconds=0.1)
        >>> v = views({"x": torch.randn(3, 8000), "lengths": torch.tensor([8000, 2000, 6000])}, torch.Generator())
        >>> len(v), v.extras["num_global"], v.batches[0]["x"].shape, v.batches[-1]["x"].shape
        (6, 2, torch.Size([3, 4000]), torch.Size([3, 1600]))
        >>> v.batches[0]["lengths"].tolist()
        [4000, 2000, 4000]
    """

    modality: ClassVar[str] = "audio"

    def __init__(
        self,
        num_global: int = 2,
        num_local: int = 4,
        global_seconds: float = 0.4,
        local_seconds: float = 0.2,
        sample_rate: int = 16000,
        gain_db: float = 6.0,
        noise_prob: float = 0.5,
        snr_db: tuple[float, float] = (5.0, 20.0),
    ) -> None:
        if num_global < 1 or num_local < 0:
            raise ValueError(f"need num_global >= 1 and num_local >= 0, got {num_global} and {num_local}")
        if not 0 < local_seconds <= global_seconds:
            raise ValueError(f"need 0 < local_seconds <= global_seconds, got {local_seconds} and {global_seconds}")
        if not 0.0 <= noise_prob <= 1.0:
            raise ValueError(f"noise_prob must be in [0, 1], got {noise_prob}")
        self.num_global, self.num_local, self.num_views = num_global, num_local, num_global + num_local
        self.global_samples = round(global_seconds * sample_rate)
        self.local_samples = round(local_seconds * sample_rate)
        self.gain_db, self.noise_prob, self.snr_db = gain_db, noise_prob, (float(snr_db[0]), float(snr_db[1]))

    def _crop(self, x: torch.Tensor, lengths: torch.Tensor, size: int, generator: torch.Generator) -> dict[str, Any]:
        b, device = x.shape[0], x.device
        uniform = torch.rand((b, 4), generator=generator, device=generator.device).to(device)
        room = (lengths - size).clamp_min(0)
        start = (uniform[:, 0] * (room + 1)).long().clamp_max(room)
        positions = torch.arange(size, device=device)
        kept = torch.minimum(lengths, torch.full_like(lengths, size))
        valid = positions.unsqueeze(0) < kept.unsqueeze(1)
        index = (start.unsqueeze(1) + positions).clamp_max(x.shape[1] - 1)
        crop = x.gather(1, index) * valid
        gain = 10.0 ** ((uniform[:, 1] * 2.0 - 1.0) * self.gain_db / 20.0)
        crop = crop * gain.unsqueeze(1)
        if self.noise_prob > 0:
            noise = torch.randn(crop.shape, generator=generator, device=generator.device).to(device)
            power = (crop.square().sum(1) / kept.clamp_min(1)).clamp_min(1e-10)
            low, high = self.snr_db
            snr = low + uniform[:, 2] * (high - low)
            scale = (power / 10.0 ** (snr / 10.0)).sqrt() * (uniform[:, 3] < self.noise_prob)
            crop = crop + noise * scale.unsqueeze(1) * valid
        return {"x": crop, "lengths": kept}

    def __call__(self, batch: dict[str, Any], generator: torch.Generator) -> Views:
        x = batch.get("x")
        if not isinstance(x, torch.Tensor) or x.ndim != 2:
            raise ValueError("AudioMultiCropViews needs an audio batch: waveforms [batch, samples] under 'x'")
        lengths = batch.get("lengths")
        if not isinstance(lengths, torch.Tensor):
            lengths = torch.full((x.shape[0],), x.shape[1], device=x.device)
        lengths = lengths.to(x.device).long()
        sizes = [self.global_samples] * self.num_global + [self.local_samples] * self.num_local
        return Views(
            batches=[{**batch, **self._crop(x, lengths, size, generator)} for size in sizes],
            extras={"num_global": self.num_global},
        )
