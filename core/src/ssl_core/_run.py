"""``ssl_core.run``: the one entry to a run, for ``ssl run`` and Python alike.

The path is one way: read the pipeline (a file, a mapping, a recipe with its arguments
or a built-in name), validate all of it, open the distributed context once, then hand
it to the single-pipeline runner (:mod:`ssl_core._pretrain`) or the stage runner
(:mod:`ssl_core._stages`). Neither runner imports this module or the other's.

Example:
    >>> result = run("quickstart", overrides=["train.steps=2", "train.progress=false", "plots=false",
    ...                                       "compare_random_init=false", "evaluate=[]"])
    >>> result.metrics["train"]["steps"]
    2
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from ._config import PipelineConfig, load_config, merge_tables, read_pipeline
from ._distributed import DistributedContext, distributed_session, run_on_main
from ._errors import ConfigError
from ._hooks import make_plugin_manager
from ._pipeline import build_component
from ._pretrain import run_pipeline
from ._registry import Registry, default_registry
from ._results import RunResult
from ._stages import StagedPipeline, load_stages, run_stages

__all__ = ["RUN_FILES", "builtin_pipeline", "expand_recipe", "run"]

RUN_FILES = ("config.toml", "metrics.json", "stages.json", "log.csv", "checkpoints")
"""Any of these in an output directory means it holds a run."""

_RUN_ENTRIES = (
    *RUN_FILES, "log.jsonl", "evaluations.csv", "loss.png", "embeddings.png", "tensorboard", "mlruns", "wandb",
    "mlflow_run_id",
)  # fmt: skip
_STAGE_DIR = re.compile(r"^\d+-[A-Za-z0-9_-]+$")


def builtin_pipeline(name: str) -> Path:
    """Path of a pipeline shipped inside ssl-core (``quickstart``).

    Example:
        >>> builtin_pipeline("quickstart").name
        'quickstart.toml'
    """
    path = Path(str(resources.files("ssl_core") / "pipelines" / f"{name}.toml"))
    if not path.is_file():
        shipped = sorted(p.stem for p in Path(str(resources.files("ssl_core") / "pipelines")).glob("*.toml"))
        raise ConfigError(f"no built-in pipeline {name!r}; shipped: {', '.join(shipped)}")
    return path


def expand_recipe(name: str, arguments: Mapping[str, Any], registry: Registry) -> dict[str, Any]:
    """The pipeline of recipe ``name`` called with ``arguments`` (checked against its signature).

    Example:
        >>> expand_recipe("core.quickstart", {}, default_registry())["objective"]["name"]
        'core.simclr'
    """
    recipe = registry.get("recipe", name)
    produced = build_component(recipe, dict(arguments), {}, f"recipe {name!r}")
    if not isinstance(produced, Mapping):
        raise ConfigError(f"recipe {name!r} must return a pipeline mapping, got {type(produced).__name__}")
    return dict(produced)


def _read_source(
    config: str | Path | Mapping[str, Any], recipe_args: Mapping[str, Any], registry: Registry
) -> dict[str, Any]:
    """The raw pipeline mapping, recipes expanded (``recipe = {name = ..., ...}`` in a file is laid under it)."""
    if isinstance(config, str) and not config.endswith(".toml") and not Path(config).exists():
        if "." in config:  # a recipe name such as "vision.mae"
            return expand_recipe(config, recipe_args, registry)
        if recipe_args:
            raise ConfigError(f"--recipe arguments need a recipe (such as vision.mae), not the pipeline {config!r}")
        return read_pipeline(builtin_pipeline(config))
    raw = read_pipeline(config)
    if "recipe" not in raw:
        if recipe_args:
            raise ConfigError("--recipe arguments need a recipe: name one, or add recipe = {name = ...} to the file")
        return raw
    spec = raw.pop("recipe")
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    if "name" not in spec:
        raise ConfigError("recipe = {...} needs a 'name' (a registered recipe, see `ssl plugins`)")
    name = str(spec.pop("name"))
    return merge_tables(expand_recipe(name, {**spec, **recipe_args}, registry), raw)


def _device(cfg: PipelineConfig | None, staged: StagedPipeline | None) -> str:
    """The device of the run (overrides applied): the pipeline's, or the first stage's."""
    if cfg is not None:
        return cfg.train.device
    train = staged.stages[0].pipeline.get("train", {}) if staged is not None and staged.stages else {}
    return str(train.get("device", "auto")) if isinstance(train, Mapping) else "auto"


def _claim_out_dir(out_dir: Path, overwrite: bool) -> str | None:
    """Check (and with ``overwrite`` clear) an output directory; the problem as text, or ``None``."""
    if not out_dir.is_dir():
        return None
    found = sorted(e for e in RUN_FILES if (out_dir / e).exists())
    stages = sorted(p.name for p in out_dir.iterdir() if p.is_dir() and _STAGE_DIR.match(p.name))
    if not found and not any((out_dir / s / "config.toml").exists() for s in stages):
        return None
    if not overwrite:
        return (
            f"{out_dir} already holds a run ({', '.join(found or stages)}); continue it with --resume, "
            "replace it with --overwrite, or choose another --out"
        )
    for entry in [*_RUN_ENTRIES, *stages]:
        target = out_dir / entry
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    return None


def run(
    config: str | Path | Mapping[str, Any] = "quickstart",
    *,
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    resume: bool = False,
    overwrite: bool = False,
    registry: Registry | None = None,
    hooks: Any = None,
    root: str | None = None,
    encoder_state: Mapping[str, Any] | None = None,
    recipe_args: Mapping[str, Any] | None = None,
    loggers: Sequence[str] = (),
) -> RunResult:
    """Pretrain then evaluate, as ``ssl run``: the same files land in ``out``.

    A pipeline with ``[[stage]]`` blocks runs its stages in order (:mod:`ssl_core._stages`);
    the result then carries ``metrics["stages"]``.

    Args:
        config: a TOML path, a mapping, a recipe name (``"vision.mae"``) or a built-in
            pipeline name (``"quickstart"``).
        out: output directory for ``config.toml``, ``checkpoints/``, ``log.csv``,
            ``metrics.json``, ``loss.png`` and ``embeddings.png``; ``None`` writes nothing.
            A directory that already holds a run is refused unless ``resume`` or ``overwrite``.
        overrides: ``key.path=value`` strings, as ``--set``.
        resume: continue from the latest checkpoint in ``out``.
        overwrite: delete the run already in ``out`` first.
        hooks: a plugin manager; by default one with the installed plugins' hooks.
        root: dataset root passed to the dataset provider.
        encoder_state: weights to start the encoder from (an earlier stage's).
        recipe_args: keyword arguments of the recipe (``{"preset": "paper"}``, as ``--recipe``).
        loggers: logger names added to the pipeline's ``[[logger]]`` list (as ``--logger``).

    Raises:
        ConfigError: the pipeline is invalid, or ``out`` holds a run (without ``resume``/``overwrite``).
    """
    registry = registry or default_registry()
    if hooks is None:
        hooks = make_plugin_manager(report=registry.report) if registry.report is not None else make_plugin_manager()
    raw = _read_source(config, recipe_args or {}, registry)
    if loggers:
        present = raw.get("logger", [{"name": "csv"}])
        raw["logger"] = [*(present if isinstance(present, list) else [present]), *({"name": n} for n in loggers)]
    staged = load_stages(raw, overrides) if "stage" in raw else None
    cfg: PipelineConfig | None = None if staged is not None else load_config(raw, overrides)
    out_dir = Path(out) if out is not None else None
    with distributed_session(_device(cfg, staged)) as ctx:
        _refuse_existing_run(ctx, out_dir, resume, overwrite)
        if staged is not None:
            return run_stages(staged, ctx, out=out_dir, resume=resume, registry=registry, hooks=hooks, root=root)
        assert cfg is not None
        return run_pipeline(
            cfg, ctx, out_dir=out_dir, resume=resume, registry=registry, hooks=hooks, root=root,
            encoder_state=encoder_state,
        )  # fmt: skip


def _refuse_existing_run(ctx: DistributedContext, out_dir: Path | None, resume: bool, overwrite: bool) -> None:
    if out_dir is None or resume:
        return
    problem = run_on_main(ctx, lambda: _claim_out_dir(out_dir, overwrite))  # every rank stops, or none
    if problem is not None:
        raise ConfigError(problem)
