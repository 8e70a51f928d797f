"""Behaviour of the GraphMAE pieces: fused GAT equals PyG's, masking, loss, encoders, views, evaluators."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from torch_geometric.nn import GATConv

from ssl_core import Views
from ssl_core.testing import (
    DatasetConformance,
    EncoderConformance,
    EvaluatorConformance,
    ObjectiveConformance,
    ViewGeneratorConformance,
)
from ssl_graph import (
    GATEncoder,
    GINEncoder,
    GraphAugmentViews,
    GraphMAEObjective,
    GraphSVMEvaluator,
    NodeMaskViews,
    NodeProbeEvaluator,
    collate_graphs,
    functional,
    graph_batch,
    node_embeddings,
    synthetic,
)
from ssl_graph._fused import fast_dropout, gat_forward, gat_forward_rows


def small_graph(num_nodes: int = 60, in_dim: int = 12, seed: int = 0) -> dict[str, Any]:
    return synthetic(num_nodes=num_nodes, num_classes=3, in_dim=in_dim, seed=seed).train[0]  # type: ignore[no-any-return]


def graph_level_batch() -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    graphs = []
    for i in range(6):
        n = 4 + i
        ring = torch.arange(n)
        edges = torch.stack([ring, (ring + 1) % n])
        sample = graph_batch(_Graph(torch.randn(n, 5, generator=g), torch.cat([edges, edges.flip(0)], dim=1)))
        sample["y"] = torch.tensor(i % 2)
        graphs.append(sample)
    return collate_graphs(graphs)


class _Graph:
    def __init__(self, x: torch.Tensor | None, edge_index: torch.Tensor) -> None:
        self.x, self.edge_index = x, edge_index


# ---------------------------------------------------------------- fused GAT == torch_geometric GATConv


@pytest.mark.parametrize("heads", [1, 3])
def test_fused_gat_matches_pyg_forward_and_gradients(heads: int) -> None:
    torch.manual_seed(0)
    batch = small_graph()
    x, edge_index = batch["x"], batch["edge_index"]
    conv = GATConv(x.shape[1], 5, heads=heads, add_self_loops=False, dropout=0.0)
    expected = conv(x, edge_index)
    (expected**2).sum().backward()
    reference = {n: p.grad.clone() for n, p in conv.named_parameters()}  # type: ignore[union-attr]
    conv.zero_grad()
    got = gat_forward(conv, x, batch["structure"])
    (got**2).sum().backward()
    assert torch.allclose(got, expected, atol=1e-5)
    for name, p in conv.named_parameters():
        assert torch.allclose(p.grad, reference[name], atol=1e-4), name  # type: ignore[arg-type]


def test_fused_rows_matches_pyg_on_the_requested_rows() -> None:
    torch.manual_seed(1)
    batch = small_graph()
    x = batch["x"].clone().requires_grad_(True)
    rows = torch.tensor([5, 0, 17, 33])
    conv = GATConv(x.shape[1], 20, heads=2, add_self_loops=False, dropout=0.0)
    expected = conv(x, batch["edge_index"])[rows]
    (expected.sin()).sum().backward()
    grad_x, grad_w = x.grad.clone(), conv.lin.weight.grad.clone()  # type: ignore[union-attr]
    x.grad, conv.lin.weight.grad = None, None
    got = gat_forward_rows(conv, x, batch["structure"], rows)
    (got.sin()).sum().backward()
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(x.grad, grad_x, atol=1e-5)  # type: ignore[arg-type]
    assert torch.allclose(conv.lin.weight.grad, grad_w, atol=1e-4)  # type: ignore[arg-type]


def test_fused_gat_runs_under_bf16_autocast() -> None:
    batch = small_graph()
    conv = GATConv(batch["x"].shape[1], 8, heads=2, add_self_loops=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = gat_forward(conv, batch["x"], batch["structure"], training=True)
    out.float().sum().backward()
    assert torch.isfinite(out).all() and conv.lin.weight.grad is not None


def test_fast_dropout_keeps_the_expectation() -> None:
    torch.manual_seed(0)
    x = torch.ones(200_000)
    y = fast_dropout(x, 0.2, True)
    assert abs(float((y == 0).float().mean()) - 0.2) < 0.005
    assert abs(float(y.mean()) - 1.0) < 0.01
    assert fast_dropout(x, 0.2, False) is x


# ---------------------------------------------------------------- masking and loss


def test_node_mask_counts_follow_graphmae() -> None:
    mask = functional.sample_node_mask(2708, 0.5, 0.05, torch.Generator().manual_seed(0))
    assert len(mask.masked) == 1354 and len(mask.token) == 1286 and len(mask.noise) == 67
    assert set(mask.token.tolist()).isdisjoint(mask.noise.tolist())
    assert set(mask.token.tolist()) | set(mask.noise.tolist()) <= set(mask.masked.tolist())


def test_node_mask_is_seeded() -> None:
    a = functional.sample_node_mask(100, 0.3, 0.1, torch.Generator().manual_seed(7))
    b = functional.sample_node_mask(100, 0.3, 0.1, torch.Generator().manual_seed(7))
    assert torch.equal(a.masked, b.masked) and torch.equal(a.noise_source, b.noise_source)


@pytest.mark.parametrize("rate", [0.0, 1.0, -0.1])
def test_mask_rate_outside_the_open_interval_is_rejected(rate: float) -> None:
    with pytest.raises(ValueError, match=r"mask_rate must be in \(0, 1\)"):
        NodeMaskViews(mask_rate=rate)


def test_masked_features_take_token_and_noise_and_token_learns() -> None:
    x = torch.arange(12.0).view(6, 2)
    mask = functional.NodeMask(
        masked=torch.tensor([0, 1, 2]),
        token=torch.tensor([0, 1]),
        noise=torch.tensor([2]),
        noise_source=torch.tensor([5]),
    )
    token = torch.zeros(1, 2, requires_grad=True)
    out = functional.mask_node_features(x, mask, token)
    assert out[:2].abs().sum() == 0 and torch.equal(out[2], x[5]) and torch.equal(out[3:], x[3:])
    out.sum().backward()
    assert torch.equal(token.grad, torch.tensor([[2.0, 2.0]]))  # type: ignore[arg-type]


def test_sce_loss_matches_the_formula() -> None:
    a, b = torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    cos = torch.tensor([1.0, 2**-0.5])
    assert torch.isclose(functional.sce_loss(a, b, alpha=3.0), ((1 - cos) ** 3).mean())


def test_graph_preparation_adds_exactly_one_self_loop_per_node() -> None:
    edges = torch.tensor([[0, 1, 1, 1], [1, 0, 1, 1]])  # two copies of the self-loop on node 1; node 2 isolated
    batch = graph_batch(_Graph(torch.ones(3, 2), edges))
    ei = batch["edge_index"]
    loops = ei[:, ei[0] == ei[1]]
    assert sorted(loops[0].tolist()) == [0, 1, 2]


def test_graph_without_features_gets_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"no node features.*features='degree'"):
        graph_batch(_Graph(None, torch.tensor([[0], [1]])))


def test_edges_outside_the_graph_are_named() -> None:
    with pytest.raises(ValueError, match=r"refers to node 7 but the graph has 3 nodes"):
        graph_batch(_Graph(torch.ones(3, 2), torch.tensor([[0], [7]])))


def test_nan_features_are_named() -> None:
    x = torch.ones(3, 2)
    x[1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or infinite features.*node 1"):
        graph_batch(_Graph(x, torch.tensor([[0], [1]])))


# ---------------------------------------------------------------- encoders and pooling


def test_unfused_and_fused_encoders_agree() -> None:
    torch.manual_seed(0)
    batch = small_graph()
    fused = GATEncoder(in_dim=12, hidden_dim=16, heads=4).eval()
    plain = GATEncoder(in_dim=12, hidden_dim=16, heads=4, fused=False).eval()
    plain.load_state_dict(fused.state_dict())
    assert torch.allclose(fused(batch).pooled, plain(batch).pooled, atol=1e-5)


def test_graph_level_batches_pool_per_graph_and_pad_tokens() -> None:
    batch = graph_level_batch()
    out = GINEncoder(in_dim=5, hidden_dim=8, pooling="sum")(batch)
    assert out.pooled.shape == (6, 8)
    assert out.tokens is not None and out.tokens.shape == (6, 9, 8) and out.padding_mask is not None
    assert int((~out.padding_mask).sum()) == batch["x"].shape[0]
    assert node_embeddings(out, batch).shape == (batch["x"].shape[0], 8)


def test_encoder_rejects_wrong_feature_width() -> None:
    with pytest.raises(ValueError, match=r"built for 7 node features"):
        GATEncoder(in_dim=7, hidden_dim=8, heads=2)(small_graph())


class TestGATEncoderConformance(EncoderConformance):
    def make_encoder(self) -> nn.Module:
        return GATEncoder(in_dim=12, hidden_dim=16, heads=4)

    def make_batch(self) -> dict[str, Any]:
        return small_graph()


class TestGINEncoderConformance(EncoderConformance):
    def make_encoder(self) -> nn.Module:
        return GINEncoder(in_dim=5, hidden_dim=8, norm="layernorm")

    def make_batch(self) -> dict[str, Any]:
        return graph_level_batch()

    def batch_size(self, batch: dict[str, Any]) -> int:
        return int(batch["num_graphs"])


class TestNodeMaskViewsConformance(ViewGeneratorConformance):
    def make_views(self) -> NodeMaskViews:
        return NodeMaskViews(mask_rate=0.5, replace_rate=0.1, drop_edge_rate=0.2)

    def make_batch(self) -> dict[str, Any]:
        return small_graph()


class TestGraphMAEObjectiveConformance(ObjectiveConformance):
    def make_objective(self, embed_dim: int) -> nn.Module:
        return GraphMAEObjective(embed_dim=embed_dim, in_dim=12, alpha=2.0)

    def make_encoder(self) -> nn.Module:
        return GATEncoder(in_dim=12, hidden_dim=16, heads=2)

    def make_views(self) -> Views:
        return NodeMaskViews(mask_rate=0.5, replace_rate=0.1)(small_graph(), torch.Generator().manual_seed(0))


def test_graphmae_needs_node_mask_views() -> None:
    objective = GraphMAEObjective(embed_dim=16, in_dim=12)
    with pytest.raises(ValueError, match=r"graph.node_mask"):
        objective(GATEncoder(in_dim=12, hidden_dim=16, heads=2), Views(batches=[small_graph()]))


@pytest.mark.parametrize("decoder", ["gin", "mlp", "linear"])
def test_other_decoders_train(decoder: str) -> None:
    torch.manual_seed(0)
    enc, obj = GATEncoder(in_dim=12, hidden_dim=16, heads=2), GraphMAEObjective(16, 12, decoder=decoder)  # type: ignore[arg-type]
    loss = obj(enc, NodeMaskViews()(small_graph(), torch.Generator().manual_seed(0)))["loss"]
    loss.backward()
    assert torch.isfinite(loss) and obj.mask_token.grad is not None


class TestNodeProbeConformance(EvaluatorConformance):
    def make_evaluator(self) -> NodeProbeEvaluator:
        return NodeProbeEvaluator(epochs=30)

    def make_encoder(self) -> nn.Module:
        return GATEncoder(in_dim=12, hidden_dim=16, heads=2)

    def make_splits(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        graph = small_graph(num_nodes=200)
        return [graph], [graph]


class TestGraphSVMConformance(EvaluatorConformance):
    def make_evaluator(self) -> GraphSVMEvaluator:
        return GraphSVMEvaluator(folds=3)

    def make_encoder(self) -> nn.Module:
        return GINEncoder(in_dim=5, hidden_dim=8)

    def make_splits(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return [graph_level_batch(), graph_level_batch()], [graph_level_batch()]


class TestSyntheticDatasetConformance(DatasetConformance):
    def make_provider(self) -> Any:
        return synthetic

    def provider_options(self) -> dict[str, Any]:
        return {"num_nodes": 120, "num_classes": 3, "in_dim": 6}


def test_node_probe_separates_a_homophilous_graph() -> None:
    splits = synthetic(num_nodes=600, num_classes=3, in_dim=8, homophily=0.9, noise=0.5)
    graph = splits.train[0]

    class Identity(nn.Module):
        embed_dim = 8

        def forward(self, batch: dict[str, Any]) -> Any:
            from ssl_core import Features

            return Features(pooled=batch["x"])

    scores = NodeProbeEvaluator(epochs=200)(Identity(), [graph], [graph])
    assert scores["accuracy"] > 0.9 and 0.0 <= scores["val_accuracy"] <= 1.0


def test_node_probe_explains_graph_level_input() -> None:
    with pytest.raises(ValueError, match=r"graph.svm"):
        NodeProbeEvaluator()(GINEncoder(in_dim=5, hidden_dim=8), [graph_level_batch()], [])


def test_graph_svm_caps_the_solver_and_names_itself() -> None:
    batches = [graph_level_batch(), graph_level_batch()]
    enc = GINEncoder(in_dim=5, hidden_dim=8)
    with pytest.warns(RuntimeWarning, match=r"graph\.svm: .*max_iter=1 "):
        scores = GraphSVMEvaluator(folds=3, max_iter=1)(enc, batches, [])
    assert 0.0 <= scores["accuracy"] <= 1.0
    with pytest.raises(ValueError, match="max_iter"):
        GraphSVMEvaluator(max_iter=0)


# ---------------------------------------------------------------- neighbour sampling


def test_neighbor_subgraphs_put_seeds_first_and_keep_real_edges() -> None:
    splits = synthetic(num_nodes=400, in_dim=4, batch_nodes=16, num_neighbors=(3, 2))
    graph = splits.train[0]
    full = {tuple(e) for e in graph["edge_index"].t().tolist()}
    sub = splits.pretrain_collate(list(range(100, 116)))
    assert sub["num_seed_nodes"] == 16
    assert torch.equal(sub["x"][:16], graph["x"][100:116])
    # every sampled edge exists in the full graph (mapped back through the features)
    ids = [int((graph["x"] == row).all(dim=1).nonzero()[0]) for row in sub["x"]]
    for s, t in sub["edge_index"].t().tolist():
        assert (ids[s], ids[t]) in full
    src, dst = sub["edge_index"]
    loops = src == dst
    assert torch.equal(torch.sort(dst[loops]).values, torch.arange(len(sub["x"])))  # one self-loop per node
    degree = torch.bincount(dst[~loops][dst[~loops] < 16], minlength=16)
    assert int(degree.max()) <= 3  # at most k sampled in-neighbours per seed besides its self-loop


class TestGraphAugmentViewsConformance(ViewGeneratorConformance):
    def make_views(self) -> GraphAugmentViews:
        return GraphAugmentViews()

    def make_batch(self) -> dict[str, Any]:
        return small_graph()


def test_augment_views_drop_edges_and_mask_whole_feature_columns() -> None:
    batch = small_graph(num_nodes=200, in_dim=40)
    views = GraphAugmentViews(drop_edge_rates=(0.0, 0.5), feature_mask_rates=(0.5, 0.0))
    first, second = views(batch, torch.Generator().manual_seed(0)).batches
    zeroed = (first["x"] == 0).all(dim=0) & (batch["x"] != 0).any(dim=0)
    kept = (first["x"] == batch["x"]).all(dim=0)
    assert bool((zeroed | kept).all()) and 5 < int(zeroed.sum()) < 35  # columns, for every node at once
    assert torch.equal(first["edge_index"], batch["edge_index"]) and torch.equal(second["x"], batch["x"])
    edges = {tuple(e) for e in batch["edge_index"].t().tolist()}
    left = {tuple(e) for e in second["edge_index"].t().tolist()}
    assert left < edges and 0.3 < len(left) / len(edges) < 0.7
    with pytest.raises(ValueError, match="two rates in"):
        GraphAugmentViews(drop_edge_rates=(0.2,))  # type: ignore[arg-type]


def test_graphmae_reports_the_masked_sce() -> None:
    torch.manual_seed(0)
    enc, obj = GATEncoder(in_dim=12, hidden_dim=16, heads=2), GraphMAEObjective(16, 12)
    assert obj.health() == {}
    loss = float(obj(enc, NodeMaskViews()(small_graph(), torch.Generator().manual_seed(0)))["loss"])
    assert obj.health() == {"masked_sce": pytest.approx(loss)}
