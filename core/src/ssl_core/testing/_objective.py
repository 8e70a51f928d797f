"""Conformance tests for objectives: ``objective(encoder, views) -> {"loss": ..., **scalars}``."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import Tensor, nn

from .._capabilities import flag, requirements
from .._protocols import Views
from ._doubles import ToyEncoder, toy_batch, toy_views
from ._support import assert_declares_flags, assert_registers, embed_dim_of

__all__ = ["ObjectiveConformance"]


class ObjectiveConformance:
    """Subclass in a ``Test*`` class and implement :meth:`make_objective`.

    By default the objective is tested on a :class:`~ssl_core.testing.ToyEncoder`
    (which provides tokens, token masks and layers) and two noisy
    :func:`~ssl_core.testing.toy_views` of a :func:`~ssl_core.testing.toy_batch`
    carrying token masks; override :meth:`make_encoder` and :meth:`make_views` to
    use real ones.

    Checks: requirement flags are declared and met by the encoder; the result is a
    dict with a finite scalar ``loss`` that has a gradient reaching the encoder;
    other values are finite scalar tensors; the loss decreases over
    ``train_steps`` AdamW steps on one fixed batch (with ``on_step_end`` called
    after each); ``on_step_end(step, max_steps)`` is callable when present; the
    state dict round-trips; the class passes core's registration check.

    Example:
        >>> class TestMyObjective(ObjectiveConformance):  # doctest: +SKIP
        ...     def make_objective(self, embed_dim):
        ...         return MyObjective(embed_dim=embed_dim, proj_dim=32)
    """

    seed: int = 0
    """Seeds ``torch`` before the encoder and objective are built."""
    train_steps: int = 10
    """Optimizer steps of the loss-decrease check."""
    lr: float = 1e-3
    """AdamW learning rate of the loss-decrease check."""

    def make_objective(self, embed_dim: int) -> nn.Module:
        """A small instance of the objective under test, for an encoder of width ``embed_dim``."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_objective(embed_dim)")

    def make_encoder(self) -> nn.Module:
        """The encoder to train through; default: a :class:`ToyEncoder` (12 features in, 16 out)."""
        return ToyEncoder(in_dim=12, embed_dim=16)

    def make_views(self) -> Views:
        """Fixed views fed to the objective; default: two noisy toy views with random token masks."""
        return toy_views(toy_batch(batch_size=16, num_tokens=6, in_dim=12), num_views=2, mask_ratio=0.5)

    # ------------------------------------------------------------------ helpers

    def _build(self) -> tuple[nn.Module, nn.Module, Views]:
        torch.manual_seed(self.seed)
        encoder = self.make_encoder()
        objective = self.make_objective(embed_dim_of(encoder))
        for capability in requirements():
            need, has = capability.name, capability.provided_by
            if flag(objective, need):
                assert has is not None and flag(encoder, has), (
                    f"the objective sets {need}=True but the test encoder has {has}=False; "
                    f"override make_encoder() with an encoder that provides it"
                )
        return encoder, objective, self.make_views()

    @staticmethod
    def _call(objective: nn.Module, encoder: nn.Module, views: Views) -> dict[str, Tensor]:
        out = objective(encoder, views)
        assert isinstance(out, dict), f"{type(objective).__name__} must return a dict, got {type(out).__name__}"
        assert "loss" in out, f"the result must hold a 'loss' key, got keys {sorted(out)}"
        return out

    # ------------------------------------------------------------------ tests

    def test_declares_requirements(self) -> None:
        _, objective, _ = self._build()
        assert_declares_flags(objective, "objective")

    def test_is_a_module(self) -> None:
        _, objective, _ = self._build()
        assert isinstance(objective, nn.Module), "an objective is an nn.Module, so its heads train and checkpoint"

    def test_returns_finite_scalar_loss_with_grad(self) -> None:
        encoder, objective, views = self._build()
        loss = self._call(objective, encoder, views)["loss"]
        assert isinstance(loss, Tensor) and loss.dim() == 0, f"loss must be a 0-dim tensor, got {loss!r}"
        assert loss.is_floating_point() and torch.isfinite(loss), f"loss must be a finite float, got {loss!r}"
        assert loss.requires_grad, "loss has no gradient (computed under no_grad, or detached?)"

    def test_other_values_are_finite_scalars(self) -> None:
        encoder, objective, views = self._build()
        for key, value in self._call(objective, encoder, views).items():
            assert isinstance(key, str), f"keys must be str, got {key!r}"
            assert isinstance(value, Tensor) and value.dim() == 0, f"{key!r} must be a 0-dim tensor, got {value!r}"
            assert torch.isfinite(value.detach().float()), f"{key!r} is not finite: {value!r}"

    def test_loss_reaches_encoder_parameters(self) -> None:
        encoder, objective, views = self._build()
        self._call(objective, encoder, views)["loss"].backward()
        reached = [n for n, p in encoder.named_parameters() if p.grad is not None and bool(p.grad.abs().sum() > 0)]
        assert reached, "the loss has no gradient with respect to any encoder parameter"

    def test_loss_decreases_on_fixed_batch(self) -> None:
        encoder, objective, views = self._build()
        params = [p for p in itertools.chain(encoder.parameters(), objective.parameters()) if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=0.0)
        on_step_end = getattr(objective, "on_step_end", None)
        losses = []
        for step in range(1, self.train_steps + 1):
            loss = self._call(objective, encoder, views)["loss"]
            losses.append(float(loss.detach()))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if callable(on_step_end):
                on_step_end(step, self.train_steps)
        with torch.no_grad():
            losses.append(float(self._call(objective, encoder, views)["loss"]))
        assert losses[-1] < losses[0], (
            f"loss did not decrease over {self.train_steps} steps on a fixed batch: {[round(v, 4) for v in losses]}; "
            "tune train_steps/lr on the test class if the objective is slow to start"
        )

    def test_on_step_end_is_callable(self) -> None:
        _, objective, _ = self._build()
        on_step_end = getattr(objective, "on_step_end", None)
        if on_step_end is None:
            pytest.skip("the objective has no on_step_end")
        assert callable(on_step_end), "on_step_end must be a method"
        for step in (1, 5, 10):
            on_step_end(step, 10)

    def test_state_dict_round_trips(self) -> None:
        encoder, objective, _ = self._build()
        fresh = self.make_objective(embed_dim_of(encoder))
        fresh.load_state_dict(objective.state_dict())  # strict: same keys and shapes, as checkpoints need

    def test_registers_as_objective(self) -> None:
        _, objective, _ = self._build()
        assert_registers("objective", type(objective))
