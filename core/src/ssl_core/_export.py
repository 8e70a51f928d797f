"""Take the encoder out of a run: ``ssl export RUN_DIR --to FORMAT --out PATH`` (:func:`export`).

An export format is a component of kind ``exporter`` (entry-point group
``ssl_core.exporters``): a class with a ``format`` name, ``supports(source)`` (``None``
when it can export that encoder, else why not) and ``export(source, out)``, which writes
the files and returns an :class:`ExportResult`. ssl-core ships ``safetensors`` (every
encoder) and ``onnx`` (every encoder that traces); the plugins add the formats of their
ecosystems (timm, Hugging Face, torchaudio, PyG). ssl-core knows no plugin: it asks every
registered exporter of the requested format, and when none takes the encoder the error
names the formats that do.

Each exporter checks its own output: it runs the exported model on
:meth:`ExportSource.example_batch` and reports the largest difference from our
encoder's pooled features and per-layer hidden states (``max_abs_diff``, fp32);
:func:`export` refuses a result above ``tolerance``.

Example:
    >>> import tempfile
    >>> from ssl_core._components import MLPEncoder, digits
    >>> from ssl_core import load_config
    >>> cfg = load_config({"encoder": {"name": "core.mlp", "hidden_dim": 8, "embed_dim": 4},
    ...                    "views": {"name": "core.noise"}, "objective": {"name": "core.simclr"},
    ...                    "data": {"name": "core.digits"}})
    >>> source = ExportSource(MLPEncoder(in_dim=64, hidden_dim=8, embed_dim=4), cfg, digits())
    >>> result = SafetensorsExporter().export(source, Path(tempfile.mkdtemp()) / "mlp")
    >>> result.format, sorted(result.files), result.max_abs_diff
    ('safetensors', ['config.json', 'load.py', 'model.safetensors'], 0.0)
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from ._config import PipelineConfig
from ._errors import ConfigError
from ._protocols import Batch, DatasetSplits, Features

__all__ = [
    "EXPORT_TOLERANCE",
    "ExportError",
    "ExportResult",
    "ExportSource",
    "Exporter",
    "ONNXExporter",
    "SafetensorsExporter",
    "export",
    "export_formats",
    "feature_tensors",
    "max_abs_diff",
]

EXPORT_TOLERANCE = 1e-5
"""Largest absolute difference (fp32) allowed between an exported model's outputs and our encoder's."""


class ExportError(ConfigError):
    """An encoder cannot be exported to the requested format, or the export does not match the encoder."""


@dataclass
class ExportSource:
    """What an exporter receives: the encoder (eval mode, CPU, float32), its config and its dataset.

    ``config.encoder.name`` / ``config.encoder.params`` say how the encoder was built.
    """

    encoder: nn.Module
    config: PipelineConfig
    splits: DatasetSplits

    def __post_init__(self) -> None:
        self.encoder = self.encoder.float().cpu().eval()

    @property
    def encoder_name(self) -> str:
        """The encoder's component name (``vision.vit``)."""
        return self.config.encoder.name

    def example_batch(self, size: int = 2, split: str = "test") -> Batch:
        """The first ``size`` readable items of a split, collated: the input exports are traced and checked on."""
        from ._streaming import SkippedItem

        dataset: Any = getattr(self.splits, split)
        items: list[Any] = []
        for index in range(min(len(dataset), 64)):
            item = dataset[index]
            if not isinstance(item, SkippedItem):
                items.append(item)
            if len(items) == size:
                break
        if not items:
            raise ExportError(f"the {split} split has no readable item to trace the encoder with")
        batch: Batch = self.splits.collate(items)
        return batch

    def features(self, batch: Batch) -> Features:
        """Our encoder's output on ``batch`` (no gradient): what an exported model must reproduce."""
        with torch.no_grad():
            out: Features = self.encoder(batch)
        return out


@dataclass
class ExportResult:
    """What an exporter wrote, how close it is to our encoder, and how to load it."""

    format: str
    path: str
    files: list[str]
    max_abs_diff: float
    """Largest absolute difference of pooled features and layer states on the example batch (fp32)."""
    load: str = ""
    """A short Python snippet that loads the export (printed by ``ssl export``)."""
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Exporter(Protocol):
    """The contract of kind ``exporter``: one export format for the encoders it supports."""

    format: ClassVar[str]

    def supports(self, source: ExportSource) -> str | None:
        """``None`` when this exporter can export ``source.encoder``; otherwise one line saying why not."""
        ...

    def export(self, source: ExportSource, out: Path) -> ExportResult:
        """Write the export into the folder (or file) ``out`` and check it against the encoder."""
        ...


def feature_tensors(features: Features) -> dict[str, Tensor]:
    """``pooled`` and ``layer_1`` ... ``layer_L`` of an encoder's output, by name (what exports are checked on).

    Example:
        >>> feature_tensors(Features(pooled=torch.zeros(1, 2), layers=(torch.ones(1, 3, 2),))).keys()
        dict_keys(['pooled', 'layer_1'])
    """
    named = {"pooled": features.pooled}
    for number, layer in enumerate(features.layers or (), start=1):
        named[f"layer_{number}"] = layer
    return named


def max_abs_diff(ours: Mapping[str, Tensor], theirs: Mapping[str, Any]) -> float:
    """The largest absolute difference over the tensors both mappings name; an error when shapes differ.

    Example:
        >>> max_abs_diff({"pooled": torch.zeros(2)}, {"pooled": torch.tensor([0.0, 0.5])})
        0.5
    """
    worst = 0.0
    for name, tensor in ours.items():
        if name not in theirs:
            raise ExportError(f"the exported model does not return {name!r} (it returns {sorted(theirs)})")
        other = torch.as_tensor(theirs[name]).float()
        if tuple(other.shape) != tuple(tensor.shape):
            raise ExportError(f"{name}: the export gives shape {tuple(other.shape)}, the encoder {tuple(tensor.shape)}")
        worst = max(worst, float((tensor.float() - other).abs().max()) if tensor.numel() else 0.0)
    return worst


def _prepare(out: Path, overwrite: bool) -> Path:
    if out.exists() and any(out.iterdir() if out.is_dir() else [out]):
        if not overwrite:
            raise ExportError(f"{out} already exists; pass --overwrite (overwrite=True) to replace it")
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


class SafetensorsExporter:
    """``safetensors``: the encoder's weights, its config, and a loader that needs only ``safetensors``.

    Writes ``model.safetensors`` (the state dict), ``config.json`` (component name,
    parameters, ``embed_dim``, ssl-core version) and ``load.py`` (a dozen lines: weights and
    config back as a dict, neither ssl-core nor the run directory needed).
    """

    format: ClassVar[str] = "safetensors"

    def supports(self, source: ExportSource) -> str | None:
        return None

    def export(self, source: ExportSource, out: Path) -> ExportResult:
        from safetensors.torch import load_file, save_file

        from ._version import __version__

        out.mkdir(parents=True, exist_ok=True)
        state = {name: t.detach().contiguous().clone() for name, t in source.encoder.state_dict().items()}
        save_file(state, str(out / "model.safetensors"), metadata={"format": "pt", "encoder": source.encoder_name})
        config = {
            "encoder": source.encoder_name,
            "params": dict(source.config.encoder.params),
            "embed_dim": getattr(source.encoder, "embed_dim", None),
            "ssl_core_version": __version__,
        }
        (out / "config.json").write_text(json.dumps(config, indent=1, default=str) + "\n")
        (out / "load.py").write_text(_STANDALONE_LOADER)
        reloaded = load_file(str(out / "model.safetensors"))
        worst = max((float((state[k] - reloaded[k]).abs().max()) for k in state if state[k].numel()), default=0.0)
        batch = source.example_batch()
        return ExportResult(
            format=self.format,
            path=str(out),
            files=["config.json", "load.py", "model.safetensors"],
            max_abs_diff=max(worst, _reload_difference(source, reloaded, batch)),
            load=f"from safetensors.torch import load_file\nstate = load_file({str(out / 'model.safetensors')!r})",
        )


def _reload_difference(source: ExportSource, state: Mapping[str, Tensor], batch: Batch) -> float:
    """Our encoder's outputs with the reloaded weights against the original outputs."""
    import copy

    twin = copy.deepcopy(source.encoder)
    twin.load_state_dict(dict(state))
    with torch.no_grad():
        return max_abs_diff(feature_tensors(source.features(batch)), feature_tensors(twin(batch)))


_STANDALONE_LOADER = '''"""Load this export without ssl-core: ``weights, config = load()`` (torch + safetensors)."""

import json
from pathlib import Path

from safetensors.torch import load_file


def load(folder=Path(__file__).resolve().parent):
    """The encoder's state dict (name -> tensor) and its config (component name, parameters, embed_dim)."""
    folder = Path(folder)
    return load_file(str(folder / "model.safetensors")), json.loads((folder / "config.json").read_text())


if __name__ == "__main__":
    weights, config = load()
    print(config["encoder"], len(weights), "tensors")
'''


class _RecordingBatch(dict[str, Any]):
    """A batch that notes which keys the encoder reads (the ONNX graph's inputs)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.read: list[str] = []

    def _note(self, key: Any) -> None:
        if key in self and key not in self.read:
            self.read.append(key)

    def __getitem__(self, key: Any) -> Any:
        self._note(key)
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self._note(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        found = super().__contains__(key)
        if found and key not in self.read:
            self.read.append(key)  # type: ignore[arg-type]
        return found


class _TensorsToFeatures(nn.Module):
    """The encoder as a function of tensors: ``(inputs...) -> (pooled, layer_1, ...)``, for tracing."""

    def __init__(self, encoder: nn.Module, names: Sequence[str], constants: Mapping[str, Any]) -> None:
        super().__init__()
        self.encoder, self.names, self.constants = encoder, list(names), dict(constants)

    def forward(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        features: Features = self.encoder({**self.constants, **dict(zip(self.names, tensors, strict=True))})
        return tuple(feature_tensors(features).values())


class ONNXExporter:
    """``onnx``: the encoder as an ONNX graph (``encoder.onnx``), checked with onnxruntime.

    Inputs are the batch tensors the encoder reads (``x``, and ``padding_mask`` / ``lengths``
    where it uses them), with every dimension left dynamic where the graph allows it;
    outputs are ``pooled`` and ``layer_1`` ... ``layer_L``. Uses torch's ``torch.export``
    based exporter, and TorchScript tracing when that fails.
    """

    format: ClassVar[str] = "onnx"

    def supports(self, source: ExportSource) -> str | None:
        return None  # any encoder may trace; export() says so when it does not

    def export(self, source: ExportSource, out: Path) -> ExportResult:
        batch = source.example_batch()
        recording = _RecordingBatch(batch)
        expected = feature_tensors(source.features(recording))
        names = [k for k in recording.read if isinstance(batch[k], Tensor)]
        constants = {k: v for k, v in batch.items() if k in recording.read and not isinstance(v, Tensor)}
        module = _TensorsToFeatures(source.encoder, names, constants).eval()
        inputs = tuple(batch[name] for name in names)
        out.mkdir(parents=True, exist_ok=True)
        target = out / "encoder.onnx"
        _export_onnx(module, inputs, names, list(expected), target)
        outputs = _run_onnx(target, {name: batch[name] for name in names})
        return ExportResult(
            format=self.format,
            path=str(out),
            files=[p.name for p in sorted(out.iterdir())],
            max_abs_diff=max_abs_diff(expected, dict(zip(expected, outputs, strict=True))),
            load=(
                "import onnxruntime\n"
                f"session = onnxruntime.InferenceSession({str(target)!r})\n"
                f"pooled = session.run(['pooled'], {{{', '.join(f'{n!r}: ...' for n in names)}}})[0]"
            ),
            details={"inputs": names, "outputs": list(expected)},
        )


def _export_onnx(
    module: nn.Module, inputs: tuple[Tensor, ...], names: list[str], outputs: list[str], target: Path
) -> None:
    import warnings

    try:
        import onnx  # noqa: F401  (both exporters write through it)
    except ImportError as exc:
        raise ExportError("exporting to ONNX needs onnx and onnxruntime: pip install 'ssl-core[onnx]'") from exc
    auto = torch.export.Dim.AUTO
    per_tensor = tuple({axis: auto for axis in range(t.ndim)} for t in inputs)
    shapes = (per_tensor,)  # forward(*tensors): one entry, for the varargs, holding one spec per tensor
    failures: list[str] = []
    for dynamo in (True, False):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                kwargs: dict[str, Any] = (
                    {"dynamic_shapes": shapes, "verbose": False}
                    if dynamo
                    else {"dynamic_axes": {n: {0: "batch"} for n in names}}
                )
                torch.onnx.export(module, inputs, str(target), dynamo=dynamo, input_names=names,
                                  output_names=outputs, **kwargs)  # fmt: skip
            return
        except Exception as exc:
            failures.append(f"{'torch.export' if dynamo else 'TorchScript'}: {type(exc).__name__}: {exc}"[:300])
    raise ExportError("the encoder does not trace to ONNX; " + " | ".join(failures))


def _run_onnx(path: Path, feeds: Mapping[str, Tensor]) -> list[Any]:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ExportError("checking the ONNX export needs onnxruntime: pip install 'ssl-core[onnx]'") from exc
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    return list(session.run(None, {k: v.numpy() for k, v in feeds.items() if k in wanted}))


def _exporters(registry: Any) -> list[tuple[str, Any]]:
    return [(name, registry.get("exporter", name)()) for name in registry.names("exporter")]


def export_formats(source: ExportSource, registry: Any = None) -> dict[str, str | None]:
    """Every registered format and whether it takes ``source``'s encoder: ``None``, or why not.

    A format offered by several exporters is supported when any of them supports it.
    """
    from ._registry import default_registry

    formats: dict[str, str | None] = {}
    for name, exporter in _exporters(registry or default_registry()):
        why = exporter.supports(source)
        if formats.get(exporter.format, "") is not None:
            formats[exporter.format] = None if why is None else f"{name}: {why}"
    return dict(sorted(formats.items()))


def export(
    run: str | Path,
    to: str,
    out: str | Path,
    *,
    root: str | None = None,
    registry: Any = None,
    overwrite: bool = False,
    tolerance: float = EXPORT_TOLERANCE,
) -> ExportResult:
    """Export the encoder of a run directory (or checkpoint) to format ``to`` in folder ``out``.

    Raises:
        ExportError: no exporter of that format takes this encoder (the message names the
            formats that do), ``out`` exists (without ``overwrite``), or the exported
            model's outputs differ from the encoder's by more than ``tolerance``.
    """
    from ._evaluate import load_encoder
    from ._registry import default_registry

    registry = registry or default_registry()
    loaded = load_encoder(run, root=root, registry=registry)
    source = ExportSource(loaded.encoder, loaded.config, loaded.splits)
    candidates = [(name, e) for name, e in _exporters(registry) if e.format == to]
    verdicts = [(name, e, e.supports(source)) for name, e in candidates]  # each exporter asked once
    reasons = [f"{name}: {why}" for name, _, why in verdicts if why is not None]
    chosen = next((e for _, e, why in verdicts if why is None), None)
    if chosen is None:
        usable = [fmt for fmt, why in export_formats(source, registry).items() if why is None]
        known = sorted({e.format for _, e in _exporters(registry)})
        what = (
            f"no exporter of format {to!r} is installed (known: {', '.join(known)})"
            if not candidates
            else (f"format {to!r} does not fit encoder {source.encoder_name!r} ({'; '.join(reasons)})")
        )
        raise ExportError(f"{what}; this encoder exports to: {', '.join(usable)}")
    target = _prepare(Path(out), overwrite)
    result: ExportResult = chosen.export(source, target)
    if not result.max_abs_diff <= tolerance:
        raise ExportError(
            f"the {to} export of {source.encoder_name!r} differs from the encoder by {result.max_abs_diff:.3g} "
            f"(tolerance {tolerance:g}); its files are in {target}"
        )
    return result
