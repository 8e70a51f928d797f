"""ssl export (issue 16): safetensors and ONNX from ssl-core, checked against the encoder; clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import ssl_core
from ssl_core import ExportError, export

TINY = {
    "name": "tiny",
    "data": {"name": "core.digits"},
    "encoder": {"name": "core.mlp", "hidden_dim": 16, "embed_dim": 8},
    "views": {"name": "core.noise"},
    "objective": {"name": "core.simclr", "hidden_dim": 16, "proj_dim": 8},
    "train": {"steps": 3, "batch_size": 32, "progress": False},
    "evaluate": [],
    "plots": False,
    "compare_random_init": False,
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "run"
    ssl_core.run(TINY, out=out)
    return out


def test_safetensors_round_trips_and_loads_without_ssl_core(run_dir: Path, tmp_path: Path) -> None:
    result = export(run_dir, "safetensors", tmp_path / "st")
    assert result.max_abs_diff == 0.0 and sorted(result.files) == ["config.json", "load.py", "model.safetensors"]
    config = json.loads((tmp_path / "st" / "config.json").read_text())
    assert config["encoder"] == "core.mlp" and config["embed_dim"] == 8 and config["params"]["hidden_dim"] == 16
    probe = (
        "import sys, runpy; loader = runpy.run_path(sys.argv[1]); weights, config = loader['load']();"
        "assert 'ssl_core' not in sys.modules, 'the loader imported ssl-core';"
        "print(config['encoder'], sorted(weights)[0], tuple(weights[sorted(weights)[0]].shape))"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "st" / "load.py")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    ours = ssl_core.load_encoder(run_dir).encoder.state_dict()
    first = sorted(ours)[0]
    assert done.stdout.split()[:2] == ["core.mlp", first]


def test_onnx_matches_the_encoder_at_another_batch_size(run_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="the ONNX check needs onnxruntime (pip install 'ssl-core[onnx]')")
    import onnxruntime

    result = export(run_dir, "onnx", tmp_path / "onnx")
    assert result.max_abs_diff <= 1e-5 and result.details["inputs"] == ["x"]
    loaded = ssl_core.load_encoder(run_dir)
    x = torch.stack([loaded.splits.test[i][0] for i in range(5)])  # traced with 2 samples, run with 5
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "encoder.onnx"))
    (pooled,) = session.run(["pooled"], {"x": x.numpy()})
    with torch.no_grad():
        expected = loaded.encoder.eval()({"x": x}).pooled.numpy()
    assert np.abs(pooled - expected).max() <= 1e-5


def test_a_format_that_does_not_fit_names_the_ones_that_do(run_dir: Path, tmp_path: Path) -> None:
    expected = r"no exporter of format 'tflite' is installed .*exports to: onnx, safetensors"
    with pytest.raises(ExportError, match=expected):
        export(run_dir, "tflite", tmp_path / "x")
    export(run_dir, "safetensors", tmp_path / "st")
    with pytest.raises(ExportError, match=r"already exists; pass --overwrite"):
        export(run_dir, "safetensors", tmp_path / "st")
    assert export(run_dir, "safetensors", tmp_path / "st", overwrite=True).max_abs_diff == 0.0


def test_a_plugin_format_is_chosen_by_what_it_supports(run_dir: Path, tmp_path: Path) -> None:
    class VitOnly:
        format = "timm"

        def supports(self, source: ssl_core.ExportSource) -> str | None:
            return None if source.encoder_name == "vision.vit" else "timm takes vision.vit and vision.resnet"

        def export(self, source: ssl_core.ExportSource, out: Path) -> ssl_core.ExportResult:  # pragma: no cover
            raise AssertionError("not for core.mlp")

    registry = ssl_core.Registry()
    registry.register("exporter", "test.timm", VitOnly)
    with pytest.raises(ExportError, match=r"format 'timm' does not fit encoder 'core.mlp' \(test.timm: timm takes"):
        export(run_dir, "timm", tmp_path / "t", registry=registry)


def test_the_cli_lists_formats_and_exports(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ssl_core.cli_main(["export", str(run_dir), "--list"]) == 0
    listed = capsys.readouterr().out
    assert "safetensors  yes" in listed and "onnx         yes" in listed
    assert ssl_core.cli_main(["export", str(run_dir), "--to", "safetensors", "--out", str(tmp_path / "c")]) == 0
    printed = capsys.readouterr().out
    assert "largest difference from the encoder 0 (fp32)" in printed and "load_file(" in printed
    assert ssl_core.cli_main(["export", str(run_dir), "--to", "safetensors"]) == 2  # a usage error
    assert "ssl export: error: --out PATH is required" in capsys.readouterr().err


class PaddedMeanEncoder(nn.Module):
    """Reads two tensors (``x`` and ``lengths``): a masked mean of a linear map, like an audio encoder."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 4)

    def forward(self, batch: dict[str, Any], token_mask: Any = None) -> ssl_core.Features:
        h = self.proj(batch["x"])
        keep = (torch.arange(h.shape[1]).unsqueeze(0) < batch["lengths"].unsqueeze(1)).unsqueeze(-1).float()
        return ssl_core.Features(pooled=(h * keep).sum(1) / keep.sum(1), layers=(h,))


def test_onnx_takes_every_tensor_the_encoder_reads(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="the ONNX check needs onnxruntime")
    from ssl_core import DatasetSplits, ExportSource, load_config
    from ssl_core._export import ONNXExporter

    items = [(torch.randn(5, 3), 5 - i % 3) for i in range(6)]

    def collate(batch: list[Any]) -> dict[str, Any]:
        return {"x": torch.stack([x for x, _ in batch]), "lengths": torch.tensor([n for _, n in batch]), "note": "a"}

    cfg = load_config({"encoder": {"name": "core.mlp"}, "views": {"name": "core.noise"},
                       "objective": {"name": "core.simclr"}, "data": {"name": "core.digits"}})  # fmt: skip
    splits = DatasetSplits(items, items, collate, "sequence", None, {})
    result = ONNXExporter().export(ExportSource(PaddedMeanEncoder(), cfg, splits), tmp_path / "onnx")
    assert result.details["inputs"] == ["x", "lengths"] and result.max_abs_diff <= 1e-5
    assert result.details["outputs"] == ["pooled", "layer_1"]
