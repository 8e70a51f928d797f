"""Export formats of ``speech.wav2vec2`` encoders: ``torchaudio`` and ``hf`` (Hugging Face transformers).

Our encoder is torchaudio's wav2vec 2.0 model under other module names, so both exports
rename the state dict and write a config:

* ``torchaudio``: ``model.safetensors`` under the key names of
  ``torchaudio.models.Wav2Vec2Model`` and ``wav2vec2_model.json``, the keyword arguments
  of ``torchaudio.models.wav2vec2_model`` that rebuild it.
* ``hf``: a folder that ``transformers.Wav2Vec2Model.from_pretrained`` loads
  (``HubertModel`` for runs whose objective is ``speech.hubert``), with the
  ``Wav2Vec2FeatureExtractor`` config; the key mapping is the inverse of torchaudio's
  ``import_huggingface_model``, and our ``mask_embedding`` becomes ``masked_spec_embed``.

Both take the waveform front-end only: neither library has our ``fbank`` or ``frames``
front-end.

Layers: our ``Features.layers[k - 1]`` (the output of transformer layer ``k``) is
torchaudio's ``model.extract_features(x, lengths)[0][k - 1]`` and transformers'
``hidden_states[k]``; transformers' ``hidden_states[0]`` is the transformer's input
(projection + positional convolution + LayerNorm), which ours does not return.
``pooled`` is the mean of the last layer over each utterance's real frames.

Example:
    >>> from ssl_speech._encoders import Wav2Vec2Encoder
    >>> encoder = Wav2Vec2Encoder(preset="tiny")
    >>> kwargs = torchaudio_kwargs(encoder)
    >>> kwargs["encoder_embed_dim"], kwargs["encoder_num_layers"], kwargs["extractor_mode"]
    (64, 2, 'layer_norm')
    >>> import torchaudio
    >>> torchaudio.models.wav2vec2_model(**kwargs).load_state_dict(torchaudio_state_dict(encoder))
    <All keys matched successfully>
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from ssl_core import ExportError, ExportResult, ExportSource, feature_tensors, max_abs_diff
from ssl_core.functional import masked_mean

from ._encoders import Wav2Vec2Encoder, WaveformFrontend

__all__ = [
    "HFExporter",
    "TorchaudioExporter",
    "hf_config",
    "hf_state_dict",
    "torchaudio_kwargs",
    "torchaudio_state_dict",
]

SAMPLE_RATE = 16000
"""The waveform front-end's sample rate (the encoder refuses any other)."""

_TORCHAUDIO_NAMES = (("frontend.cnn.", "feature_extractor."), ("encoder.", "encoder."))
"""Our key prefixes -> ``torchaudio.models.Wav2Vec2Model``'s."""

_HF_NAMES = (
    ("feature_extractor.", "feature_extractor."),
    ("encoder.feature_projection.", "feature_projection."),
    ("encoder.transformer.", "encoder."),
)
"""torchaudio's key prefixes -> transformers' (the inverse of ``import_huggingface_model``)."""


def _renamed(state: Mapping[str, Tensor], prefixes: Sequence[tuple[str, str]]) -> dict[str, Tensor]:
    renamed: dict[str, Tensor] = {}
    for key, tensor in state.items():
        old, new = next(((o, n) for o, n in prefixes if key.startswith(o)), ("", ""))
        if not old:
            raise ExportError(f"no export name for parameter {key!r}")
        renamed[new + key[len(old) :]] = tensor.detach().float().contiguous().clone()
    return renamed


def torchaudio_state_dict(encoder: Wav2Vec2Encoder) -> dict[str, Tensor]:
    """``encoder``'s weights under ``torchaudio.models.Wav2Vec2Model``'s key names (the mask embedding left out)."""
    state = {k: v for k, v in encoder.state_dict().items() if k != "mask_embedding"}
    return _renamed(state, _TORCHAUDIO_NAMES)


def torchaudio_kwargs(encoder: Wav2Vec2Encoder) -> dict[str, Any]:
    """The keyword arguments of ``torchaudio.models.wav2vec2_model`` that rebuild ``encoder`` (no aux head).

    Read from the built modules, so overrides of the preset's sizes are carried over.
    """
    frontend = encoder.frontend
    if not isinstance(frontend, WaveformFrontend):
        raise ExportError(f"torchaudio's wav2vec2_model has the waveform CNN only; this encoder uses {frontend!r}")
    blocks: list[Any] = list(frontend.cnn.conv_layers)
    projection: Any = encoder.encoder.feature_projection
    transformer: Any = encoder.encoder.transformer
    first = transformer.layers[0]
    return {
        "extractor_mode": frontend.norm_mode,
        "extractor_conv_layer_config": [[b.conv.out_channels, b.kernel_size, b.stride] for b in blocks],
        "extractor_conv_bias": blocks[0].conv.bias is not None,
        "encoder_embed_dim": encoder.embed_dim,
        "encoder_projection_dropout": projection.dropout.p,
        "encoder_pos_conv_kernel": transformer.pos_conv_embed.kernel_size,
        "encoder_pos_conv_groups": transformer.pos_conv_embed.conv.groups,
        "encoder_num_layers": len(transformer.layers),
        "encoder_num_heads": first.attention.num_heads,
        "encoder_attention_dropout": first.attention.dropout,
        "encoder_ff_interm_features": first.feed_forward.intermediate_dense.out_features,
        "encoder_ff_interm_dropout": first.feed_forward.intermediate_dropout.p,
        "encoder_dropout": transformer.dropout.p,
        "encoder_layer_norm_first": first.layer_norm_first,  # the Transformer's own flag is its negation
        "encoder_layer_drop": transformer.layer_drop,
        "aux_num_out": None,
    }


def hf_config(kwargs: Mapping[str, Any], layer_norm_eps: float = 1e-5) -> dict[str, Any]:
    """transformers' ``Wav2Vec2Config`` / ``HubertConfig`` fields for torchaudio's ``wav2vec2_model`` ``kwargs``.

    The inverse of torchaudio's ``import_huggingface_model`` config reading.

    Example:
        >>> from ssl_speech._encoders import Wav2Vec2Encoder
        >>> config = hf_config(torchaudio_kwargs(Wav2Vec2Encoder(preset="tiny")))
        >>> config["feat_extract_norm"], config["do_stable_layer_norm"], config["conv_kernel"]
        ('layer', False, [10, 3, 3, 3, 3, 2, 2])
    """
    layers = [tuple(layer) for layer in kwargs["extractor_conv_layer_config"]]
    return {
        "feat_extract_norm": str(kwargs["extractor_mode"]).removesuffix("_norm"),
        "feat_extract_activation": "gelu",
        "conv_dim": [channels for channels, _, _ in layers],
        "conv_kernel": [kernel for _, kernel, _ in layers],
        "conv_stride": [stride for _, _, stride in layers],
        "conv_bias": kwargs["extractor_conv_bias"],
        "hidden_size": kwargs["encoder_embed_dim"],
        "feat_proj_dropout": kwargs["encoder_projection_dropout"],
        "num_conv_pos_embeddings": kwargs["encoder_pos_conv_kernel"],
        "num_conv_pos_embedding_groups": kwargs["encoder_pos_conv_groups"],
        "num_hidden_layers": kwargs["encoder_num_layers"],
        "num_attention_heads": kwargs["encoder_num_heads"],
        "attention_dropout": kwargs["encoder_attention_dropout"],
        "intermediate_size": kwargs["encoder_ff_interm_features"],
        "activation_dropout": kwargs["encoder_ff_interm_dropout"],
        "hidden_dropout": kwargs["encoder_dropout"],
        "do_stable_layer_norm": kwargs["encoder_layer_norm_first"],
        "layerdrop": kwargs["encoder_layer_drop"],
        "hidden_act": "gelu",
        "layer_norm_eps": layer_norm_eps,
    }


def hf_state_dict(encoder: Wav2Vec2Encoder) -> dict[str, Tensor]:
    """``encoder``'s weights under transformers' ``Wav2Vec2Model`` / ``HubertModel`` key names.

    Example:
        >>> from ssl_speech._encoders import Wav2Vec2Encoder
        >>> keys = hf_state_dict(Wav2Vec2Encoder(preset="tiny"))
        >>> "masked_spec_embed" in keys, "encoder.layers.1.final_layer_norm.weight" in keys
        (True, True)
    """
    state = _renamed(torchaudio_state_dict(encoder), _HF_NAMES)
    state["masked_spec_embed"] = encoder.mask_embedding.detach().float().clone()
    return state


def _why_not(source: ExportSource, format_name: str) -> str | None:
    encoder = source.encoder
    if not isinstance(encoder, Wav2Vec2Encoder):
        return f"{format_name} takes speech.wav2vec2 encoders; this run's is {source.encoder_name}"
    if encoder.frontend_name != "waveform":
        return (
            f"{format_name} takes the waveform front-end; this run uses {encoder.frontend_name}: "
            "use onnx or safetensors"
        )
    return None


def _lengths(batch: Mapping[str, Any]) -> Tensor | None:
    lengths = batch.get("lengths")
    return lengths if isinstance(lengths, Tensor) else None


def _theirs(layers: Sequence[Tensor], frames: Tensor | None) -> dict[str, Tensor]:
    """The exported model's outputs under :func:`ssl_core.feature_tensors`'s names (``pooled``, ``layer_k``)."""
    padding = None
    if frames is not None:
        padding = torch.arange(layers[-1].shape[1]).unsqueeze(0) >= frames.unsqueeze(1)
    named = {"pooled": masked_mean(layers[-1], padding)}
    named.update({f"layer_{number}": layer for number, layer in enumerate(layers, start=1)})
    return named


def _compare(source: ExportSource, batch: dict[str, Any], theirs: Mapping[str, Tensor]) -> tuple[float, dict[str, Any]]:
    """``max_abs_diff`` against our encoder as it runs on CPU, and against its ``Conv1d`` CNN path when they differ.

    On CPU the layer-normalised CNN takes the strided-matmul path (:mod:`ssl_speech._fast_cnn`):
    the same function summed in another order, a few 1e-6 away from torchaudio's ``Conv1d``,
    which both exported models use.
    """
    worst = max_abs_diff(feature_tensors(source.features(batch)), theirs)
    encoder: Any = source.encoder
    frontend: WaveformFrontend = encoder.frontend
    details: dict[str, Any] = {"cnn_path": "conv1d"}
    if frontend.uses_row_layout(batch["x"].device):
        saved, frontend.row_layout = frontend.row_layout, False
        try:
            conv_path = max_abs_diff(feature_tensors(source.features(batch)), theirs)
        finally:
            frontend.row_layout = saved
        details = {"cnn_path": "row_layout", "max_abs_diff_conv1d_path": conv_path}
    return worst, details


class TorchaudioExporter:
    """``torchaudio``: ``torchaudio.models.wav2vec2_model(**kwargs)`` + ``load_state_dict`` rebuild the encoder.

    Writes ``model.safetensors`` (torchaudio's key names) and ``wav2vec2_model.json`` (the
    keyword arguments), then rebuilds the model from those files and compares its
    ``extract_features`` on the example batch with our encoder's layers.

    Example:
        >>> result = TorchaudioExporter().export(source, Path("wav2vec2-ta"))  # doctest: +SKIP
        >>> result.files  # doctest: +SKIP
        ['model.safetensors', 'wav2vec2_model.json']
    """

    format: ClassVar[str] = "torchaudio"

    def supports(self, source: ExportSource) -> str | None:
        return _why_not(source, self.format)

    def export(self, source: ExportSource, out: Path) -> ExportResult:
        import torchaudio
        from safetensors.torch import load_file, save_file

        encoder: Wav2Vec2Encoder = source.encoder  # type: ignore[assignment]
        out.mkdir(parents=True, exist_ok=True)
        kwargs = torchaudio_kwargs(encoder)
        save_file(torchaudio_state_dict(encoder), str(out / "model.safetensors"), metadata={"format": "pt"})
        (out / "wav2vec2_model.json").write_text(json.dumps(kwargs, indent=1) + "\n")

        model = torchaudio.models.wav2vec2_model(**json.loads((out / "wav2vec2_model.json").read_text()))
        model.load_state_dict(load_file(str(out / "model.safetensors")))
        batch = source.example_batch()
        with torch.no_grad():
            layers, frames = model.eval().extract_features(batch["x"], _lengths(batch))
        worst, details = _compare(source, batch, _theirs(layers, frames))
        return ExportResult(
            format=self.format,
            path=str(out),
            files=["model.safetensors", "wav2vec2_model.json"],
            max_abs_diff=worst,
            load=(
                "import json, torchaudio\nfrom safetensors.torch import load_file\n"
                f"model = torchaudio.models.wav2vec2_model(**json.load(open({str(out / 'wav2vec2_model.json')!r})))\n"
                f"model.load_state_dict(load_file({str(out / 'model.safetensors')!r}))\n"
                "layers, frames = model.eval().extract_features(waveforms_16k, lengths)"
            ),
            details={**details, "layers": "layer_k = extract_features(...)[0][k - 1]", "left_out": ["mask_embedding"]},
        )


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:
        raise ExportError("the hf export needs transformers: pip install 'ssl-speech[hf]'") from exc
    return transformers


@contextmanager
def _quiet(transformers: Any) -> Iterator[None]:
    """transformers without its progress bars and info messages, restored afterwards."""
    logging = transformers.utils.logging
    bars, verbosity = logging.is_progress_bar_enabled(), logging.get_verbosity()
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def _frames(lengths: Tensor, kernels: Sequence[int], strides: Sequence[int]) -> Tensor:
    """Frames of the CNN described by the transformers config for ``lengths`` samples."""
    for kernel, stride in zip(kernels, strides, strict=True):
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    return lengths


def _is_hubert(source: ExportSource) -> bool:
    return any(objective.name == "speech.hubert" for objective in source.config.objectives)


class HFExporter:
    """``hf``: a transformers folder for ``Wav2Vec2Model`` (``HubertModel`` for HuBERT runs) and its feature extractor.

    Writes ``config.json`` and ``model.safetensors`` (``save_pretrained``) and
    ``preprocessor_config.json`` (``Wav2Vec2FeatureExtractor``: 16 kHz, no waveform
    normalisation, as our encoder takes raw waveforms; attention masks on, as our encoder
    masks padded frames). The check reloads the folder with ``from_pretrained``, turns the
    example batch's waveforms into inputs with the saved feature extractor and compares
    ``hidden_states[1:]`` with our encoder's layers.

    Example:
        >>> result = HFExporter().export(source, Path("wav2vec2-hf"))  # doctest: +SKIP
        >>> result.details["model_class"]  # doctest: +SKIP
        'Wav2Vec2Model'
    """

    format: ClassVar[str] = "hf"

    def supports(self, source: ExportSource) -> str | None:
        why = _why_not(source, self.format)
        if why is None and importlib.util.find_spec("transformers") is None:
            return "the hf export needs transformers: pip install 'ssl-speech[hf]'"
        return why

    def export(self, source: ExportSource, out: Path) -> ExportResult:
        transformers = _transformers()
        encoder: Wav2Vec2Encoder = source.encoder  # type: ignore[assignment]
        hubert = _is_hubert(source)
        config_class = transformers.HubertConfig if hubert else transformers.Wav2Vec2Config
        model_class = transformers.HubertModel if hubert else transformers.Wav2Vec2Model
        eps: float = encoder.encoder.transformer.layer_norm.eps
        config = config_class(**hf_config(torchaudio_kwargs(encoder), layer_norm_eps=eps))
        config.architectures = [model_class.__name__]
        out.mkdir(parents=True, exist_ok=True)
        with _quiet(transformers):
            model = model_class(config)
            model.load_state_dict(hf_state_dict(encoder), strict=True)
            model.save_pretrained(str(out))
            extractor = transformers.Wav2Vec2FeatureExtractor(
                feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0, do_normalize=False,
                return_attention_mask=True,
            )  # fmt: skip
            extractor.save_pretrained(str(out))
            batch = source.example_batch()
            theirs = self._reloaded_outputs(transformers, model_class, out, batch)
        worst, details = _compare(source, batch, theirs)
        return ExportResult(
            format=self.format,
            path=str(out),
            files=sorted(p.name for p in out.iterdir()),
            max_abs_diff=worst,
            load=(
                f"from transformers import AutoFeatureExtractor, {model_class.__name__}\n"
                f"extractor = AutoFeatureExtractor.from_pretrained({str(out)!r})\n"
                f"model = {model_class.__name__}.from_pretrained({str(out)!r}).eval()\n"
                "inputs = extractor(waveforms_16k, sampling_rate=16000, padding=True, return_tensors='pt')\n"
                "layers = model(**inputs, output_hidden_states=True).hidden_states[1:]"
            ),
            details={**details, "model_class": model_class.__name__, "layers": "layer_k = hidden_states[k]"},
        )

    @staticmethod
    def _reloaded_outputs(transformers: Any, model_class: Any, out: Path, batch: dict[str, Any]) -> dict[str, Tensor]:
        """The folder's model, loaded as a user would, on the example batch's waveforms."""
        model, info = model_class.from_pretrained(str(out), output_loading_info=True)
        wrong = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
        if wrong:
            name = model_class.__name__
            raise ExportError(f"{name}.from_pretrained({str(out)!r}) does not load every weight: {wrong}")
        extractor = transformers.AutoFeatureExtractor.from_pretrained(str(out))
        x: Tensor = batch["x"]
        lengths = _lengths(batch)
        sizes = lengths.tolist() if lengths is not None else [x.shape[1]] * x.shape[0]
        waves = [row[: int(size)].numpy() for row, size in zip(x, sizes, strict=True)]
        inputs = extractor(waves, sampling_rate=SAMPLE_RATE, padding="max_length", max_length=x.shape[1],
                           return_tensors="pt")  # fmt: skip
        with torch.no_grad():
            hidden = model.eval()(**inputs, output_hidden_states=True).hidden_states
        config = model.config
        frames = _frames(inputs["attention_mask"].sum(-1), config.conv_kernel, config.conv_stride)
        return _theirs(hidden[1:], frames if lengths is not None else None)
