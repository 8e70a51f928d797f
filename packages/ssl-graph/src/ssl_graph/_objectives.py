"""GraphMAE: masked node feature reconstruction with a re-masked GNN decoder and scaled cosine error.

Example:
    >>> import torch
    >>> from ssl_graph import GATEncoder, NodeMaskViews
    >>> enc = GATEncoder(in_dim=6, hidden_dim=8, heads=2)
    >>> objective = GraphMAEObjective(embed_dim=8, in_dim=6)
    >>> batch = {"x": torch.rand(12, 6), "edge_index": torch.tensor([[0, 1], [1, 0]])}
    >>> out = objective(enc, NodeMaskViews()(batch, torch.Generator().manual_seed(0)))
    >>> sorted(out)
    ['loss']
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from ssl_core import Views

from ._encoders import graph_structure, graphmae_init_, node_embeddings
from ._fused import fast_dropout, gat_forward_rows
from .functional import NodeMask, mask_node_features, sce_loss

__all__ = ["GraphMAEObjective"]

Decoder = Literal["gat", "gin", "mlp", "linear"]


class GraphMAEObjective(nn.Module):
    """GraphMAE (Hou et al., KDD 2022) on any graph encoder that returns node tokens.

    The view generator (:class:`~ssl_graph.NodeMaskViews`) picks the masked nodes; this
    objective owns the learnable ``[MASK]`` token, the encoder-to-decoder projection, the
    decoder and the loss. Steps: masked nodes' features become the token (or, for a
    ``replace_rate`` fraction, another node's features); encode; project; re-mask the
    masked nodes' codes to zero; decode with a one-layer GNN; scaled cosine error on the
    masked nodes only.

    Args:
        embed_dim: the encoder's output size (filled by the pipeline).
        in_dim: node feature size to reconstruct (filled from the dataset).
        alpha: exponent of the scaled cosine error (``alpha_l``).
        decoder: ``gat`` (one GAT layer, GraphMAE's node default), ``gin``, ``mlp`` or ``linear``
            (the last two see no edges and are not re-masked, as in the paper's code).
        decoder_heads: attention heads of the GAT decoder (``num_out_heads``).
        dropout: input dropout of the decoder; attn_dropout: its attention dropout.
        fused: run the GAT decoder through sparse CSR matmuls (same result, faster).

    Example:
        >>> GraphMAEObjective(embed_dim=512, in_dim=1433).mask_token.shape
        torch.Size([1, 1433])
    """

    requires_tokens: ClassVar[bool] = True
    requires_token_mask: ClassVar[bool] = False
    requires_layers: ClassVar[bool] = False

    def __init__(
        self,
        embed_dim: int,
        in_dim: int,
        alpha: float = 3.0,
        decoder: Decoder = "gat",
        decoder_heads: int = 1,
        dropout: float = 0.2,
        attn_dropout: float = 0.1,
        negative_slope: float = 0.2,
        fused: bool = True,
    ) -> None:
        super().__init__()
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        self.embed_dim, self.in_dim, self.alpha, self.decoder_type = embed_dim, in_dim, alpha, decoder
        self.dropout, self.fused = dropout, fused
        self.mask_token = nn.Parameter(torch.zeros(1, in_dim))
        self.encoder_to_decoder = nn.Linear(embed_dim, embed_dim, bias=False)
        self.decoder: nn.Module
        if decoder == "gat":
            from torch_geometric.nn import GATConv

            if in_dim % decoder_heads:
                raise ValueError(f"in_dim ({in_dim}) must be divisible by decoder_heads ({decoder_heads})")
            self.decoder = GATConv(
                embed_dim,
                in_dim // decoder_heads,
                heads=decoder_heads,
                concat=True,
                negative_slope=negative_slope,
                dropout=attn_dropout,
                add_self_loops=False,
            )
            graphmae_init_(self.decoder)
        elif decoder == "gin":
            from torch_geometric.nn import GINConv

            self.decoder = GINConv(
                nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.PReLU(), nn.Linear(embed_dim, in_dim))
            )
        elif decoder == "mlp":
            self.decoder = nn.Sequential(
                nn.Linear(embed_dim, embed_dim), nn.PReLU(), nn.Dropout(dropout), nn.Linear(embed_dim, in_dim)
            )
        elif decoder == "linear":
            self.decoder = nn.Linear(embed_dim, in_dim)
        else:
            raise ValueError(f"unknown decoder {decoder!r}; use gat, gin, mlp or linear")

    def forward(self, encoder: nn.Module, views: Views) -> dict[str, Tensor]:
        node_mask = views.extras.get("node_mask")
        if not isinstance(node_mask, NodeMask):
            raise ValueError(
                "GraphMAEObjective needs views from a node-masking view generator "
                "(views.name = 'graph.node_mask'), which put a NodeMask under extras['node_mask']"
            )
        batch: dict[str, Any] = views.batches[0]
        x: Tensor = batch["x"]
        masked_x = mask_node_features(x, node_mask, self.mask_token)
        tokens = node_embeddings(encoder({**batch, "x": masked_x}), batch)
        if tokens.shape[0] != x.shape[0]:
            raise ValueError(
                f"GraphMAEObjective needs one embedding per node: got {tokens.shape[0]} for {x.shape[0]} nodes"
            )
        codes = self.encoder_to_decoder(tokens)
        masked = node_mask.masked
        if self.decoder_type in ("gat", "gin"):
            codes = codes.index_fill(0, masked, 0.0)  # re-mask
            if self.decoder_type == "gat":
                codes = fast_dropout(codes, self.dropout, self.training)
            if self.decoder_type == "gat" and self.fused:  # only the masked rows are decoded
                structure = graph_structure(batch)
                reconstruction = gat_forward_rows(self.decoder, codes, structure, masked, training=self.training)
            else:
                reconstruction = self.decoder(codes, batch["edge_index"])[masked]
        else:
            reconstruction = self.decoder(codes[masked])
        loss = sce_loss(reconstruction, x[masked], self.alpha)
        self.__dict__["_last_loss"] = loss.detach()
        return {"loss": loss}

    def health(self) -> dict[str, float]:
        """The scaled cosine error on the masked nodes at the last step (``health/masked_sce``)."""
        last = self.__dict__.get("_last_loss")
        return {} if last is None else {"masked_sce": float(last)}
