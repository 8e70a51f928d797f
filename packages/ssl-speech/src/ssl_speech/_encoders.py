"""The wav2vec 2.0 / HuBERT encoder, assembled from torchaudio's components.

``Wav2Vec2Encoder`` = front-end (torchaudio's 7-layer waveform CNN, or a log-mel
filterbank with a convolutional subsampler, the Fast-HuBERT idea) -> feature projection
-> optional ``[MASK]`` embedding on masked frames -> convolutional positional embedding
-> transformer. It returns every transformer layer for layer-weighted probes.

Example:
    >>> import torch
    >>> enc = Wav2Vec2Encoder(preset="tiny")
    >>> out = enc({"x": torch.randn(2, 16000), "lengths": torch.tensor([16000, 8000])})
    >>> out.tokens.shape, len(out.layers), out.padding_mask[1].sum().item()
    (torch.Size([2, 49, 64]), 2, 25)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from ssl_core import Features
from ssl_core.functional import masked_mean

__all__ = [
    "PRESETS",
    "FbankFrontend",
    "FramesFrontend",
    "MFCCEncoder",
    "Wav2Vec2Config",
    "Wav2Vec2Encoder",
    "WaveformFrontend",
]

CONV_LAYERS: list[tuple[int, int, int]] = [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
"""wav2vec 2.0's feature encoder: (channels, kernel, stride) per layer; 20 ms frames at 16 kHz."""


@dataclass(frozen=True)
class Wav2Vec2Config:
    """Transformer sizes of a preset."""

    embed_dim: int
    num_layers: int
    num_heads: int
    ffn_dim: int
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16


PRESETS: dict[str, Wav2Vec2Config] = {
    "base": Wav2Vec2Config(embed_dim=768, num_layers=12, num_heads=12, ffn_dim=3072),
    "small": Wav2Vec2Config(embed_dim=256, num_layers=4, num_heads=4, ffn_dim=1024),
    "tiny": Wav2Vec2Config(embed_dim=64, num_layers=2, num_heads=2, ffn_dim=128, pos_conv_kernel=16, pos_conv_groups=4),
}
"""``base`` is wav2vec 2.0 / HuBERT BASE (12 x 768); ``small`` the CPU configuration of the
benchmarks (4 x 256, FFN 1024); ``tiny`` is for tests."""


class WaveformFrontend(nn.Module):
    """torchaudio's wav2vec 2.0 CNN: ``[B, T] -> [B, F, 512]``.

    ``norm_mode = "layer_norm"`` (wav2vec 2.0 LARGE's, per frame) makes an utterance's
    features independent of the padding it is batched with; ``"group_norm"`` (BASE's, one
    norm in the first layer over all time steps, padding included) does not.

    ``row_layout`` (default: on CPU in ``layer_norm`` mode) computes the same function with
    the strided-matmul path of :mod:`ssl_speech._fast_cnn` (2.3-2.5x faster forward +
    backward on CPU than torchaudio's ``Conv1d`` path, same parameters and outputs).

    Example:
        >>> WaveformFrontend().frames(torch.tensor([16000])).tolist()
        [49]
    """

    out_dim: int = 512
    receptive_field: int = 400

    def __init__(
        self, norm_mode: Literal["group_norm", "layer_norm"] = "layer_norm", row_layout: bool | None = None
    ) -> None:
        super().__init__()
        from torchaudio.models.wav2vec2.components import _get_feature_extractor

        if row_layout and norm_mode != "layer_norm":
            raise ValueError("row_layout needs norm_mode='layer_norm' (group_norm normalises over time)")
        self.cnn = _get_feature_extractor(norm_mode, CONV_LAYERS, False)
        self.norm_mode, self.row_layout = norm_mode, row_layout

    def frames(self, lengths: Tensor) -> Tensor:
        """Output frames for input ``lengths`` samples."""
        for _, kernel, stride in CONV_LAYERS:
            lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
        return lengths.clamp(min=0)

    def uses_row_layout(self, device: torch.device) -> bool:
        """Whether the forward on ``device`` takes the strided-matmul path (else torchaudio's ``Conv1d``)."""
        if self.row_layout is None:
            return device.type == "cpu" and self.norm_mode == "layer_norm"
        return self.row_layout

    def forward(self, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if self.uses_row_layout(x.device):
            from ._fast_cnn import row_cnn

            return row_cnn(self.cnn, x), None if lengths is None else self.frames(lengths)
        features, out_lengths = self.cnn(x, lengths)
        return features, out_lengths


class FbankFrontend(nn.Module):
    """Log-mel filterbank (80 bins, 25 ms window, 10 ms hop) + a stride-2 conv subsampler: 20 ms frames.

    Much cheaper than the waveform CNN (the Fast-HuBERT idea); same frame rate, so the
    rest of the model and the objectives are unchanged.

    Example:
        >>> FbankFrontend().frames(torch.tensor([16000])).tolist()
        [51]
    """

    out_dim: int = 512
    receptive_field: int = 400

    def __init__(self, sample_rate: int = 16000, n_mels: int = 80) -> None:
        super().__init__()
        import torchaudio

        self.hop = sample_rate // 100
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=int(0.025 * sample_rate), hop_length=self.hop, n_mels=n_mels
        )
        self.subsample = nn.Sequential(
            nn.Conv1d(n_mels, self.out_dim, kernel_size=3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv1d(self.out_dim, self.out_dim, kernel_size=3, stride=1, padding=1),
            nn.GELU(),
        )

    def frames(self, lengths: Tensor) -> Tensor:
        """Output frames for input ``lengths`` samples (centred STFT, then stride 2)."""
        mel_frames = torch.div(lengths, self.hop, rounding_mode="floor") + 1
        return torch.div(mel_frames - 1, 2, rounding_mode="floor") + 1

    def forward(self, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None]:
        with torch.autocast(x.device.type, enabled=False):  # the FFT runs in float32
            spec = torch.log(self.mel(x.float()) + 1e-6)  # [B, n_mels, frames]
        features = self.subsample(spec).transpose(1, 2)
        return features, None if lengths is None else self.frames(lengths)


class FramesFrontend(nn.Module):
    """Feature frames ``[B, T, C]`` -> ``[B, T, 512]`` by a width-3 convolution and GELU, at the input's rate.

    For inputs that are already frames: filterbanks computed elsewhere, or any multivariate
    sequence such as a time series (``C`` channels per step). A learned layer rather than
    the identity, because the transformer's feature projection starts with a LayerNorm over
    the channels, which would zero a single-channel input.

    Example:
        >>> FramesFrontend(3)(torch.randn(2, 50, 3), None)[0].shape
        torch.Size([2, 50, 512])
    """

    out_dim: int = 512
    receptive_field: int = 1

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be at least 1, got {in_channels}")
        self.conv = nn.Conv1d(in_channels, self.out_dim, kernel_size=3, padding=1)

    def frames(self, lengths: Tensor) -> Tensor:
        """One output frame per input frame."""
        return lengths

    def forward(self, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None]:
        return nn.functional.gelu(self.conv(x.transpose(1, 2))).transpose(1, 2), lengths


class Wav2Vec2Encoder(nn.Module):
    """wav2vec 2.0 / HuBERT's encoder from torchaudio components, for any audio batch.

    Args:
        preset: ``base``, ``small`` or ``tiny`` (:data:`PRESETS`); the keyword arguments
            below override single sizes.
        frontend: ``waveform`` (the 7-layer CNN), ``fbank`` (log-mel + conv subsampler) or
            ``frames`` (input already in frames ``[B, T, in_channels]``: precomputed features or
            a time series; :class:`FramesFrontend`; the encoder then takes any modality).
        in_channels: channels per frame for ``frames`` (filled from the dataset).
        norm_mode: the CNN's normalisation: ``layer_norm`` (default; padding-invariant) or
            ``group_norm`` (BASE's; features then depend on the batch's padding).
        row_layout: the CNN's strided-matmul CPU path (``None``: on CPU in ``layer_norm``
            mode; see :class:`WaveformFrontend`).
        sample_rate: input sample rate (filled from the dataset).
        dropout, attention_dropout, ffn_dropout, layer_drop: transformer regularisation
            (BASE pretraining uses 0.1, 0.1, 0.0, 0.05).

    The forward takes ``token_mask`` ``[B, F]`` (``True`` = masked frame): masked frames
    get the learnable ``mask_embedding`` after the feature projection, as wav2vec 2.0
    and HuBERT do. ``frontend_features(batch)`` returns the unmasked front-end output and
    frame padding mask, which wav2vec 2.0's quantiser reads.

    Example:
        >>> Wav2Vec2Encoder(preset="small").embed_dim
        256
    """

    modality: ClassVar[str] = "audio"
    supports_token_mask: ClassVar[bool] = True
    returns_tokens: ClassVar[bool] = True
    returns_layers: ClassVar[bool] = True

    def __init__(
        self,
        preset: Literal["base", "small", "tiny"] = "small",
        frontend: Literal["waveform", "fbank", "frames"] = "waveform",
        sample_rate: int = 16000,
        in_channels: int | None = None,
        norm_mode: Literal["group_norm", "layer_norm"] = "layer_norm",
        row_layout: bool | None = None,
        embed_dim: int | None = None,
        num_layers: int | None = None,
        num_heads: int | None = None,
        ffn_dim: int | None = None,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        ffn_dropout: float = 0.0,
        layer_drop: float = 0.0,
        feature_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        from torchaudio.models.wav2vec2.components import _get_encoder

        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
        cfg = PRESETS[preset]
        self.embed_dim = embed_dim or cfg.embed_dim
        heads = num_heads or cfg.num_heads
        if self.embed_dim % heads:
            raise ValueError(f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({heads})")
        if frontend == "waveform":
            if sample_rate != 16000:
                raise ValueError(f"the waveform front-end expects 16 kHz audio, got {sample_rate}; resample the data")
            self.frontend: WaveformFrontend | FbankFrontend | FramesFrontend = WaveformFrontend(norm_mode, row_layout)
        elif frontend == "fbank":
            self.frontend = FbankFrontend(sample_rate)
        elif frontend == "frames":
            if in_channels is None:
                raise ValueError("frontend = 'frames' needs in_channels (the channels per input frame)")
            self.frontend = FramesFrontend(in_channels)
            self.__dict__["modality"] = "any"  # frames of any kind; the instance flag shadows the class's "audio"
        else:
            raise ValueError(f"frontend must be 'waveform', 'fbank' or 'frames', got {frontend!r}")
        self.encoder = _get_encoder(
            in_features=self.frontend.out_dim,
            embed_dim=self.embed_dim,
            dropout_input=feature_dropout,
            pos_conv_kernel=cfg.pos_conv_kernel,
            pos_conv_groups=cfg.pos_conv_groups,
            num_layers=num_layers or cfg.num_layers,
            num_heads=heads,
            attention_dropout=attention_dropout,
            ff_interm_features=ffn_dim or cfg.ffn_dim,
            ff_interm_dropout=ffn_dropout,
            dropout=dropout,
            layer_norm_first=False,
            layer_drop=layer_drop,
        )
        self.mask_embedding = nn.Parameter(torch.empty(self.embed_dim).uniform_())
        self.frontend_name = frontend

    @property
    def receptive_field(self) -> int:
        """Input samples needed for one output frame."""
        return self.frontend.receptive_field

    def _check(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor | None]:
        x = batch.get("x")
        if self.frontend_name == "frames":
            channels = self.frontend.conv.in_channels  # type: ignore[union-attr]
            if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[2] != channels:
                shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise ValueError(
                    f"Wav2Vec2Encoder(frontend='frames') needs batch['x'] as [B, T, {channels}], got {shape}"
                )
            lengths = batch.get("lengths")
            return x, lengths if isinstance(lengths, Tensor) else None
        if not isinstance(x, Tensor) or x.ndim != 2:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"Wav2Vec2Encoder needs batch['x'] as mono waveforms [B, T], got {shape}")
        if x.shape[1] < self.receptive_field:
            raise ValueError(
                f"clips of {x.shape[1]} samples are shorter than the encoder's receptive field "
                f"({self.receptive_field} samples); drop or pad them"
            )
        lengths = batch.get("lengths")
        return x, lengths if isinstance(lengths, Tensor) else None

    def frontend_features(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor | None]:
        """``(front-end features [B, F, 512], frame padding mask [B, F] or None)``."""
        x, lengths = self._check(batch)
        padding = batch.get("padding_mask")
        if self.frontend_name == "frames" and isinstance(padding, Tensor) and lengths is None:
            x = x.masked_fill(padding.unsqueeze(-1), 0.0)  # time-series batches mark padded steps, anywhere
            features, _ = self.frontend(x, None)
            return features, padding
        features, frame_lengths = self.frontend(x, lengths)
        if frame_lengths is None:
            return features, None
        frames = torch.arange(features.shape[1], device=features.device)
        return features, frames.unsqueeze(0) >= frame_lengths.unsqueeze(1)

    def encode_features(
        self, features: Tensor, padding_mask: Tensor | None, token_mask: Tensor | None = None
    ) -> Features:
        """The transformer part: project, mask, add positions, run every layer."""
        h = self.encoder.feature_projection(features)
        if padding_mask is not None:
            h = h.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        if token_mask is not None:
            if token_mask.shape != h.shape[:2]:
                raise ValueError(
                    f"token_mask must be [B, frames] = {tuple(h.shape[:2])}, got {tuple(token_mask.shape)}"
                )
            h = torch.where(token_mask.unsqueeze(-1), self.mask_embedding.to(h.dtype), h)
        attention_mask = None
        if padding_mask is not None:
            b, f = padding_mask.shape
            attention_mask = (-10000.0 * padding_mask.to(h.dtype))[:, None, None, :].expand(b, 1, f, f)
        layers = self.encoder.transformer.get_intermediate_outputs(h, attention_mask)
        tokens = layers[-1]
        return Features(
            pooled=masked_mean(tokens, padding_mask), tokens=tokens, padding_mask=padding_mask, layers=tuple(layers)
        )

    def forward(self, batch: dict[str, Any], token_mask: Tensor | None = None) -> Features:
        features, padding_mask = self.frontend_features(batch)
        return self.encode_features(features, padding_mask, token_mask)


class MFCCEncoder(nn.Module):
    """The classic baseline as an encoder: 39-d MFCC + deltas + delta-deltas per 20 ms frame, no parameters.

    One "layer" (the MFCC frames), mean-pooled over the utterance's real frames; use it with
    an evaluator (``speech.utterance_probe``) to place learned encoders beside MFCCs.

    Example:
        >>> out = MFCCEncoder()({"x": torch.randn(2, 16000), "lengths": torch.tensor([16000, 8000])})
        >>> out.tokens.shape, out.padding_mask[1].sum().item()
        (torch.Size([2, 49, 39]), 25)
    """

    modality: ClassVar[str] = "audio"
    supports_token_mask: ClassVar[bool] = False
    returns_tokens: ClassVar[bool] = True
    returns_layers: ClassVar[bool] = True

    def __init__(self, sample_rate: int = 16000) -> None:
        super().__init__()
        self.sample_rate, self.embed_dim = sample_rate, 39

    def forward(self, batch: dict[str, Any]) -> Features:
        from ._labels import mfcc_features

        x = batch.get("x")
        if not isinstance(x, Tensor) or x.ndim != 2:
            raise ValueError("MFCCEncoder needs batch['x'] as mono waveforms [B, T]")
        lengths = batch.get("lengths")
        sizes = lengths.tolist() if isinstance(lengths, Tensor) else [x.shape[1]] * x.shape[0]
        frames = [mfcc_features(x[row, : int(size)].float(), self.sample_rate) for row, size in enumerate(sizes)]
        tokens = nn.utils.rnn.pad_sequence(frames, batch_first=True)
        counts = torch.tensor([len(f) for f in frames], device=tokens.device)
        padding_mask = torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0) >= counts.unsqueeze(1)
        return Features(
            pooled=masked_mean(tokens, padding_mask), tokens=tokens, padding_mask=padding_mask, layers=(tokens,)
        )
