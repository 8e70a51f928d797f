"""Multi-stage pipelines: ``[[stage]]`` blocks run in order and hand the encoder and artefacts on.

The top-level tables of the file are defaults; each stage overrides them::

    name = "hubert-two-iterations"
    [data]
    name = "speech.fsdd"
    [encoder]
    name = "speech.wav2vec2"
    [views]
    name = "speech.span_mask"

    [[stage]]
    name = "mfcc-labels"
    task = { name = "speech.hubert_labels", source = "mfcc" }

    [[stage]]
    name = "iteration-1"
    objective = { name = "speech.hubert" }
    data = { labels = "${mfcc-labels.labels}" }

A stage is one of three kinds:

- ``pretrain`` (the default): a whole pipeline, trained and evaluated as ``ssl run`` does;
- ``evaluate``: the evaluators only (``[[evaluate]]``), on the current encoder;
- ``task`` (it has a ``task`` table): a registered task (entry-point group
  ``ssl_core.tasks``) called with what it asks for among ``encoder``, ``splits``,
  ``out_dir``, ``seed`` and the dataset's facts; it returns artefacts (paths, numbers).

Merging: a component table (``data``, ``encoder``, ``views``) with the default's name
(or none) updates the default's parameters, one with another name replaces it;
``objective`` and ``evaluate`` replace; ``train`` updates. ``init = "scratch"`` starts a
stage from a fresh encoder instead of the previous stage's (HuBERT's iteration 2).
Strings ``"${stage.artefact}"`` are replaced by an earlier stage's artefact; every
pretrain stage provides ``checkpoint`` and ``out_dir``. ``--set`` overrides apply to
every stage (``stage.N.key=value`` to one; ``stage.N.task.key=value`` to a task's parameters).

With an output directory each stage writes into ``{out}/{N}-{name}/`` and finished stages
are recorded in ``{out}/stages.json``: ``--resume`` skips them and resumes the stage that
was cut off from its last checkpoint.

Example:
    >>> staged = load_stages({"data": {"name": "core.digits"}, "encoder": {"name": "core.mlp"},
    ...     "views": {"name": "core.noise"}, "stage": [{"objective": {"name": "core.simclr"}},
    ...     {"name": "probe", "kind": "evaluate", "evaluate": [{"name": "core.knn"}]}]})
    >>> [(s.name, s.kind) for s in staged.stages]
    [('stage-1', 'pretrain'), ('probe', 'evaluate')]
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from torch import nn

    from ._registry import Registry
    from ._run import RunResult

from ._config import (
    ComponentConfig,
    PipelineConfig,
    _component,
    _deep_copy,
    _unknown_key,
    apply_overrides,
    load_config,
    read_pipeline,
)
from ._errors import ConfigError, IncompatibleComponentsError

__all__ = ["Stage", "StagedPipeline", "load_stages", "resolve_artefacts", "run_stages"]

StageKind = Literal["pretrain", "evaluate", "task"]
_STAGE_KEYS = ("name", "kind", "init", "task")
_PIPELINE_KEYS = ("data", "encoder", "views", "objective", "train", "evaluate", "seed", "compare_random_init", "plots")
_COMPONENT_TABLES = ("data", "encoder", "views")
_REFERENCE = re.compile(r"\$\{([^}.]+)\.([^}]+)\}")


@dataclass
class Stage:
    """One ``[[stage]]``: its kind, how its encoder starts, and its pipeline (top-level defaults merged in)."""

    name: str
    kind: StageKind
    init: Literal["previous", "scratch"]
    pipeline: dict[str, Any]
    task: dict[str, Any] | None = None


@dataclass
class StagedPipeline:
    """A pipeline of stages, as read by :func:`load_stages`."""

    name: str
    stages: list[Stage] = field(default_factory=list)


def _merge(defaults: Mapping[str, Any], stage: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = _deep_copy(defaults)
    for key, value in stage.items():
        if key in _STAGE_KEYS:
            continue
        base = merged.get(key)
        if key in _COMPONENT_TABLES and isinstance(value, Mapping) and isinstance(base, Mapping):
            same = "name" not in value or value["name"] == base.get("name")
            merged[key] = {**base, **value} if same else dict(value)
        elif key == "train" and isinstance(value, Mapping) and isinstance(base, Mapping):
            merged[key] = {**base, **value}
        else:
            merged[key] = _deep_copy(value)
    return merged


def _split_overrides(overrides: Sequence[str]) -> tuple[list[str], dict[int, list[str]]]:
    """``stage.N.key=value`` overrides go to stage N (1-based); the rest apply to every stage."""
    common: list[str] = []
    per_stage: dict[int, list[str]] = {}
    for item in overrides:
        key, _, value = item.partition("=")
        parts = key.strip().split(".")
        if parts[0] == "stage":
            if len(parts) < 3 or not parts[1].isdigit():
                raise ConfigError(f"override {item!r}: use stage.N.key=value with N the stage number (from 1)")
            per_stage.setdefault(int(parts[1]), []).append(".".join(parts[2:]) + "=" + value)
        else:
            common.append(item)
    return common, per_stage


def load_stages(source: str | Path | Mapping[str, Any], overrides: Sequence[str] = ()) -> StagedPipeline:
    """Read a ``[[stage]]`` pipeline and check every stage's merged config (artefact references stay unresolved).

    Raises:
        ConfigError: no stages, a stage of unknown kind, a duplicate stage name, a
            reference to a later or unknown stage, or any error of the merged config.
    """
    raw = read_pipeline(source)
    stages_raw = raw.pop("stage", None)
    if not isinstance(stages_raw, list) or not stages_raw:
        raise ConfigError("a staged pipeline needs [[stage]] blocks (an array of tables)")
    common, per_stage = _split_overrides(overrides)
    if any(n < 1 or n > len(stages_raw) for n in per_stage):
        raise ConfigError(f"stage overrides must name stages 1..{len(stages_raw)}")
    for key in raw:
        if key not in (*_PIPELINE_KEYS, "name"):
            raise _unknown_key(key, [*_PIPELINE_KEYS, "name", "stage"], "the pipeline")
    pipeline_name = str(raw.pop("name", "pipeline"))
    staged = StagedPipeline(name=pipeline_name)
    seen: list[str] = []
    for number, stage_raw in enumerate(stages_raw, start=1):
        if not isinstance(stage_raw, Mapping):
            raise ConfigError(f"stage {number} must be a table")
        for key in stage_raw:
            if key not in (*_STAGE_KEYS, *_PIPELINE_KEYS):
                raise _unknown_key(key, [*_STAGE_KEYS, *_PIPELINE_KEYS], f"stage {number}")
        name = str(stage_raw.get("name", f"stage-{number}"))
        if name in seen or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise ConfigError(f"stage {number}: name {name!r} must be unique and use only letters, digits, - and _")
        kind = stage_raw.get("kind", "task" if "task" in stage_raw else "pretrain")
        if kind not in ("pretrain", "evaluate", "task"):
            raise ConfigError(f"stage {name!r}: kind must be 'pretrain', 'evaluate' or 'task', got {kind!r}")
        if (kind == "task") != ("task" in stage_raw):
            raise ConfigError(
                f"stage {name!r}: a task stage needs task = {{ name = ... }} and only task stages have one"
            )
        init = stage_raw.get("init", "previous")
        if init not in ("previous", "scratch"):
            raise ConfigError(f"stage {name!r}: init must be 'previous' or 'scratch', got {init!r}")
        own = per_stage.get(number, [])
        task_overrides = [o for o in own if o.startswith("task.")]
        pipeline = _merge(raw, stage_raw)
        pipeline["name"] = f"{pipeline_name}/{name}"
        pipeline = apply_overrides(pipeline, [*common, *(o for o in own if not o.startswith("task."))])
        for ref_stage, _ in _REFERENCE.findall(json.dumps(pipeline) + json.dumps(stage_raw.get("task", {}))):
            if ref_stage not in seen:
                raise ConfigError(
                    f"stage {name!r} refers to ${{{ref_stage}...}}, which is not an earlier stage "
                    f"(earlier: {', '.join(seen) or 'none'})"
                )
        task = None
        if kind == "task":
            task_raw = stage_raw["task"]
            task = {"name": task_raw} if isinstance(task_raw, str) else _deep_copy(task_raw)
            task = apply_overrides({"task": task}, task_overrides)["task"]
            if "name" not in task:
                raise ConfigError(f"stage {name!r}: task needs a 'name' (a registered task, see `ssl plugins`)")
        else:
            try:
                load_config(pipeline, pretrain=kind == "pretrain")
            except ConfigError as exc:
                raise ConfigError(f"stage {name!r}: {exc}") from exc
            if kind == "evaluate" and not pipeline.get("evaluate"):
                raise ConfigError(f"stage {name!r}: an evaluate stage needs [[stage.evaluate]] evaluators")
        staged.stages.append(Stage(name=name, kind=kind, init=init, pipeline=pipeline, task=task))
        seen.append(name)
    return staged


def resolve_artefacts(value: Any, artefacts: Mapping[str, Mapping[str, Any]]) -> Any:
    """Replace ``"${stage.key}"`` strings inside ``value`` with the earlier stages' artefacts.

    A string that is exactly one reference takes the artefact's value (any type); references
    inside a longer string are formatted into it.

    Example:
        >>> resolve_artefacts({"labels": "${l.path}", "n": "${l.k}"}, {"l": {"path": "a.pt", "k": 3}})
        {'labels': 'a.pt', 'n': 3}
    """
    if isinstance(value, Mapping):
        return {k: resolve_artefacts(v, artefacts) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_artefacts(v, artefacts) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value

    def lookup(match: re.Match[str]) -> Any:
        stage, key = match.group(1), match.group(2)
        if stage not in artefacts or key not in artefacts[stage]:
            have = ", ".join(sorted(artefacts.get(stage, {}))) or "none"
            raise ConfigError(f"${{{stage}.{key}}}: stage {stage!r} has no artefact {key!r} (it has: {have})")
        return artefacts[stage][key]

    whole = _REFERENCE.fullmatch(value)
    if whole:
        return lookup(whole)
    return _REFERENCE.sub(lambda m: str(lookup(m)), value)


def write_json_atomic(path: Path, document: Any) -> None:
    """Write JSON to ``path`` atomically (:func:`~ssl_core._checkpoint.write_atomic`)."""
    from ._checkpoint import write_atomic

    text = json.dumps(document, indent=2) + "\n"
    write_atomic(path, lambda f: f.write(text.encode()))


def _task_stage(
    stage: Stage,
    pipeline: Mapping[str, Any],
    encoder: nn.Module | None,
    stage_dir: Path,
    registry: Registry,
    root: str | None,
    artefacts: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    import inspect

    from ._pipeline import build_component, build_dataset
    from ._run import _jsonable

    assert stage.task is not None
    spec = resolve_artefacts(stage.task, artefacts)
    task = registry.get("task", spec["name"])
    try:
        wanted = set(inspect.signature(task).parameters)
    except (TypeError, ValueError):
        wanted = set()
    context: dict[str, Any] = {"out_dir": stage_dir, "seed": int(pipeline.get("seed", 0))}
    if encoder is not None:
        context["encoder"] = encoder
    if "splits" in wanted:
        if "data" not in pipeline:
            raise ConfigError(f"stage {stage.name!r}: task {spec['name']!r} needs a dataset; add a [data] table")
        data_cfg = PipelineConfig(data=_component(pipeline["data"], "data"), encoder=ComponentConfig(name=""))
        splits = build_dataset(data_cfg, registry, root=root)
        context.update({**splits.info, "num_classes": splits.num_classes, "modality": splits.modality})
        context["splits"] = splits
    stage_dir.mkdir(parents=True, exist_ok=True)
    params = {k: v for k, v in spec.items() if k != "name"}
    produced = build_component(task, params, context, f"task {spec['name']!r} (stage {stage.name!r})")
    if not isinstance(produced, Mapping):
        raise ConfigError(f"task {spec['name']!r} must return a mapping of artefacts, got {type(produced).__name__}")
    return dict(_jsonable(dict(produced)))


@contextmanager
def _naming_stage(name: str) -> Iterator[None]:
    """Say which stage could not take the previous stage's encoder, and what to do."""
    try:
        yield
    except IncompatibleComponentsError as exc:
        if "given encoder weights" not in str(exc):
            raise
        raise IncompatibleComponentsError(
            f"stage {name!r} continues the previous stage's encoder, but {str(exc).replace('the given', 'its')}; "
            "give both stages the same [encoder], or set init = 'scratch' in this stage"
        ) from exc


def run_stages(
    staged: StagedPipeline,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    registry: Registry | None = None,
    hooks: Any = None,
    root: str | None = None,
) -> RunResult:
    """Run the stages in order (what :func:`ssl_core.run` does for a ``[[stage]]`` file).

    Returns the last pretraining stage's result with ``metrics["stages"]`` listing every
    stage's metrics; ``result.encoder`` is the encoder after the last stage.
    """
    from ._checkpoint import latest_checkpoint
    from ._pipeline import build_dataset, build_encoder, build_evaluators, load_encoder_state
    from ._registry import default_registry
    from ._run import RunResult, evaluate, load_encoder, run

    registry = registry or default_registry()
    scratch = tempfile.TemporaryDirectory(prefix="ssl-stages-") if out is None else None
    base = Path(out) if out is not None else Path(scratch.name)  # type: ignore[union-attr]
    record_path = base / "stages.json"
    done: dict[str, dict[str, Any]] = {}
    if resume and record_path.is_file():
        done = {r["name"]: r for r in json.loads(record_path.read_text())["stages"]}
    artefacts: dict[str, dict[str, Any]] = {}
    records: list[dict[str, Any]] = []
    encoder: nn.Module | None = None
    encoder_checkpoint: str | None = None
    last: RunResult | None = None
    try:
        for number, stage in enumerate(staged.stages, start=1):
            stage_dir = base / f"{number}-{stage.name}"
            if stage.name in done:  # finished before the interruption: reuse its record
                finished = done[stage.name]
                artefacts[stage.name] = finished["artefacts"]
                if finished.get("encoder_checkpoint"):
                    encoder_checkpoint, encoder = finished["encoder_checkpoint"], None
                records.append(finished)
                continue
            pipeline = resolve_artefacts(stage.pipeline, artefacts)
            previous: nn.Module | None = None
            if stage.init == "previous":
                if encoder is None and encoder_checkpoint is not None:
                    encoder = load_encoder(encoder_checkpoint, registry=registry, root=root).encoder
                previous = encoder
            elif stage.kind == "task" and "encoder" in pipeline:  # a task from scratch gets a fresh encoder
                fresh = load_config(pipeline, pretrain=False)
                previous = build_encoder(fresh, build_dataset(fresh, registry, root=root), registry)
            record: dict[str, Any] = {"name": stage.name, "kind": stage.kind, "encoder_checkpoint": None}
            if stage.kind == "pretrain":
                stage_resume = resume and latest_checkpoint(stage_dir / "checkpoints") is not None
                with _naming_stage(stage.name):
                    result = run(
                        pipeline,
                        out=stage_dir,
                        resume=stage_resume,
                        registry=registry,
                        hooks=hooks,
                        root=root,
                        encoder_state=previous.state_dict() if previous is not None else None,
                    )
                last, encoder = result, result.encoder
                checkpoint = latest_checkpoint(stage_dir / "checkpoints")
                encoder_checkpoint = str(checkpoint) if checkpoint is not None else None
                record.update(encoder_checkpoint=encoder_checkpoint, metrics=result.metrics)
                artefacts[stage.name] = {"checkpoint": encoder_checkpoint, "out_dir": str(stage_dir)}
            elif stage.kind == "evaluate":
                cfg = load_config(pipeline, pretrain=False)
                splits = build_dataset(cfg, registry, root=root)
                evaluated = build_encoder(cfg, splits, registry)
                if stage.init == "previous":
                    if previous is None:
                        raise ConfigError(
                            f"stage {stage.name!r} evaluates the previous stage's encoder, but no earlier stage "
                            "trained one; put a pretrain stage first or set init = 'scratch'"
                        )
                    with _naming_stage(stage.name):
                        load_encoder_state(evaluated, previous.state_dict(), f"encoder {cfg.encoder.name!r}")
                metrics = {
                    "name": cfg.name,
                    "evaluations": evaluate(
                        evaluated,
                        splits,
                        build_evaluators(cfg.evaluate, splits, registry),
                        batch_size=cfg.train.eval_batch_size,
                        hooks=hooks,
                    ),
                }
                write_json_atomic(stage_dir / "metrics.json", metrics)
                record["metrics"] = metrics
                artefacts[stage.name] = {"out_dir": str(stage_dir)}
            else:
                produced = _task_stage(stage, pipeline, previous, stage_dir, registry, root, artefacts)
                record["metrics"] = {"artefacts": produced}
                artefacts[stage.name] = {**produced, "out_dir": str(stage_dir)}
            record["artefacts"] = artefacts[stage.name]
            records.append(record)
            if out is not None:
                write_json_atomic(record_path, {"name": staged.name, "stages": records})
        if last is None and encoder_checkpoint is not None:  # every pretrain stage finished before a resume
            loaded = load_encoder(encoder_checkpoint, registry=registry, root=root)
            last = RunResult(metrics={}, config=loaded.config, out_dir=None, encoder=loaded.encoder, history=[])
        if last is None:
            raise ConfigError("a staged pipeline needs at least one pretrain stage")
        summary = {"name": staged.name, "stages": [{"stage": r["name"], "kind": r["kind"], **r["metrics"]}
                                                    for r in records]}  # fmt: skip
        if out is not None:
            write_json_atomic(base / "metrics.json", summary)
        return RunResult(
            metrics=summary,
            config=last.config,
            out_dir=Path(out) if out is not None else None,
            encoder=encoder if encoder is not None else last.encoder,
            history=last.history,
        )
    finally:
        if scratch is not None:
            scratch.cleanup()
