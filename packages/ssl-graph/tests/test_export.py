"""``ssl export --to pyg`` (issue 16): tiny GraphMAE runs rebuild as plain PyG modules and match within 1e-5."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import ssl_core
from ssl_core import DatasetSplits, ExportError, ExportSource, export, load_config
from ssl_graph import GATEncoder, GINEncoder, collate_graphs, graph_batch, node_embeddings
from ssl_graph._export import PyGExporter

QUIET = {"evaluate": [], "plots": False, "compare_random_init": False}
TRAIN = {"steps": 3, "batch_size": 1, "lr": 0.01, "optimizer": "adam", "progress": False, "precision": "fp32"}
SYNTHETIC = {"name": "graph.synthetic", "num_nodes": 300, "num_classes": 3, "in_dim": 12}


def graphmae_run(data: dict[str, Any], encoder: dict[str, Any]) -> dict[str, Any]:
    return {"name": "pyg-export-test", "seed": 0, "data": data, "encoder": encoder,
            "views": {"name": "graph.node_mask"}, "objective": {"name": "graph.graphmae"}, "train": TRAIN,
            **QUIET}  # fmt: skip


RUNS = {
    "gat-cora": lambda: graphmae_run({"name": "graph.planetoid", "dataset": "Cora"},
                                     {"name": "graph.gat", "hidden_dim": 32, "heads": 4}),
    "gin-synthetic": lambda: graphmae_run(SYNTHETIC, {"name": "graph.gin", "hidden_dim": 16, "num_layers": 3}),
}  # fmt: skip


@pytest.fixture(scope="module", params=sorted(RUNS))
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A tiny GraphMAE run and its pyg export."""
    root = None
    if request.param.endswith("cora"):
        root = str(request.getfixturevalue("planetoid_root"))
    base = tmp_path_factory.mktemp(request.param)
    ssl_core.run(RUNS[request.param](), root=root, out=base / "run")
    return request.param, base, root, export(base / "run", "pyg", base / "pyg", root=root)


PROBE = """
import sys, torch
folder, inputs, outputs = sys.argv[1:]
sys.path.insert(0, folder)
from model import load, with_self_loops
graph = torch.load(inputs)
model = load()
with torch.no_grad():
    nodes, hidden = model(graph["x"], with_self_loops(graph["edge_index"], graph["x"].shape[0]))
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("ssl_core", "ssl_graph"))
assert not leaked, f"model.py imported {leaked}"
torch.save({"nodes": nodes, "hidden": hidden, "class": type(model.convs[0]).__module__}, outputs)
"""


def test_the_export_rebuilds_in_plain_pyg_and_matches_the_encoder(exported: Any, tmp_path: Path) -> None:
    name, base, root, result = exported
    folder = base / "pyg"
    assert result.format == "pyg" and result.max_abs_diff <= 1e-5, result.max_abs_diff
    assert sorted(p.name for p in folder.iterdir()) == ["model.py", "model.safetensors", "pyg_model.json"]
    kwargs = json.loads((folder / "pyg_model.json").read_text())
    if name == "gat-cora":
        assert [kwargs[k] for k in ("arch", "heads", "hidden_dim", "add_self_loops")] == ["gat", 4, 32, False]
        # checked against the encoder's fused CSR path (as it ran) and against GATConv.propagate
        assert result.details["gat_path"] == "fused" and result.details["max_abs_diff_propagate_path"] <= 1e-5
    else:
        assert (kwargs["arch"], kwargs["num_layers"], kwargs["norm"]) == ("gin", 3, "batchnorm")
    loaded = ssl_core.load_encoder(base / "run", root=root)
    batch = loaded.splits.collate([loaded.splits.test[0]])
    # the user's graph: the edges as loaded, without the self-loops the dataset added
    edges = batch["edge_index"][:, batch["edge_index"][0] != batch["edge_index"][1]]
    torch.save({"x": batch["x"], "edge_index": edges}, tmp_path / "graph.pt")
    command = [sys.executable, "-c", PROBE, str(folder), str(tmp_path / "graph.pt"), str(tmp_path / "out.pt")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = torch.load(tmp_path / "out.pt")
    assert theirs["class"].startswith("torch_geometric.nn.conv")
    with torch.no_grad():
        ours = loaded.encoder.eval()(batch)
    assert (ours.pooled - theirs["nodes"]).abs().max() <= 1e-5
    assert len(theirs["hidden"]) == len(ours.layers or ())
    for mine, other in zip(ours.layers or (), theirs["hidden"], strict=True):
        assert (mine - other).abs().max() <= 1e-5


def _graph_level_splits() -> DatasetSplits:
    """Six small random graphs with Gaussian features, a graph-level dataset (batches carry a ``batch`` vector)."""
    g = torch.Generator().manual_seed(0)
    samples = []
    for n in (5, 7, 4, 6, 8, 5):
        src = torch.randint(n, (2 * n,), generator=g)
        dst = torch.randint(n, (2 * n,), generator=g)

        class _Graph:
            pass

        data = _Graph()
        data.x = torch.randn(n, 6, generator=g)  # type: ignore[attr-defined]
        data.edge_index = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], 1)  # type: ignore[attr-defined]
        sample = graph_batch(data)
        sample["y"] = torch.tensor(n % 2)
        samples.append(sample)
    return DatasetSplits(samples, samples, collate_graphs, "graph", 2, {"task": "graph", "in_dim": 6})  # type: ignore[arg-type]


def _source(name: str, encoder: torch.nn.Module) -> ExportSource:
    config = load_config({"encoder": {"name": name}, "views": {"name": "graph.node_mask"},
                          "objective": {"name": "graph.graphmae"}, "data": {"name": "graph.synthetic"}})  # fmt: skip
    return ExportSource(encoder, config, _graph_level_splits())


@pytest.mark.parametrize(
    ("name", "encoder"),
    [
        ("graph.gin", lambda: GINEncoder(in_dim=6, hidden_dim=8, num_layers=3, norm="graphnorm", pooling="sum")),
        ("graph.gat", lambda: GATEncoder(in_dim=6, hidden_dim=8, heads=2, residual=True, norm="layernorm",
                                         pooling="max", activation="elu")),
    ],
)  # fmt: skip
def test_batches_of_graphs_match_readouts_and_nodes(name: str, encoder: Any, tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = encoder()
    for norm in module.norms:  # non-trivial affine parameters, so a mismatched norm would show
        for p in norm.parameters():
            torch.nn.init.normal_(p)
    result = PyGExporter().export(_source(name, module), tmp_path / "pyg")
    assert result.max_abs_diff <= 1e-5 and "nodes" in result.details["outputs"]
    kwargs = json.loads((tmp_path / "pyg" / "pyg_model.json").read_text())
    assert kwargs["pooling"] == module.pooling and kwargs["norm"] in ("graphnorm", "layernorm")

    sys.path.insert(0, str(tmp_path / "pyg"))
    try:
        import model as exported_model  # type: ignore[import-not-found]

        rebuilt = exported_model.load()
    finally:
        sys.path.remove(str(tmp_path / "pyg"))
        sys.modules.pop("model", None)
    batch = collate_graphs([_graph_level_splits().test[i] for i in (3, 4, 5)])  # other graphs than the check's
    with torch.no_grad():
        ours = module.eval()(batch)
        edges = exported_model.with_self_loops(batch["edge_index"], len(batch["x"]))
        nodes, _ = rebuilt(batch["x"], edges, batch["batch"])
    assert (node_embeddings(ours, batch) - nodes).abs().max() <= 1e-5
    assert (ours.pooled - rebuilt.readout(nodes, batch["batch"])).abs().max() <= 1e-5


def test_the_torch_only_reader_reads_what_safetensors_reads(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    result = PyGExporter().export(_source("graph.gin", GINEncoder(in_dim=6, hidden_dim=8)), tmp_path / "pyg")
    sys.path.insert(0, result.path)
    try:
        import model as exported_model

        mine = exported_model.read_safetensors(tmp_path / "pyg" / "model.safetensors")
    finally:
        sys.path.remove(result.path)
        sys.modules.pop("model", None)
    reference = load_file(str(tmp_path / "pyg" / "model.safetensors"))
    assert sorted(mine) == sorted(reference) and any(t.dtype == torch.int64 for t in mine.values())
    for key, tensor in reference.items():
        assert mine[key].dtype == tensor.dtype and torch.equal(mine[key], tensor), key


def test_a_non_graph_encoder_is_told_which_formats_fit(tmp_path: Path) -> None:
    tiny = {"name": "tiny", "data": {"name": "core.digits"},
            "encoder": {"name": "core.mlp", "hidden_dim": 16, "embed_dim": 8}, "views": {"name": "core.noise"},
            "objective": {"name": "core.simclr", "hidden_dim": 16, "proj_dim": 8},
            "train": {"steps": 1, "batch_size": 32, "progress": False}, **QUIET}  # fmt: skip
    ssl_core.run(tiny, out=tmp_path / "run")
    expected = (
        r"format 'pyg' does not fit encoder 'core.mlp' \(graph.pyg: pyg takes graph.gat and graph.gin encoders; "
        r"this run's is core.mlp\); this encoder exports to: onnx, safetensors"
    )
    with pytest.raises(ExportError, match=expected):
        export(tmp_path / "run", "pyg", tmp_path / "pyg")
    assert not (tmp_path / "pyg").exists()
