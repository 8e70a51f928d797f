"""Graph folders (graph.memmap): writer and reader, the neighbour sampler on memory maps, resume, errors."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import ssl_core
from ssl_core.testing import DatasetConformance
from ssl_graph import (
    GraphDataError,
    NeighborSubgraphs,
    memmap,
    open_graph_folder,
    save_graph_folder,
    write_synthetic_graph,
)


def _edges(folder: Path) -> list[tuple[int, int]]:
    """Every stored edge ``(source, target)``, sorted (a multiset)."""
    arrays = open_graph_folder(folder).arrays()
    indptr, indices = arrays["indptr"], arrays["indices"]
    targets = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    return sorted(zip(indices.tolist(), targets.tolist(), strict=True))


@pytest.fixture
def id_graph(tmp_path: Path) -> tuple[Path, set[tuple[int, int]]]:
    """A random 200-node graph whose first feature is the node's id (so sampled rows name their node)."""
    generator = torch.Generator().manual_seed(0)
    num_nodes = 200
    edges = torch.randint(num_nodes, (2, 1500), generator=generator)
    x = torch.cat([torch.arange(num_nodes).unsqueeze(1).float(), torch.randn(num_nodes, 3, generator=generator)], 1)
    folder = tmp_path / "ids"
    save_graph_folder(folder, x, edges, y=torch.arange(num_nodes) % 4)
    return folder, {(int(s), int(t)) for s, t in edges.t().tolist()}


# ---------------------------------------------------------------- writer and reader


def test_synthetic_writer_and_reader_round_trip(tmp_path: Path) -> None:
    meta = write_synthetic_graph(tmp_path / "g", num_nodes=300, num_edges=1200, in_dim=6, num_classes=3)
    graph = open_graph_folder(tmp_path / "g")
    assert (graph.num_nodes, graph.num_edges, graph.num_features, graph.num_classes) == (300, 2400, 6, 3)
    assert json.loads((tmp_path / "g" / "meta.json").read_text()) == {k: v for k, v in meta.items() if k != "seconds"}
    arrays = graph.arrays()
    assert not arrays["x"].flags.writeable and arrays["x"].dtype == np.float16  # a read-only map
    assert arrays["indices"].dtype == np.int32 and arrays["indptr"].dtype == np.int64
    edges = _edges(tmp_path / "g")
    assert edges == sorted((t, s) for s, t in edges)  # every edge stored both ways
    assert not any(s == t for s, t in edges)
    y = arrays["y"]
    same_class = np.mean([y[s] == y[t] for s, t in edges])
    assert same_class > 0.7  # homophily 0.8 (+ chance)
    x = np.asarray(arrays["x"], dtype=np.float32)
    centres = np.stack([x[y == c].mean(axis=0) for c in range(3)])
    assert np.linalg.norm(centres[0] - centres[1]) > 1.0  # class-dependent features
    # the same seed writes the same graph, in one chunk or in many
    write_synthetic_graph(tmp_path / "h", num_nodes=300, num_edges=200_000, in_dim=6, num_classes=3)
    write_synthetic_graph(tmp_path / "i", num_nodes=300, num_edges=200_000, in_dim=6, num_classes=3, chunk_edges=1)
    assert _edges(tmp_path / "h") == _edges(tmp_path / "i")
    for name in ("x.npy", "y.npy", "indptr.npy"):
        assert (tmp_path / "h" / name).read_bytes() == (tmp_path / "i" / name).read_bytes()


def test_save_graph_folder_round_trip(id_graph: tuple[Path, set[tuple[int, int]]]) -> None:
    folder, edges = id_graph
    assert set(_edges(folder)) == edges
    graph = open_graph_folder(folder)
    assert graph.features(torch.tensor([5, 0]))[:, 0].tolist() == [5.0, 0.0]
    assert graph.labels(torch.tensor([5, 6])).tolist() == [1, 2]  # type: ignore[union-attr]


def test_writer_refuses_a_folder_with_files(tmp_path: Path) -> None:
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "notes.txt").write_text("mine")
    with pytest.raises(GraphDataError, match=r"already holds files"):
        write_synthetic_graph(tmp_path / "g", num_nodes=10, num_edges=20, in_dim=2)
    assert (tmp_path / "g" / "notes.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["g"]  # no half-written folder left beside it


def test_cli_writes_a_folder_the_dataset_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "cli"
    argv = ["graph-synthetic", str(folder), "--num-nodes", "120", "--num-edges", "400", "--in-dim", "4",
            "--num-classes", "2", "--no-progress"]  # fmt: skip
    assert ssl_core.cli_main(argv) == 0
    assert "120 nodes, 400 undirected edges (800 CSR entries)" in capsys.readouterr().out
    splits = memmap(str(folder), num_neighbors=[2], eval_nodes=40)
    assert splits.info["num_nodes"] == 120 and splits.num_classes == 2


# ---------------------------------------------------------------- the sampler on memory maps


def test_sampled_subgraphs_are_valid(id_graph: tuple[Path, set[tuple[int, int]]]) -> None:
    folder, edges = id_graph
    splits = memmap(str(folder), num_neighbors=[4, 3], eval_nodes=20)
    seeds = [17, 3, 150, 42, 99, 0]
    sub = splits.pretrain_collate(seeds)
    ids = sub["x"][:, 0].long()
    assert sub["num_seed_nodes"] == 6 and ids[:6].tolist() == seeds  # seeds first
    assert len(set(ids.tolist())) == len(ids)  # each node once
    assert sub["y"].tolist() == (ids % 4).tolist()
    src, dst = sub["edge_index"]
    assert int(sub["edge_index"].max()) < len(ids)  # edges only among sampled nodes
    loops = src == dst
    assert torch.equal(torch.sort(dst[loops]).values, torch.arange(len(ids)))  # exactly one self-loop per node
    for s, t in zip(ids[src[~loops]].tolist(), ids[dst[~loops]].tolist(), strict=True):
        assert (s, t) in edges  # every other edge is a real one
    in_degree = torch.bincount(dst[~loops], minlength=len(ids))
    assert int(in_degree[:6].max()) <= 4  # at most k = 4 neighbours per seed in the first hop
    assert sub["structure"].num_edges == sub["edge_index"].shape[1]


def test_sampling_is_determined_by_seed_epoch_and_batch(id_graph: tuple[Path, set[tuple[int, int]]]) -> None:
    folder, _ = id_graph

    def batch(seed: int = 0, epoch: int = 0, in_memory: bool = False) -> dict[str, Any]:
        dataset = memmap(str(folder), num_neighbors=[3, 3], seed=seed, eval_nodes=20, in_memory=in_memory).pretrain
        assert isinstance(dataset, NeighborSubgraphs)
        dataset.set_epoch(epoch)
        return dataset.collate(list(range(10, 30)))

    def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
        return torch.equal(a["x"], b["x"]) and torch.equal(a["edge_index"], b["edge_index"])

    first = batch()
    assert same(first, batch())
    assert same(first, batch(in_memory=True))  # the arrays read whole sample the same subgraph
    assert not same(first, batch(epoch=1)) and not same(first, batch(seed=1))
    dataset = memmap(str(folder), num_neighbors=[3, 3], eval_nodes=20).pretrain
    assert isinstance(dataset, NeighborSubgraphs) and dataset.decodes_lazily
    loader = DataLoader(dataset, batch_sampler=[list(range(10, 30))], collate_fn=dataset.collate, num_workers=1)
    assert same(first, next(iter(loader)))  # a worker draws what the main process draws


def test_memmap_matches_the_in_memory_sampler_on_the_same_graph(
    id_graph: tuple[Path, set[tuple[int, int]]],
) -> None:
    folder, _ = id_graph
    x = open_graph_folder(folder).features(torch.arange(200))
    edge_index = torch.tensor(_edges(folder)).t()  # duplicates and self-loops included, as stored
    in_memory = NeighborSubgraphs({"x": x, "edge_index": edge_index}, [3, 2])
    mapped = memmap(str(folder), num_neighbors=[3, 2], eval_nodes=20).pretrain
    assert isinstance(mapped, NeighborSubgraphs)
    a, b = in_memory.collate(list(range(8))), mapped.collate(list(range(8)))
    assert torch.equal(a["x"], b["x"]) and torch.equal(a["edge_index"], b["edge_index"])


def _resident_kb(path: Path) -> int:
    """Resident kB of this process's mappings of ``path`` (from /proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):  # a mapping's header line; its fields follow
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").is_file(), reason="reads /proc/self/smaps (Linux)")
def test_mapped_pages_leave_the_resident_set_after_each_batch(tmp_path: Path) -> None:
    write_synthetic_graph(tmp_path / "g", num_nodes=20_000, num_edges=80_000, in_dim=64)
    dataset = memmap(str(tmp_path / "g"), num_neighbors=[10, 10], eval_nodes=20).pretrain
    assert isinstance(dataset, NeighborSubgraphs)
    graph = dataset.source
    rows = graph.arrays()["x"]  # type: ignore[attr-defined]
    assert float(np.asarray(rows[::64], dtype=np.float32).sum()) != 0.0  # touch a page in every 2 of x.npy
    assert _resident_kb(tmp_path / "g" / "x.npy") > 1000
    batch = dataset.collate(list(range(0, 20_000, 40)))
    assert batch["x"].shape[0] > 5000
    for name in ("x.npy", "indices.npy", "indptr.npy", "y.npy"):
        assert _resident_kb(tmp_path / "g" / name) == 0, name


class TestMemmapDatasetConformance(DatasetConformance):
    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path: Path) -> None:
        self.root = str(tmp_path / "g")
        write_synthetic_graph(self.root, num_nodes=150, num_edges=600, in_dim=5, num_classes=3)

    def make_provider(self) -> Any:
        return memmap

    def provider_options(self) -> dict[str, Any]:
        return {"num_neighbors": [3], "eval_nodes": 40}


# ---------------------------------------------------------------- training through ssl run


def _pipeline(folder: Path, steps: int, **train: Any) -> dict[str, Any]:
    return {
        "seed": 0,
        "data": {"name": "graph.memmap", "root": str(folder), "num_neighbors": [5, 5], "eval_nodes": 300},
        "encoder": {"name": "graph.gat", "hidden_dim": 32, "heads": 4},
        "views": {"name": "graph.node_mask", "mask_rate": 0.5, "replace_rate": 0.05},
        "objective": {"name": "graph.graphmae", "alpha": 2.0},
        "train": {"steps": steps, "batch_size": 64, "lr": 0.01, "optimizer": "adam", "log_every": 1,
                  "progress": False, "threads": 1, **train},
        "evaluate": [],
        "plots": False,
        "compare_random_init": False,
    }  # fmt: skip


def test_graphmae_on_a_memmapped_graph_learns(tmp_path: Path) -> None:
    write_synthetic_graph(tmp_path / "g", num_nodes=2000, num_edges=8000, in_dim=16, num_classes=4)
    config = _pipeline(tmp_path / "g", steps=40, num_workers=0)
    config["evaluate"] = [{"name": "graph.node_probe", "epochs": 100}]
    result = ssl_core.run(config)
    losses = [row["loss"] for row in result.history]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    assert result.metrics["evaluations"]["graph.node_probe"]["accuracy"] > 0.5  # 4 classes: chance is 0.25


def test_resume_mid_epoch_with_a_worker_is_exact(tmp_path: Path) -> None:
    write_synthetic_graph(tmp_path / "g", num_nodes=600, num_edges=2400, in_dim=8, num_classes=3)
    config = _pipeline(tmp_path / "g", steps=6, num_workers=1, checkpoint_every=1, keep_checkpoints=6)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    ssl_core.run(config, out=straight)
    shutil.copytree(straight, resumed)
    for step in (4, 5, 6):  # as if killed after step 3 (mid-epoch: 9 batches of 64 per epoch)
        (resumed / "checkpoints" / f"step-{step:06d}.pt").unlink()
    assert ssl_core.run(config, out=resumed, resume=True).metrics["train"]["resumed_from"] == 3
    with (straight / "log.csv").open() as a, (resumed / "log.csv").open() as b:
        losses = [row["loss"] for row in csv.DictReader(a)]
        assert len(losses) == 6 and losses == [row["loss"] for row in csv.DictReader(b)]
    x = ssl_core.load_checkpoint(straight / "checkpoints" / "step-000006.pt", weights_only=False)["model"]
    y = ssl_core.load_checkpoint(resumed / "checkpoints" / "step-000006.pt", weights_only=False)["model"]
    assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


# ---------------------------------------------------------------- corrupt and mismatched folders


@pytest.fixture
def small_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "g"
    save_graph_folder(folder, torch.randn(6, 2), torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]]), y=torch.arange(6) % 2)
    return folder


def test_indptr_that_disagrees_with_x_names_both_sizes(small_folder: Path) -> None:
    np.save(small_folder / "indptr.npy", np.array([0, 1, 2, 3, 4], dtype=np.int64))
    with pytest.raises(GraphDataError, match=r"indptr\.npy has 5 entries \(so 4 nodes\) but x\.npy has 6 rows"):
        open_graph_folder(small_folder)


def test_indices_shorter_than_indptr_says_so(small_folder: Path) -> None:
    np.save(small_folder / "indices.npy", np.array([0, 1, 2], dtype=np.int32))
    with pytest.raises(GraphDataError, match=r"indptr\.npy runs from 0 to 4 but indices\.npy has 3 entries"):
        open_graph_folder(small_folder)


def test_labels_of_the_wrong_length_name_y(small_folder: Path) -> None:
    np.save(small_folder / "y.npy", np.zeros(5, dtype=np.int64))
    with pytest.raises(GraphDataError, match=r"y\.npy has shape \(5,\) of int64 but x\.npy has 6 rows"):
        open_graph_folder(small_folder)


def test_meta_json_that_disagrees_with_the_arrays_names_both(small_folder: Path) -> None:
    meta = json.loads((small_folder / "meta.json").read_text())
    (small_folder / "meta.json").write_text(json.dumps({**meta, "num_edges": 40}))
    with pytest.raises(GraphDataError, match=r"meta\.json records num_edges = 40 but the arrays have 4"):
        open_graph_folder(small_folder)


def test_missing_and_unreadable_files_are_named(small_folder: Path, tmp_path: Path) -> None:
    (small_folder / "x.npy").write_bytes(b"not an array")
    with pytest.raises(GraphDataError, match=r"x\.npy is not a readable \.npy array"):
        open_graph_folder(small_folder)
    (small_folder / "x.npy").unlink()
    with pytest.raises(GraphDataError, match=r"x\.npy is missing; expected x\.npy \[N, F\]"):
        open_graph_folder(small_folder)
    with pytest.raises(GraphDataError, match=r"graph\.memmap needs --root"):
        memmap()
    with pytest.raises(GraphDataError, match=r"does not exist"):
        open_graph_folder(tmp_path / "nowhere")


def test_an_edge_to_a_node_beyond_x_is_named_when_sampled(small_folder: Path) -> None:
    np.save(small_folder / "indices.npy", np.array([0, 1, 2, 60], dtype=np.int32))  # the edge into node 4
    graph = open_graph_folder(small_folder)  # opening reads no edge
    sampler = NeighborSubgraphs(graph, [5])
    assert sampler.collate([0, 1])["x"].shape[0] == 2  # edges not met are not checked
    with pytest.raises(GraphDataError, match=r"indices\.npy refers to node 60 but x\.npy has 6 rows"):
        sampler.collate([4, 5])
