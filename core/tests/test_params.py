"""Parameter filling (pipeline facts, standard data facts, declared data_params) and annotation checks."""

from __future__ import annotations

import re
from typing import Any, Literal, Optional

import pytest

from ssl_core import ConfigError, Registry, build_pipeline, load_config
from ssl_core._coerce import coerce
from ssl_core._params import PIPELINE_FACTS, STANDARD_DATA_FACTS, check_params, fillable
from ssl_core._pipeline import build_component

CONTEXT = {"num_classes": 10, "modality": "audio", "sample_rate": 8000, "target": "speaker", "num_speakers": 6}


class Probe:
    """An evaluator-like component whose ``target`` shares its name with an info key."""

    def __init__(self, num_classes: int, sample_rate: int = 16000, target: str = "digit", lr: float = 0.1) -> None:
        self.num_classes, self.sample_rate, self.target, self.lr = num_classes, sample_rate, target, lr


class SpeakerProbe(Probe):
    data_params = ("num_speakers",)

    def __init__(self, num_speakers: int, target: str = "digit") -> None:
        super().__init__(num_classes=num_speakers, target=target)
        self.num_speakers = num_speakers


def test_standard_facts_fill_but_other_info_keys_do_not() -> None:
    probe = build_component(Probe, {}, CONTEXT, "evaluator 'x.probe'")
    assert (probe.num_classes, probe.sample_rate) == (10, 8000)
    assert probe.target == "digit"  # info["target"] is not a standard fact and Probe did not declare it


def test_declared_data_params_fill_from_info() -> None:
    probe = build_component(SpeakerProbe, {}, CONTEXT, "evaluator 'x.speaker'")
    assert probe.num_speakers == 6 and probe.target == "digit"

    def factory(num_speakers: int, target: str = "digit") -> dict[str, Any]:
        return {"num_speakers": num_speakers, "target": target}

    factory.data_params = ("num_speakers", "target")  # type: ignore[attr-defined]
    assert build_component(factory, {}, CONTEXT, "task 'x.t'") == {"num_speakers": 6, "target": "speaker"}
    assert fillable(factory)[-2:] == ("num_speakers", "target")


def test_the_file_wins_over_the_context() -> None:
    probe = build_component(SpeakerProbe, {"num_speakers": 3}, CONTEXT, "evaluator 'x.speaker'")
    assert probe.num_speakers == 3


def test_an_undeclared_required_info_key_says_how_to_declare_it() -> None:
    def needs_speakers(num_speakers: int) -> int:
        return num_speakers

    with pytest.raises(ConfigError, match=r"needs 'num_speakers'; set it in the pipeline file, or declare data_params"):
        build_component(needs_speakers, {}, CONTEXT, "evaluator 'x.n'")


def test_a_malformed_declaration_is_an_error() -> None:
    class Bad(Probe):
        data_params = "num_speakers"

    with pytest.raises(ConfigError, match="data_params = 'num_speakers'"):
        build_component(Bad, {}, CONTEXT, "evaluator 'x.bad'")


def test_the_constants() -> None:
    assert {"in_dim", "image_shape", "sample_rate"} <= set(STANDARD_DATA_FACTS)  # documented since plugin API 1.0
    assert {"num_classes", "modality", "embed_dim", "encoder"} <= set(PIPELINE_FACTS)
    assert not set(STANDARD_DATA_FACTS) & set(PIPELINE_FACTS)


def test_wrong_types_are_config_errors_naming_the_parameter() -> None:
    with pytest.raises(ConfigError) as info:
        build_component(Probe, {"num_classes": "big"}, {}, "evaluator 'x.probe'")
    assert str(info.value) == "evaluator 'x.probe' parameter 'num_classes' must be an integer, got 'big'"
    with pytest.raises(ConfigError, match="'num_classes' must be an integer, got True"):
        build_component(Probe, {"num_classes": True}, {}, "evaluator 'x.probe'")
    with pytest.raises(ConfigError, match="'lr' must be a number, got 'fast'"):
        build_component(Probe, {"num_classes": 2, "lr": "fast"}, {}, "evaluator 'x.probe'")


def test_ints_become_floats_and_lists_become_tuples() -> None:
    probe = build_component(Probe, {"num_classes": 2, "lr": 1}, {}, "evaluator 'x.probe'")
    assert probe.lr == 1.0 and isinstance(probe.lr, float)

    def f(
        shape: tuple[int, int] = (1, 1),
        sizes: tuple[int, ...] = (),
        ks: list[int] | None = None,
        mode: Literal["a", "b"] = "a",
        scale: Optional[float] = None,  # noqa: UP045 - the old spelling is checked too
        flag: bool = False,
        anything: Any = None,
    ) -> dict[str, Any]:
        return dict(shape=shape, sizes=sizes, ks=ks, mode=mode, scale=scale, flag=flag, anything=anything)

    got = check_params(f, {"shape": [2, 3], "sizes": [1], "ks": [5, 10], "scale": 2, "anything": {"x": 1}}, "f")
    assert got == {"shape": (2, 3), "sizes": (1,), "ks": [5, 10], "scale": 2.0, "anything": {"x": 1}}
    assert check_params(f, {"ks": None, "scale": None}, "f") == {"ks": None, "scale": None}
    for params, message in (
        ({"shape": [2]}, "'shape' must be a list of 2 integers, got [2]"),
        ({"sizes": 3}, "'sizes' must be a list of integers, got 3"),
        ({"ks": ["a"]}, r"'ks'\[0\] must be an integer, got 'a'"),
        ({"mode": "c"}, "'mode' must be one of 'a', 'b', got 'c'"),
        ({"scale": "x"}, "'scale' must be a number, got 'x'"),
        ({"flag": 1}, "'flag' must be true or false, got 1"),
    ):
        with pytest.raises(ConfigError, match=message if "\\[" in message else re.escape(message)):
            check_params(f, params, "f")


def test_unresolvable_and_missing_annotations_pass_through() -> None:
    def f(a: UnknownType = None, b=3, c: int = 0) -> None:  # type: ignore[name-defined]  # noqa: F821
        return None

    assert check_params(f, {"a": "x", "b": "y", "c": 4}, "f") == {"a": "x", "b": "y", "c": 4}
    with pytest.raises(ConfigError, match="'c' must be an integer"):
        check_params(f, {"c": "no"}, "f")


def test_train_values_keep_their_messages() -> None:
    assert coerce([1, 2], tuple[float, float], "train.betas") == (1.0, 2.0)
    base = {"data": "core.digits", "encoder": "core.mlp", "views": "core.noise", "objective": "core.simclr"}
    with pytest.raises(ConfigError, match=r"train\.steps must be an integer, got 'many'"):
        load_config(base, overrides=["train.steps=many"])
    with pytest.raises(ConfigError, match=r"train\.betas must be a list of 2 numbers"):
        load_config(base, overrides=["train.betas=[0.9]"])


def test_set_on_the_command_line_is_checked_before_the_constructor_runs() -> None:
    from ssl_core._components import MLPEncoder, NoiseViews, SimCLRObjective, digits

    registry = Registry(discover=False)
    registry.register("dataset", "core.digits", digits)
    registry.register("encoder", "core.mlp", MLPEncoder)
    registry.register("views", "core.noise", NoiseViews)
    registry.register("objective", "core.simclr", SimCLRObjective)
    base = {name: {"name": f"core.{value}"} for name, value in (("data", "digits"), ("encoder", "mlp"))}
    base |= {"views": {"name": "core.noise"}, "objective": {"name": "core.simclr"}}
    cfg = load_config(base, overrides=["objective.proj_dim=big"])
    with pytest.raises(ConfigError) as info:
        build_pipeline(cfg, registry)
    assert str(info.value) == "objective 'core.simclr' parameter 'proj_dim' must be an integer, got 'big'"
    built = build_pipeline(load_config(base, overrides=["objective.temperature=1", "encoder.hidden_dim=16"]), registry)
    assert built.objective.temperature == 1.0 and isinstance(built.objective.temperature, float)
