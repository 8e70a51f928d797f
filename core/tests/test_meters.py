import pytest
import torch

from ssl_core._meters import ThroughputMeter, peak_memory_mb, reset_peak_memory


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_and_totals() -> None:
    clock = _Clock()
    meter = ThroughputMeter(window=3, clock=clock)
    assert meter.rate() == 0.0 and meter.total == 0 and meter.overall_rate() == 0.0
    for dt, n in [(1.0, 10), (1.0, 10), (1.0, 10)]:
        clock.now += dt
        meter.update(n)
    assert meter.rate() == pytest.approx(10.0)
    assert meter.total == 30
    assert meter.elapsed() == pytest.approx(3.0)
    assert meter.overall_rate() == pytest.approx(10.0)


def test_window_forgets_old_updates() -> None:
    clock = _Clock()
    meter = ThroughputMeter(window=2, clock=clock)
    clock.now += 10.0  # a slow first step (e.g. compilation)
    meter.update(10)
    for _ in range(2):
        clock.now += 1.0
        meter.update(50)
    assert meter.rate() == pytest.approx(50.0)  # only the last two updates count
    assert meter.overall_rate() == pytest.approx(110 / 12)


def test_reset_restarts_clock() -> None:
    clock = _Clock()
    meter = ThroughputMeter(clock=clock)
    clock.now += 5.0
    meter.update(7)
    meter.reset()
    clock.now += 2.0
    meter.update(8)
    assert meter.total == 8 and meter.overall_rate() == pytest.approx(4.0)


def test_real_clock_and_validation() -> None:
    meter = ThroughputMeter()
    meter.update(4)
    assert meter.total == 4 and meter.rate() >= 0.0
    with pytest.raises(ValueError):
        ThroughputMeter(window=0)
    with pytest.raises(ValueError):
        meter.update(-1)


def test_peak_memory_cpu_grows_with_allocation() -> None:
    before = peak_memory_mb("cpu")
    if before is None:
        pytest.skip("no resource module on this platform")
    big = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    after = peak_memory_mb(torch.device("cpu"))
    assert after is not None and after >= before and after > 64
    del big
    reset_peak_memory("cpu")  # no-op, must not fail


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_peak_memory_cuda() -> None:
    reset_peak_memory("cuda")
    x = torch.empty(32 * 2**20 // 4, device="cuda")
    value = peak_memory_mb("cuda")
    assert value is not None and value >= 32
    del x
