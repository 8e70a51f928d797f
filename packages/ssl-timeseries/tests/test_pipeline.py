"""The plugin inside ssl-core: entry points, recipes, a short real run, the published-figure hook."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

import ssl_core
import ssl_timeseries
from ssl_core import IncompatibleComponentsError, Registry
from ssl_timeseries import PUBLISHED_TS2VEC, mvp, ts2vec, ts2vec_steps
from ssl_timeseries._hooks import PublishedFigure

pytest_plugins = ["ssl_core.testing.fixtures"]

REPO = Path(__file__).resolve().parents[3]

EXPECTED = {
    "ssl_core.encoders": {"timeseries.ts2vec", "timeseries.inception_time", "timeseries.tst", "timeseries.patchtst"},
    "ssl_core.views": {"timeseries.crops", "timeseries.timestamp_mask", "timeseries.subsequence_mask"},
    "ssl_core.objectives": {"timeseries.ts2vec", "timeseries.mvp"},
    "ssl_core.evaluators": {"timeseries.svm"},
    "ssl_core.datasets": {"timeseries.ucr", "timeseries.arrays", "timeseries.memmap"},
    "ssl_core.recipes": {"timeseries.ts2vec", "timeseries.mvp"},
    "ssl_core.hooks": {"timeseries.published"},
}


def test_entry_points_declare_every_component() -> None:
    eps = metadata.distribution("ssl-timeseries").entry_points
    for group, names in EXPECTED.items():
        assert {ep.name for ep in eps if ep.group == group} == names, group


def test_all_is_complete() -> None:
    public = {n for n in vars(ssl_timeseries) if not n.startswith("_") and n not in {"annotations"}}
    public -= {"version", "PackageNotFoundError"}
    assert public <= set(ssl_timeseries.__all__), public - set(ssl_timeseries.__all__)


def test_registry_loads_components_without_tsai() -> None:
    probe = (
        "import sys; from ssl_core import Registry; r = Registry(); "
        "[r.get(k, n) for k, n in [('encoder', 'timeseries.ts2vec'), ('encoder', 'timeseries.tst'), "
        "('views', 'timeseries.crops'), ('objective', 'timeseries.mvp'), ('evaluator', 'timeseries.svm'), "
        "('dataset', 'timeseries.ucr'), ('recipe', 'timeseries.ts2vec')]]; "
        "sys.exit(1 if 'tsai' in sys.modules else 0)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_recipes_hold_the_papers_hyper_parameters() -> None:
    cfg = ts2vec()
    assert cfg["encoder"] == {"name": "timeseries.ts2vec", "embed_dim": 320, "hidden_dim": 64, "depth": 10}
    assert (cfg["train"]["batch_size"], cfg["train"]["lr"], cfg["train"]["steps"]) == (8, 1e-3, 200)
    assert ts2vec_steps(100_000) == 200 and ts2vec_steps(100_001) == 600
    assert mvp()["objective"]["name"] == "timeseries.mvp"
    assert PUBLISHED_TS2VEC["GunPoint"] == 0.980


def test_short_ts2vec_run_on_gunpoint(tmp_path: Path, capsys: Any) -> None:
    cfg = ts2vec("GunPoint")
    cfg["encoder"].update(embed_dim=32, hidden_dim=16, depth=3)
    result = ssl_core.run(cfg, out=tmp_path, overrides=["train.steps=6", "train.progress=false", "plots=false"])
    accuracy = result.metrics["evaluations"]["timeseries.svm"]["accuracy"]
    assert 0.5 <= accuracy <= 1.0
    assert "(published TS2Vec: 0.980)" in capsys.readouterr().out  # the hook plugin, through its entry point
    assert "timeseries.svm" in result.metrics["random_init"]
    assert (tmp_path / "metrics.json").is_file()


def test_short_mvp_run_with_the_ts2vec_encoder(capsys: Any) -> None:
    cfg = mvp("ItalyPowerDemand")
    cfg["encoder"] = {"name": "timeseries.ts2vec", "embed_dim": 16, "hidden_dim": 8, "depth": 2}
    cfg["evaluate"] = [{"name": "core.linear_probe"}, {"name": "timeseries.svm"}]
    result = ssl_core.run(
        cfg, overrides=["train.steps=4", "train.progress=false", "plots=false", "compare_random_init=false"]
    )
    assert result.metrics["train"]["steps"] == 4
    assert "published TS2Vec" not in capsys.readouterr().out  # an MVP run is no TS2Vec comparison


def test_ts2vec_objective_needs_tokens(ssl_registry: Registry) -> None:
    from ssl_core import build_pipeline, default_registry, load_config
    from ssl_timeseries import CropViews, TS2VecObjective

    installed = default_registry()  # core's own components, through their entry points
    ssl_registry.register("dataset", "core.digits", installed.get("dataset", "core.digits"))
    ssl_registry.register("encoder", "core.mlp", installed.get("encoder", "core.mlp"))
    ssl_registry.register("views", "timeseries.crops", CropViews)
    ssl_registry.register("objective", "timeseries.ts2vec", TS2VecObjective)
    cfg = load_config(
        {
            "data": {"name": "core.digits"},
            "encoder": {"name": "core.mlp"},
            "views": {"name": "timeseries.crops"},
            "objective": {"name": "timeseries.ts2vec"},
        }
    )
    with pytest.raises(IncompatibleComponentsError):
        build_pipeline(cfg, ssl_registry)


def test_published_hook_prints_only_for_known_ucr_runs(capsys: Any) -> None:
    hook = PublishedFigure()
    ts2vec_objective = {"name": "timeseries.ts2vec", "alpha": 0.5}
    hook.ssl_on_train_start({"data": {"name": "timeseries.ucr", "dataset": "ArrowHead"}, "objective": ts2vec_objective})
    hook.ssl_on_evaluate_end("random_init/timeseries.svm", {"accuracy": 0.5})
    hook.ssl_on_evaluate_end("timeseries.svm", {"accuracy": 0.9})
    hook.ssl_on_train_start({"data": {"name": "core.digits"}, "objective": ts2vec_objective})
    hook.ssl_on_evaluate_end("timeseries.svm", {"accuracy": 0.9})
    assert capsys.readouterr().out.strip() == "timeseries.svm on ArrowHead: accuracy 0.9000 (published TS2Vec: 0.857)"


@pytest.mark.parametrize(
    "objective",
    [
        {"name": "timeseries.mvp"},
        [{"name": "timeseries.ts2vec"}, {"name": "timeseries.mvp"}],  # a multi-objective run is not TS2Vec
        None,  # evaluation only: nothing was trained
    ],
)
def test_published_hook_is_silent_for_other_objectives(objective: Any, capsys: Any) -> None:
    hook = PublishedFigure()
    config: dict[str, Any] = {"data": {"name": "timeseries.ucr", "dataset": "GunPoint"}}
    if objective is not None:
        config["objective"] = objective
    hook.ssl_on_train_start(config)
    hook.ssl_on_evaluate_end("timeseries.svm", {"accuracy": 0.9})
    assert capsys.readouterr().out == ""


def test_published_hook_accepts_a_list_of_one_ts2vec_objective(capsys: Any) -> None:
    hook = PublishedFigure()
    hook.ssl_on_train_start(
        {"data": {"name": "timeseries.ucr", "dataset": "GunPoint"}, "objective": [{"name": "timeseries.ts2vec"}]}
    )
    hook.ssl_on_evaluate_end("timeseries.svm", {"accuracy": 0.9})
    assert "published TS2Vec: 0.980" in capsys.readouterr().out


def test_quickstart_file_is_the_ts2vec_recipe_on_arrowhead() -> None:
    cfg = ssl_core.load_config(REPO / "examples" / "quickstart.toml")
    recipe = ssl_core.load_config(ts2vec("ArrowHead"))
    assert (cfg.data, cfg.encoder, cfg.objective) == (recipe.data, recipe.encoder, recipe.objective)
    assert (cfg.train.steps, cfg.train.batch_size, cfg.train.lr, cfg.train.min_lr_ratio) == (200, 8, 1e-3, 1.0)
    assert cfg.train == recipe.train
    assert [e.name for e in cfg.evaluate] == ["timeseries.svm"]
