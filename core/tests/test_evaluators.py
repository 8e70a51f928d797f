"""The generic evaluators on real data (scikit-learn's bundled 8x8 digits) with known results."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import Tensor, nn

from ssl_core._bases import EncoderBase
from ssl_core._evaluation_functional import (
    cosine_top_k,
    infer_num_classes,
    knn_predict,
    layer_weighted_sum,
    masked_mean,
    standardize,
    topk_accuracy,
)
from ssl_core._evaluators import (
    KNNEvaluator,
    LayerWeightedProbeEvaluator,
    LinearProbeEvaluator,
    embed,
    embed_layers,
)
from ssl_core._protocols import Batch, Features

NOISE_LAYERS = 3  # the fake multi-layer encoder has these noise layers plus one digit layer
DIGIT_LAYER = 2  # index of the digit-carrying layer


# --------------------------------------------------------------------------- data


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """The probes run tiny matmuls; extra intra-op threads only add contention on a busy CI box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _batches(images: Tensor, labels: Tensor, noise: Tensor, batch_size: int = 128) -> list[Batch]:
    return [
        {"x": images[i : i + batch_size], "y": labels[i : i + batch_size], "noise": noise[i : i + batch_size]}
        for i in range(0, len(labels), batch_size)
    ]


@pytest.fixture(scope="module")
def digits() -> tuple[list[Batch], list[Batch]]:
    """Fixed stratified 75/25 split of the 1797 digits, as batches of ``[B, 8, 8]`` images."""
    data = load_digits()
    train_idx, test_idx = train_test_split(
        torch.arange(len(data.target)).numpy(), test_size=0.25, stratify=data.target, random_state=0
    )
    images = torch.as_tensor(data.images, dtype=torch.float32) / 16.0
    labels = torch.as_tensor(data.target)
    # Per-sample label-free noise for the fake multi-layer encoder: [N, NOISE_LAYERS, 64].
    noise = torch.randn(len(labels), NOISE_LAYERS, 64, generator=torch.Generator().manual_seed(1))
    train = _batches(images[train_idx], labels[train_idx], noise[train_idx])
    test = _batches(images[test_idx], labels[test_idx], noise[test_idx])
    return train, test


# --------------------------------------------------------------------------- tiny encoders


class FlattenEncoder(EncoderBase):
    """Identity encoder: the 64 raw pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.embed_dim = 64

    def forward(self, batch: Batch, token_mask: Tensor | None = None) -> Features:
        return Features(pooled=batch["x"].flatten(1))


class RandomProjectionEncoder(EncoderBase):
    """A worse encoder: a fixed random projection of the pixels down to 3 dimensions."""

    def __init__(self, dim: int = 3) -> None:
        super().__init__()
        self.embed_dim = dim
        self.proj = nn.Linear(64, dim, bias=False)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(dim, 64, generator=torch.Generator().manual_seed(0)))

    def forward(self, batch: Batch, token_mask: Tensor | None = None) -> Features:
        return Features(pooled=self.proj(batch["x"].flatten(1)))


class FakeLayeredEncoder(EncoderBase):
    """Hidden layers where only layer ``DIGIT_LAYER`` carries the pixels; the others are noise.

    The digit layer is token-shaped ``[B, 3, 64]``: two copies of the pixels and one
    padded token full of large garbage, which the masked mean must ignore.
    """

    returns_layers = True

    def __init__(self) -> None:
        super().__init__()
        self.embed_dim = 64

    def forward(self, batch: Batch, token_mask: Tensor | None = None) -> Features:
        pixels = batch["x"].flatten(1)
        noise: Tensor = batch["noise"]
        garbage = 100.0 * noise[:, :1, :].flip(-1)
        digit_tokens = torch.cat([pixels[:, None], pixels[:, None], garbage], dim=1)
        padding_mask = torch.zeros(pixels.shape[0], 3, dtype=torch.bool)
        padding_mask[:, 2] = True
        noise_layers = [noise[:, i] for i in range(NOISE_LAYERS)]
        layers = (*noise_layers[:DIGIT_LAYER], digit_tokens, *noise_layers[DIGIT_LAYER:])
        return Features(pooled=pixels, padding_mask=padding_mask, layers=layers)


class NaNEncoder(FlattenEncoder):
    def forward(self, batch: Batch, token_mask: Tensor | None = None) -> Features:
        return Features(pooled=batch["x"].flatten(1) * math.nan)


class ModeRecordingEncoder(FlattenEncoder):
    """Records whether it ran in training mode; has a submodule kept in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen_part = nn.BatchNorm1d(64).eval()
        self.trained_part = nn.Dropout(0.5)
        self.seen_training: list[bool] = []

    def forward(self, batch: Batch, token_mask: Tensor | None = None) -> Features:
        self.seen_training.append(self.training or self.trained_part.training)
        return super().forward(batch)


# --------------------------------------------------------------------------- evaluators on digits


def test_knn_identity_encoder_on_digits(digits: tuple[list[Batch], list[Batch]]) -> None:
    train, test = digits
    metrics = KNNEvaluator(k=(10, 20, 200))(FlattenEncoder(), train, test)
    assert set(metrics) == {f"knn_top{t}@{k}" for t in (1, 5) for k in (10, 20, 200)}
    assert metrics["knn_top1@10"] >= 0.97  # measured 0.9800
    assert metrics["knn_top1@20"] >= 0.97  # measured 0.9778
    assert metrics["knn_top1@200"] >= 0.94  # measured 0.9533
    assert metrics["knn_top5@20"] >= 0.99  # measured 0.9978
    assert KNNEvaluator.higher_is_better is True


def test_linear_probe_identity_encoder_on_digits(digits: tuple[list[Batch], list[Batch]]) -> None:
    train, test = digits
    metrics = LinearProbeEvaluator()(FlattenEncoder(), train, test)
    assert set(metrics) == {"linear_top1", "linear_train_top1"}
    assert metrics["linear_top1"] >= 0.96  # measured 0.9711 (sklearn LogisticRegression: ~0.97)
    assert metrics["linear_train_top1"] >= 0.99  # measured 0.9985
    assert LinearProbeEvaluator.higher_is_better is True


def test_evaluators_rank_a_random_projection_below_the_identity(digits: tuple[list[Batch], list[Batch]]) -> None:
    train, test = digits
    knn, linear = KNNEvaluator(k=20), LinearProbeEvaluator(epochs=30)
    good_knn, bad_knn = knn(FlattenEncoder(), train, test), knn(RandomProjectionEncoder(), train, test)
    good_lin, bad_lin = linear(FlattenEncoder(), train, test), linear(RandomProjectionEncoder(), train, test)
    assert bad_knn["knn_top1@20"] < good_knn["knn_top1@20"] - 0.2  # measured 0.39 vs 0.98
    assert bad_lin["linear_top1"] < good_lin["linear_top1"] - 0.2  # measured 0.47 vs 0.97
    assert bad_knn["knn_top1@20"] > 0.3  # still far above chance (0.1): the probes learn something


def test_layer_probe_finds_the_digit_layer(digits: tuple[list[Batch], list[Batch]]) -> None:
    train, test = digits
    metrics = LayerWeightedProbeEvaluator(epochs=30)(FakeLayeredEncoder(), train, test)
    weights = [metrics[f"layer_weight_{i}"] for i in range(NOISE_LAYERS + 1)]
    assert metrics["layer_probe_top1"] >= 0.94  # measured 0.9511
    assert max(range(len(weights)), key=weights.__getitem__) == DIGIT_LAYER
    assert weights[DIGIT_LAYER] > 0.8  # measured 0.93; the noise layers ~0.02 each
    assert sum(weights) == pytest.approx(1.0, abs=1e-5)
    assert LayerWeightedProbeEvaluator.higher_is_better is True


def test_probes_are_deterministic_for_a_seed(digits: tuple[list[Batch], list[Batch]]) -> None:
    train, test = digits
    linear = [LinearProbeEvaluator(epochs=5, seed=3)(RandomProjectionEncoder(), train, test) for _ in range(2)]
    layered = [LayerWeightedProbeEvaluator(epochs=3, seed=3)(FakeLayeredEncoder(), train, test) for _ in range(2)]
    assert linear[0] == linear[1]
    assert layered[0] == layered[1]


def test_probes_leave_the_global_rng_alone(digits: tuple[list[Batch], list[Batch]]) -> None:
    train, test = digits
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    LinearProbeEvaluator(epochs=1)(FlattenEncoder(), train, test)
    LayerWeightedProbeEvaluator(epochs=1)(FakeLayeredEncoder(), train, test)
    assert torch.equal(torch.rand(3), expected)


# --------------------------------------------------------------------------- embedding


def test_embed_runs_in_eval_mode_and_restores_each_module_mode() -> None:
    encoder = ModeRecordingEncoder().train()
    encoder.frozen_part.eval()
    feats, labels = embed(encoder, [{"x": torch.ones(4, 8, 8), "y": [1, 0, 1, 2]}])
    assert encoder.seen_training == [False]
    assert encoder.training and encoder.trained_part.training and not encoder.frozen_part.training
    assert feats.shape == (4, 64) and feats.dtype == torch.float32 and feats.device.type == "cpu"
    assert labels.tolist() == [1, 0, 1, 2] and labels.dtype == torch.int64
    assert not feats.is_inference()  # usable as probe input under autograd


def test_embed_layers_mean_pools_tokens_ignoring_padding() -> None:
    x = torch.arange(2 * 64, dtype=torch.float32).reshape(2, 8, 8)
    batch = {"x": x, "y": torch.tensor([3, 4]), "noise": torch.zeros(2, NOISE_LAYERS, 64)}
    layer_feats, labels = embed_layers(FakeLayeredEncoder(), [batch])
    assert layer_feats.shape == (2, NOISE_LAYERS + 1, 64)
    torch.testing.assert_close(layer_feats[:, DIGIT_LAYER], x.flatten(1))
    assert labels.tolist() == [3, 4]


def test_embed_moves_batch_tensors_to_the_encoder_device() -> None:
    seen: list[torch.device] = []

    class DeviceRecorder(RandomProjectionEncoder):
        def forward(self, batch: Batch, token_mask: Tensor | None = None) -> Features:
            seen.append(batch["x"].device)
            return super().forward(batch)

    embed(DeviceRecorder(), [{"x": torch.ones(2, 8, 8), "y": torch.tensor([0, 1])}], precision="bf16")
    assert seen == [torch.device("cpu")]


# --------------------------------------------------------------------------- errors


def test_empty_splits_are_rejected(digits: tuple[list[Batch], list[Batch]]) -> None:
    train, test = digits
    with pytest.raises(ValueError, match=r"train split.*empty"):
        KNNEvaluator()(FlattenEncoder(), [], test)
    with pytest.raises(ValueError, match=r"test split.*empty"):
        LinearProbeEvaluator()(FlattenEncoder(), train, [])


def test_missing_labels_name_the_key(digits: tuple[list[Batch], list[Batch]]) -> None:
    train, _ = digits
    unlabelled = [{"x": torch.ones(2, 8, 8)}]
    with pytest.raises(KeyError, match="test split: batch 0 has no 'y' labels key"):
        KNNEvaluator()(FlattenEncoder(), train, unlabelled)


def test_nan_features_name_the_encoder(digits: tuple[list[Batch], list[Batch]]) -> None:
    train, test = digits
    with pytest.raises(ValueError, match="NaNEncoder produced NaN"):
        LinearProbeEvaluator()(NaNEncoder(), train, test)


def test_layer_probe_needs_hidden_layers(digits: tuple[list[Batch], list[Batch]]) -> None:
    train, test = digits
    with pytest.raises(ValueError, match=r"FlattenEncoder returned no hidden layers \(Features.layers is None\)"):
        LayerWeightedProbeEvaluator()(FlattenEncoder(), train, test)


def test_num_classes_can_be_given_but_must_cover_the_labels(digits: tuple[list[Batch], list[Batch]]) -> None:
    train, test = digits
    assert KNNEvaluator(k=10, num_classes=12)(FlattenEncoder(), train, test)["knn_top1@10"] >= 0.97
    with pytest.raises(ValueError, match="labels go up to 9 but num_classes is 3"):
        KNNEvaluator(num_classes=3)(FlattenEncoder(), train, test)


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="k must be"):
        KNNEvaluator(k=0)
    with pytest.raises(ValueError, match="temperature"):
        KNNEvaluator(temperature=0.0)
    with pytest.raises(ValueError, match="precision"):
        embed(FlattenEncoder(), [{"x": torch.ones(1, 8, 8), "y": [0]}], precision="fp64")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="integer class indices"):
        embed(FlattenEncoder(), [{"x": torch.ones(1, 8, 8), "y": [0.5]}])


# --------------------------------------------------------------------------- functional kernels


def test_knn_predict_matches_a_naive_reference() -> None:
    generator = torch.Generator().manual_seed(0)
    train, test = torch.randn(50, 6, generator=generator), torch.randn(7, 6, generator=generator)
    labels = torch.randint(0, 4, (50,), generator=generator)
    scores = knn_predict(train, labels, test, k=5, temperature=0.1, num_classes=4, batch_size=3)
    unit_train, unit_test = train / train.norm(dim=1, keepdim=True), test / test.norm(dim=1, keepdim=True)
    for row in range(7):
        similarity = unit_train @ unit_test[row]
        expected = torch.zeros(4)
        for neighbour in similarity.argsort(descending=True)[:5]:
            expected[labels[neighbour]] += math.exp(similarity[neighbour].item() / 0.1)
        torch.testing.assert_close(scores[row], expected, rtol=1e-5, atol=1e-5)


def test_knn_clips_k_and_skips_top5_with_few_classes() -> None:
    # Three samples of class 0 near e0, one of class 1 near e1: with k clipped to all 4 train rows the
    # class-1 test point still wins through its exp(sim / T) weight.
    x = torch.zeros(4, 64)
    x[:3, 0], x[3, 1] = 1.0, 1.0
    x[:3, 2] = torch.tensor([0.0, 0.1, 0.2])
    batches = [{"x": x.reshape(4, 8, 8), "y": torch.tensor([0, 0, 0, 1])}]
    metrics = KNNEvaluator(k=(1, 4, 1000))(FlattenEncoder(), batches, batches)
    assert metrics == {"knn_top1@1": 1.0, "knn_top1@4": 1.0, "knn_top1@1000": 1.0}
    uniform = KNNEvaluator(k=1000, temperature=100.0)(FlattenEncoder(), batches, batches)
    assert uniform == {"knn_top1@1000": 0.75}  # near-uniform votes: the majority class wins everywhere


def test_small_kernels() -> None:
    assert topk_accuracy(torch.tensor([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1]]), torch.tensor([2, 0]), k=2) == 1.0
    states = torch.tensor([[[1.0], [5.0]], [[2.0], [4.0]]])
    assert masked_mean(states, torch.tensor([[False, True], [False, False]])).flatten().tolist() == [1.0, 3.0]
    train, test = standardize(torch.tensor([[1.0, 5.0], [3.0, 5.0]]), torch.tensor([[2.0, 6.0]]))
    assert train.tolist() == [[-1.0, 0.0], [1.0, 0.0]] and test[0, 0].item() == 0.0
    feats = torch.stack([torch.zeros(2, 3), torch.ones(2, 3)], dim=1)
    torch.testing.assert_close(layer_weighted_sum(feats, torch.tensor([0.0, 100.0])), torch.ones(2, 3))
    assert infer_num_classes(torch.tensor([0, 2]), torch.tensor([7])) == 8
    with pytest.raises(ValueError, match="non-negative"):
        infer_num_classes(torch.tensor([-1, 2]))


def test_layer_probe_accepts_layers_of_different_widths(digits: tuple[list[Batch], list[Batch]]) -> None:
    from ssl_core._components import MLPEncoder

    train, test = ([{**b, "x": b["x"].flatten(1)} for b in split] for split in digits)
    torch.manual_seed(0)
    encoder = MLPEncoder(in_dim=64, hidden_dim=48, embed_dim=16)  # layers of width 48 and 16, zero-padded
    metrics = LayerWeightedProbeEvaluator(epochs=10)(encoder, train, test)
    assert metrics["layer_probe_top1"] > 0.8
    assert metrics["layer_weight_0"] + metrics["layer_weight_1"] == pytest.approx(1.0, abs=1e-5)


# --------------------------------------------------------------------------- large splits: chunks and float16


@pytest.mark.parametrize("bank_batch_size", [1, 3, 7, 64, 10_000])
@pytest.mark.parametrize("batch_size", [1, 5, 1024])
def test_chunked_knn_predicts_as_the_unchunked_path(bank_batch_size: int, batch_size: int) -> None:
    generator = torch.Generator().manual_seed(3)
    train, test = torch.randn(200, 16, generator=generator), torch.randn(37, 16, generator=generator)
    labels = torch.randint(0, 6, (200,), generator=generator)
    whole = knn_predict(train, labels, test, k=5, temperature=0.1, num_classes=6, batch_size=37, bank_batch_size=200)
    chunked = knn_predict(
        train, labels, test, k=5, temperature=0.1, num_classes=6, batch_size=batch_size, bank_batch_size=bank_batch_size
    )  # a bank chunk of 1 or 3 rows holds fewer rows than k
    assert torch.equal(chunked.argmax(dim=1), whole.argmax(dim=1))
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)
    similarity, index = cosine_top_k(test, train, k=5, bank_batch_size=bank_batch_size)
    reference = torch.nn.functional.normalize(test) @ torch.nn.functional.normalize(train).T
    assert torch.equal(index, reference.topk(5, dim=1).indices)
    torch.testing.assert_close(similarity, reference.topk(5, dim=1).values)


def test_a_float16_bank_is_compared_in_float32() -> None:
    generator = torch.Generator().manual_seed(4)
    train, test = torch.randn(300, 32, generator=generator).half(), torch.randn(50, 32, generator=generator)
    labels = torch.randint(0, 4, (300,), generator=generator)
    half = knn_predict(train, labels, test, k=10, temperature=0.07, num_classes=4, bank_batch_size=64)
    upcast = knn_predict(train.float(), labels, test, k=10, temperature=0.07, num_classes=4, bank_batch_size=64)
    assert half.dtype == torch.float32 and torch.equal(half.argmax(dim=1), upcast.argmax(dim=1))
    torch.testing.assert_close(half, upcast)


def test_knn_evaluator_in_small_chunks_matches_one_chunk(digits: tuple[list[Batch], list[Batch]]) -> None:
    train, test = digits
    one = KNNEvaluator(k=(1, 10, 20), batch_size=4096, bank_batch_size=4096)(FlattenEncoder(), train, test)
    small = KNNEvaluator(k=(1, 10, 20), batch_size=33, bank_batch_size=7)(FlattenEncoder(), train, test)
    assert small == one


def test_feature_buffer_preallocates_grows_and_chooses_float16_above_the_threshold() -> None:
    from ssl_core._feature_buffer import FeatureBuffer

    sized = FeatureBuffer("auto", expected_rows=10)
    sized.append(torch.ones(4, 3))
    sized.append(torch.ones(6, 3))
    assert sized.dtype == torch.float32 and sized.result() is sized.result()  # full: handed over, not copied
    assert sized.result().untyped_storage().nbytes() == 10 * 3 * 4  # allocated once, at the expected size
    large = FeatureBuffer("auto", expected_rows=10, float16_above_bytes=100)  # 10 x 3 x 4 = 120 bytes
    large.append(torch.full((10, 3), 1 / 3))
    assert large.dtype == torch.float16 and large.result().shape == (10, 3)
    torch.testing.assert_close(large.result().float(), torch.full((10, 3), 1 / 3), rtol=1e-3, atol=0)
    unsized = FeatureBuffer("auto", float16_above_bytes=5000 * 4)  # grows past 1024 rows, then past the threshold
    for _ in range(30):
        unsized.append(torch.arange(200.0).reshape(200, 1))
    assert unsized.dtype == torch.float16 and torch.equal(unsized.result()[:, 0], torch.arange(200.0).repeat(30).half())


def test_features_outside_float16_stay_float32_under_auto_and_fail_under_float16() -> None:
    from ssl_core._feature_buffer import FeatureBuffer

    buffer = FeatureBuffer("auto", expected_rows=4, float16_above_bytes=1)
    buffer.append(torch.ones(2, 2))
    with pytest.warns(UserWarning, match="held in float32"):
        buffer.append(torch.tensor([[1e5, 0.0], [1.0, 1.0]]))
    assert buffer.dtype == torch.float32 and buffer.result()[2, 0].item() == 1e5
    tiny = FeatureBuffer("auto", float16_above_bytes=1)
    with pytest.warns(UserWarning, match="held in float32"):
        tiny.append(torch.full((2, 2), 1e-6))  # below float16's normal range: precision would be lost
    with pytest.raises(ValueError, match="do not fit float16"):
        FeatureBuffer("float16").append(torch.full((1, 2), 7e4))
    with pytest.raises(ValueError, match="feature_storage"):
        FeatureBuffer("float64")  # type: ignore[arg-type]


def test_float16_features_score_like_float32_ones(digits: tuple[list[Batch], list[Batch]]) -> None:
    train, test = digits
    feats, _ = embed(FlattenEncoder(), train, feature_storage="float16")
    assert feats.dtype == torch.float16 and not feats.is_inference()
    for evaluator in (KNNEvaluator, LinearProbeEvaluator):
        full = evaluator(feature_storage="float32")(FlattenEncoder(), train, test)  # type: ignore[operator]
        half = evaluator(feature_storage="float16")(FlattenEncoder(), train, test)  # type: ignore[operator]
        assert all(abs(full[key] - half[key]) <= 0.005 for key in full), (full, half)
    full = LayerWeightedProbeEvaluator(epochs=10, feature_storage="float32")(FakeLayeredEncoder(), train, test)
    half = LayerWeightedProbeEvaluator(epochs=10, feature_storage="float16")(FakeLayeredEncoder(), train, test)
    assert abs(full["layer_probe_top1"] - half["layer_probe_top1"]) <= 0.01


def test_embedding_from_a_loader_fills_one_tensor_of_the_dataset_size() -> None:
    from torch.utils.data import DataLoader, TensorDataset

    dataset = TensorDataset(torch.randn(300, 8), torch.randint(0, 3, (300,)))
    loader = DataLoader(
        dataset,
        batch_size=64,
        collate_fn=lambda rows: {"x": torch.stack([r[0] for r in rows]), "y": torch.stack([r[1] for r in rows])},
    )
    feats, labels = embed(FlattenEncoder(), loader)
    assert feats.shape == (300, 8) and feats.untyped_storage().nbytes() == 300 * 8 * 4 and labels.shape == (300,)


def test_shared_embeddings_serve_auto_from_float32_and_keep_temporary_batches_alive() -> None:
    from ssl_core._evaluators import shared_embeddings

    encoder, calls = FlattenEncoder(), []
    encoder.register_forward_hook(lambda module, args, output: calls.append(1))
    batch = {"x": torch.randn(4, 8, 8), "y": torch.tensor([0, 1, 0, 1])}
    with shared_embeddings():
        first, _ = embed(encoder, [batch], feature_storage="float32")
        again, _ = embed(encoder, [batch], feature_storage="auto")  # a new list: embedded again, not mistaken
        for _ in range(5):  # temporary lists may reuse a freed list's id: the cache holds them, so they cannot
            other = {"x": torch.randn(4, 8, 8), "y": torch.tensor([1, 1, 1, 1])}
            feats, labels = embed(encoder, [other], feature_storage="auto")
            assert torch.equal(labels, other["y"]) and torch.equal(feats, other["x"].flatten(1))
        batches = [batch]
        shared, _ = embed(encoder, batches, feature_storage="float32")
        assert embed(encoder, batches, feature_storage="auto")[0] is shared
    assert len(calls) == 8 and torch.equal(first, again)
