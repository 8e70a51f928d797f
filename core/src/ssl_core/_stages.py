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

from ._checkpoint import latest_checkpoint
from ._config import (
    ComponentConfig,
    PipelineConfig,
    apply_overrides,
    component_config,
    deep_copy,
    load_config,
    merge_tables,
    read_pipeline,
    unknown_key_error,
)
from ._distributed import DistributedContext, run_on_main
from ._errors import ConfigError, EncoderWeightsMismatchError
from ._evaluate import evaluate, load_encoder, skipped_in_evaluation
from ._pipeline import build_component, build_dataset, build_encoder, build_evaluators, load_encoder_state
from ._pretrain import run_pipeline
from ._registry import Registry
from ._results import RunResult, StageRecord, jsonable, write_json_atomic

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Stage", "StagedPipeline", "load_stages", "resolve_artefacts", "run_stages"]

StageKind = Literal["pretrain", "evaluate", "task"]
_STAGE_KEYS = ("name", "kind", "init", "task")
_PIPELINE_KEYS = (
    "data", "encoder", "views", "objective", "train", "evaluate", "logger", "seed", "compare_random_init", "plots",
)  # fmt: skip
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
            raise unknown_key_error(key, [*_PIPELINE_KEYS, "name", "stage"], "the pipeline")
    pipeline_name = str(raw.pop("name", "pipeline"))
    staged = StagedPipeline(name=pipeline_name)
    seen: list[str] = []
    for number, stage_raw in enumerate(stages_raw, start=1):
        if not isinstance(stage_raw, Mapping):
            raise ConfigError(f"stage {number} must be a table")
        for key in stage_raw:
            if key not in (*_STAGE_KEYS, *_PIPELINE_KEYS):
                raise unknown_key_error(key, [*_STAGE_KEYS, *_PIPELINE_KEYS], f"stage {number}")
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
        pipeline = merge_tables(raw, stage_raw, skip=_STAGE_KEYS)
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
            task = {"name": task_raw} if isinstance(task_raw, str) else deep_copy(task_raw)
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
        data_cfg = PipelineConfig(data=component_config(pipeline["data"], "data"), encoder=ComponentConfig(name=""))
        splits = build_dataset(data_cfg, registry, root=root)
        context.update({**splits.info, "num_classes": splits.num_classes, "modality": splits.modality})
        context["splits"] = splits
    stage_dir.mkdir(parents=True, exist_ok=True)
    params = {k: v for k, v in spec.items() if k != "name"}
    produced = build_component(task, params, context, f"task {spec['name']!r} (stage {stage.name!r})")
    if not isinstance(produced, Mapping):
        raise ConfigError(f"task {spec['name']!r} must return a mapping of artefacts, got {type(produced).__name__}")
    return dict(jsonable(dict(produced)))


@contextmanager
def _naming_stage(name: str) -> Iterator[None]:
    """Say which stage could not take the previous stage's encoder, and what to do."""
    try:
        yield
    except EncoderWeightsMismatchError as exc:
        raise EncoderWeightsMismatchError(
            f"stage {name!r} continues the previous stage's encoder, but {str(exc).replace('the given', 'its')}; "
            "give both stages the same [encoder], or set init = 'scratch' in this stage"
        ) from exc


class _StageRunner:
    """Runs the stages of one pipeline in order, holding what they hand on (encoder, artefacts, records)."""

    def __init__(
        self, staged: StagedPipeline, ctx: DistributedContext, base: Path, registry: Registry, hooks: Any,
        root: str | None, resume: bool, write: bool,
    ) -> None:  # fmt: skip
        self.staged, self.ctx, self.base, self.registry, self.hooks = staged, ctx, base, registry, hooks
        self.root, self.resume, self.write = root, resume, write
        self.artefacts: dict[str, dict[str, Any]] = {}
        self.records: list[StageRecord] = []
        self.encoder: nn.Module | None = None
        self.encoder_checkpoint: str | None = None
        self.last: RunResult | None = None

    def finished_stages(self) -> dict[str, StageRecord]:
        record_path = self.base / "stages.json"
        if not (self.resume and record_path.is_file()):
            return {}
        return {r["name"]: r for r in json.loads(record_path.read_text())["stages"]}

    def previous_encoder(self) -> nn.Module | None:
        if self.encoder is None and self.encoder_checkpoint is not None:
            self.encoder = load_encoder(self.encoder_checkpoint, registry=self.registry, root=self.root).encoder
        return self.encoder

    def run(self, number: int, stage: Stage) -> StageRecord:
        stage_dir = self.base / f"{number}-{stage.name}"
        pipeline = resolve_artefacts(stage.pipeline, self.artefacts)
        previous = self.previous_encoder() if stage.init == "previous" else None
        if stage.init == "scratch" and stage.kind == "task" and "encoder" in pipeline:
            fresh = load_config(pipeline, pretrain=False)  # a task from scratch gets a fresh encoder
            previous = build_encoder(fresh, build_dataset(fresh, self.registry, root=self.root), self.registry)
        if stage.kind == "pretrain":
            return self._pretrain(stage, pipeline, previous, stage_dir)
        # evaluate and task stages run on rank 0; the others wait and receive the record (artefacts)
        if stage.kind == "evaluate":
            return run_on_main(self.ctx, lambda: self._evaluate(stage, pipeline, previous, stage_dir))
        return run_on_main(self.ctx, lambda: self._task(stage, pipeline, previous, stage_dir))

    def _task(self, stage: Stage, pipeline: dict[str, Any], previous: nn.Module | None, stage_dir: Path) -> StageRecord:
        produced = _task_stage(stage, pipeline, previous, stage_dir, self.registry, self.root, self.artefacts)
        return _record(stage, None, {"artefacts": produced}, {**produced, "out_dir": str(stage_dir)})

    def _pretrain(
        self, stage: Stage, pipeline: dict[str, Any], previous: nn.Module | None, stage_dir: Path
    ) -> StageRecord:
        cfg = load_config(pipeline)
        stage_resume = self.resume and latest_checkpoint(stage_dir / "checkpoints") is not None
        with _naming_stage(stage.name):
            result = run_pipeline(
                cfg,
                self.ctx,
                out_dir=stage_dir,
                resume=stage_resume,
                registry=self.registry,
                hooks=self.hooks,
                root=self.root,
                encoder_state=previous.state_dict() if previous is not None else None,
            )
        self.last, self.encoder = result, result.encoder
        checkpoint = latest_checkpoint(stage_dir / "checkpoints")
        self.encoder_checkpoint = str(checkpoint) if checkpoint is not None else None
        artefacts = {"checkpoint": self.encoder_checkpoint, "out_dir": str(stage_dir)}
        return _record(stage, self.encoder_checkpoint, result.metrics, artefacts)

    def _evaluate(
        self, stage: Stage, pipeline: dict[str, Any], previous: nn.Module | None, stage_dir: Path
    ) -> StageRecord:
        cfg = load_config(pipeline, pretrain=False)
        splits = build_dataset(cfg, self.registry, root=self.root)
        evaluated = build_encoder(cfg, splits, self.registry)
        if stage.init == "previous":
            if previous is None:
                raise ConfigError(
                    f"stage {stage.name!r} evaluates the previous stage's encoder, but no earlier stage "
                    "trained one; put a pretrain stage first or set init = 'scratch'"
                )
            with _naming_stage(stage.name):
                load_encoder_state(evaluated, previous.state_dict(), f"encoder {cfg.encoder.name!r}")
        evaluators = build_evaluators(cfg.evaluate, splits, self.registry)
        with skipped_in_evaluation() as skipped:
            results = evaluate(evaluated, splits, evaluators, batch_size=cfg.train.eval_batch_size, hooks=self.hooks)
        data = {"skipped_in_evaluation": len(skipped), "skipped_in_evaluation_names": sorted(skipped)[:20]}
        metrics = {"name": cfg.name, "evaluations": results, "data": data}
        if self.write:
            write_json_atomic(stage_dir / "metrics.json", metrics)
        return _record(stage, None, metrics, {"out_dir": str(stage_dir)})

    def add(self, record: StageRecord) -> None:
        self.artefacts[record["name"]] = dict(record["artefacts"])
        if record["encoder_checkpoint"]:
            self.encoder_checkpoint = record["encoder_checkpoint"]
        self.records.append(record)
        if self.write and self.ctx.is_main:
            write_json_atomic(self.base / "stages.json", {"name": self.staged.name, "stages": self.records})


def _record(
    stage: Stage, checkpoint: str | None, metrics: Mapping[str, Any], artefacts: Mapping[str, Any]
) -> StageRecord:
    return {
        "name": stage.name,
        "kind": stage.kind,
        "encoder_checkpoint": checkpoint,
        "metrics": dict(metrics),
        "artefacts": dict(artefacts),
    }


def run_stages(
    staged: StagedPipeline,
    ctx: DistributedContext,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    registry: Registry,
    hooks: Any,
    root: str | None = None,
) -> RunResult:
    """Run the stages in order inside an open distributed context (what :func:`ssl_core.run` does for stages).

    Returns the last pretraining stage's result with ``metrics["stages"]`` listing every
    stage's metrics; ``result.encoder`` is the encoder after the last stage. Files, evaluate
    and task stages happen on rank 0; the other ranks wait at a barrier and receive the
    artefacts, so every rank starts each pretrain stage together.
    """
    scratch = tempfile.TemporaryDirectory(prefix="ssl-stages-") if out is None else None
    base = Path(out) if out is not None else Path(scratch.name)  # type: ignore[union-attr]
    runner = _StageRunner(staged, ctx, base, registry, hooks, root, resume, write=out is not None)
    try:
        done = runner.finished_stages()
        for number, stage in enumerate(staged.stages, start=1):
            if stage.name in done:  # finished before the interruption: reuse its record
                if done[stage.name]["encoder_checkpoint"]:
                    runner.encoder = None  # loaded from that checkpoint when a later stage needs it
                runner.add(done[stage.name])
                continue
            runner.add(runner.run(number, stage))
        last = runner.last
        if last is None and runner.encoder_checkpoint is not None:  # every pretrain stage finished before a resume
            loaded = load_encoder(runner.encoder_checkpoint, registry=registry, root=root)
            last = RunResult(metrics={}, config=loaded.config, out_dir=None, encoder=loaded.encoder, history=[])
        if last is None:
            raise ConfigError("a staged pipeline needs at least one pretrain stage")
        summary = {"name": staged.name, "stages": [{"stage": r["name"], "kind": r["kind"], **r["metrics"]}
                                                    for r in runner.records]}  # fmt: skip
        if out is not None and ctx.is_main:
            write_json_atomic(base / "metrics.json", summary)
        return RunResult(
            metrics=summary,
            config=last.config,
            out_dir=Path(out) if out is not None else None,
            encoder=runner.encoder if runner.encoder is not None else last.encoder,
            history=last.history,
            is_main=ctx.is_main,
        )
    finally:
        if scratch is not None:
            scratch.cleanup()
