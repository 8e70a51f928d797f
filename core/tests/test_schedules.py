import itertools
import math

import pytest
import torch

from ssl_core._schedules import cosine_schedule, warmup_cosine_lr


def test_cosine_endpoints_and_midpoint() -> None:
    assert cosine_schedule(0, 100, 0.996, 1.0) == pytest.approx(0.996)
    assert cosine_schedule(50, 100, 0.996, 1.0) == pytest.approx(0.998)
    assert cosine_schedule(100, 100, 0.996, 1.0) == pytest.approx(1.0)


def test_clamps_after_total() -> None:
    assert cosine_schedule(10_000, 100, 0.04, 0.4) == pytest.approx(0.4)


def test_monotonic_between_start_and_end() -> None:
    values = [cosine_schedule(s, 200, 0.04, 0.4) for s in range(201)]
    assert all(a <= b for a, b in itertools.pairwise(values))
    assert min(values) == pytest.approx(0.04) and max(values) == pytest.approx(0.4)


def test_linear_warmup_then_cosine() -> None:
    kw = {"warmup_steps": 10, "warmup_start": 0.0}
    assert cosine_schedule(0, 110, 1.0, 0.0, **kw) == 0.0
    assert cosine_schedule(5, 110, 1.0, 0.0, **kw) == pytest.approx(0.5)
    assert cosine_schedule(10, 110, 1.0, 0.0, **kw) == pytest.approx(1.0)
    # the cosine phase spans total - warmup steps
    assert cosine_schedule(60, 110, 1.0, 0.0, **kw) == pytest.approx(0.5)
    assert cosine_schedule(35, 110, 1.0, 0.0, **kw) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_warmup_equal_to_total_ends_at_end() -> None:
    assert cosine_schedule(10, 10, 1.0, 0.1, warmup_steps=10) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("step", "total", "warmup"),
    [(-1, 10, 0), (0, -1, 0), (0, 10, 11), (0, 10, -1)],
)
def test_invalid_arguments(step: int, total: int, warmup: int) -> None:
    with pytest.raises(ValueError):
        cosine_schedule(step, total, 1.0, 0.0, warmup_steps=warmup)


def _sgd(lr: float = 0.1) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def _lrs(opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler, n: int) -> list[float]:
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_cosine_lr_follows_cosine_schedule() -> None:
    opt = _sgd(0.1)
    sched = warmup_cosine_lr(opt, warmup_steps=5, total_steps=20, min_lr_ratio=0.1)
    lrs = _lrs(opt, sched, 25)
    expected = [0.1 * cosine_schedule(s, 20, 1.0, 0.1, warmup_steps=5) for s in range(25)]
    assert lrs == pytest.approx(expected)
    assert lrs[5] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.01)


def test_warmup_cosine_lr_state_dict_roundtrip() -> None:
    opt = _sgd()
    sched = warmup_cosine_lr(opt, warmup_steps=3, total_steps=30)
    _lrs(opt, sched, 7)
    state = sched.state_dict()
    reference = _lrs(opt, sched, 10)

    opt2 = _sgd()
    sched2 = warmup_cosine_lr(opt2, warmup_steps=99, total_steps=100)  # schedule params come from the state
    sched2.load_state_dict(state)
    opt2.param_groups[0]["lr"] = sched2.get_last_lr()[0]
    assert _lrs(opt2, sched2, 10) == pytest.approx(reference)


def test_warmup_cosine_lr_scheduler_is_picklable(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sched = warmup_cosine_lr(_sgd(), warmup_steps=2, total_steps=10)
    torch.save(sched.state_dict(), tmp_path / "s.pt")
    assert torch.load(tmp_path / "s.pt", weights_only=False)["last_epoch"] == 0


def test_warmup_cosine_lr_rejects_bad_ratio() -> None:
    with pytest.raises(ValueError):
        warmup_cosine_lr(_sgd(), warmup_steps=0, total_steps=10, min_lr_ratio=1.5)
