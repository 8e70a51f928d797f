import copy

import pytest
import torch
from torch import nn

from ssl_core._ema import ema_update_, make_teacher, unwrap_module


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))


def _perturb(module: nn.Module, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g))


def test_make_teacher_is_frozen_independent_copy() -> None:
    student = _net()
    teacher = make_teacher(student)
    assert teacher is not student
    assert not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    assert all(p.requires_grad for p in student.parameters())
    for (n, t), (_, s) in zip(teacher.named_parameters(), student.named_parameters(), strict=True):
        assert torch.equal(t, s), n
        assert t.data_ptr() != s.data_ptr()
    # eval mode: deterministic output despite dropout, and no grad graph
    x = torch.randn(5, 4)
    out = teacher(x)
    assert torch.equal(out, teacher(x)) and not out.requires_grad


class _Compiled(nn.Module):
    """Stands in for torch.compile's OptimizedModule (which keeps the module as ``_orig_mod``)
    without importing torch._dynamo, which takes seconds."""

    def __init__(self, mod: nn.Module) -> None:
        super().__init__()
        self._orig_mod = mod


def test_make_teacher_unwraps_compiled_and_data_parallel() -> None:
    student = _net()
    assert unwrap_module(nn.DataParallel(student)) is student
    wrapped = nn.DataParallel(_Compiled(student))
    assert unwrap_module(wrapped) is student
    teacher = make_teacher(wrapped)
    assert type(teacher) is nn.Sequential


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9, 0.996])
def test_ema_matches_naive_formula(momentum: float) -> None:
    student = _net()
    teacher = make_teacher(student)
    _perturb(student)
    expected = {
        n: momentum * t + (1 - momentum) * s
        for (n, t), (_, s) in zip(teacher.named_parameters(), student.named_parameters(), strict=True)
    }
    ema_update_(teacher, student, momentum)
    for n, t in teacher.named_parameters():
        torch.testing.assert_close(t, expected[n], rtol=1e-6, atol=1e-6)
        assert not t.requires_grad


def test_momentum_one_leaves_teacher_unchanged() -> None:
    student = _net()
    teacher = make_teacher(student)
    before = copy.deepcopy(teacher.state_dict())
    _perturb(student)
    student.train()(torch.randn(16, 4))  # moves the student's batch-norm statistics
    ema_update_(teacher, student, 1.0)
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_momentum_zero_copies_params_and_buffers() -> None:
    student = _net()
    teacher = make_teacher(student)
    _perturb(student)
    student.train()(torch.randn(16, 4))
    ema_update_(teacher, student, 0.0)
    for k, v in student.state_dict().items():
        assert torch.equal(teacher.state_dict()[k], v), k


def test_update_does_not_touch_student_or_autograd() -> None:
    student = _net()
    teacher = make_teacher(student)
    _perturb(student)
    snapshot = copy.deepcopy(student.state_dict())
    ema_update_(teacher, student, 0.9)
    for k, v in student.state_dict().items():
        assert torch.equal(v, snapshot[k])
    assert all(p.grad is None for p in student.parameters())


def test_works_through_wrappers() -> None:
    student = _net()
    teacher = make_teacher(student)
    _perturb(student)
    ema_update_(teacher, _Compiled(student), 0.0)
    ema_update_(nn.DataParallel(teacher), nn.DataParallel(student), 0.0)
    for (_, t), (_, s) in zip(teacher.named_parameters(), student.named_parameters(), strict=True):
        assert torch.equal(t, s)


def test_mixed_dtypes_are_grouped() -> None:
    student = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3).double())
    teacher = make_teacher(student)
    _perturb(student)
    ema_update_(teacher, student, 0.0)
    for (_, t), (_, s) in zip(teacher.named_parameters(), student.named_parameters(), strict=True):
        assert t.dtype == s.dtype and torch.equal(t, s)


def test_mismatched_modules_and_bad_momentum() -> None:
    with pytest.raises(ValueError, match="parameters differ"):
        ema_update_(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2)), 0.5)
    with pytest.raises(ValueError, match="shape"):
        ema_update_(nn.Linear(2, 2), nn.Linear(2, 3), 0.5)
    with pytest.raises(ValueError, match="momentum"):
        ema_update_(nn.Linear(2, 2), nn.Linear(2, 2), 1.5)
