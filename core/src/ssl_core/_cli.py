"""The ``ssl`` command: ``plugins``, ``info``, ``run``, ``evaluate``.

``ssl plugins`` reads metadata only (no torch, no plugin import). Other commands
import what they need when they run. Errors print one line that says what to do
and exit with status 2; ``--debug`` shows the traceback.

Example:
    >>> main(["plugins", "--json"])  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._discovery import COMPONENT_GROUPS, DiscoveryReport, scan_plugins
from ._errors import EXIT_PREEMPTED, ConfigError, PreemptedError, SSLCoreError
from ._version import __version__

__all__ = ["main"]

_BUILTIN_COMMANDS = ("plugins", "info", "run", "evaluate", "export")


def _status_exit(report: DiscoveryReport, strict: bool) -> int:
    return 1 if strict and report.problems else 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    report = scan_plugins()
    if args.check:
        _import_check(report)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return _status_exit(report, args.strict)
    print(f"ssl-core {report.core_version}")
    width = max((len(p.name) for p in report.plugins), default=10)
    for plugin in report.plugins:
        print(f"\n{plugin.name:<{width}}  {plugin.version:<10} {plugin.status}")
        for problem in plugin.problems:
            print(f"  ! {problem}")
        for warning in plugin.warnings:
            print(f"  ! warning: {warning}")
        for kind in COMPONENT_GROUPS:
            names = sorted(c.name for c in plugin.components if c.kind == kind)
            if names:
                print(f"  {kind:<10} {', '.join(names)}")
        if plugin.hooks:
            print(f"  {'hooks':<10} {', '.join(plugin.hooks)}")
    if report.problems:
        hint = "fix or uninstall the plugins marked above" + ("" if args.strict else "; --strict makes this fatal")
        print(f"\n{len(report.problems)} plugin(s) with problems: {hint}", file=sys.stderr)
    warned = [p for p in report.plugins if p.warnings]
    if warned:
        print(f"{len(warned)} plugin(s) with warnings (usable; see the lines marked 'warning')", file=sys.stderr)
    return _status_exit(report, args.strict)


def _import_check(report: DiscoveryReport) -> None:
    """Import every usable component (``--check``) and record failures per plugin."""
    from ._registry import Registry

    registry = Registry(report=report)  # reuse the scan we already did
    for plugin in report.plugins:
        if plugin.status == "incompatible":
            continue
        for entry in plugin.components:
            if report.usable.get(entry.kind, {}).get(entry.name) is not entry:
                continue
            try:
                registry.get(entry.kind, entry.name)
            except SSLCoreError as exc:
                plugin.flag("error", str(exc))
    import warnings

    from ._hooks import load_hook_plugins

    with warnings.catch_warnings():  # a failing hook module is flagged on its plugin, shown below
        warnings.simplefilter("ignore")
        load_hook_plugins(report)


def _cmd_info(args: argparse.Namespace) -> int:
    import inspect

    from ._capabilities import CAPABILITIES
    from ._registry import default_registry

    registry = default_registry()
    kinds = [args.kind] if args.kind else list(COMPONENT_GROUPS)
    matches = [(k, registry.get(k, args.name)) for k in kinds if args.name in registry.names(k)]
    if not matches:
        from ._errors import ComponentNotFoundError
        from ._registry import closest

        for kind in kinds:  # installed but unavailable (duplicate, incompatible, broken): say why
            if registry.unavailable(kind, args.name) is not None:
                raise registry.not_found(kind, args.name)
        if args.kind:
            raise registry.not_found(args.kind, args.name)
        every = [n for k in COMPONENT_GROUPS for n in registry.names(k)]
        raise ComponentNotFoundError("component", args.name, closest(args.name, every))
    for kind, obj in matches:
        target = obj.__init__ if inspect.isclass(obj) else obj
        print(f"{args.name}  ({kind}: {obj.__module__}.{getattr(obj, '__qualname__', obj)})")
        try:
            params = inspect.signature(target).parameters.values()
        except (TypeError, ValueError):
            params = []  # type: ignore[assignment]
        rows = [p for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if rows:
            print("parameters:")
            for p in rows:
                default = "required" if p.default is p.empty else f"= {p.default!r}"
                annotation = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "")
                print(f"  {p.name:<20} {annotation:<28} {default}")
        data_params = getattr(obj, "data_params", ())
        if data_params:
            print(f"  [data_params = {tuple(data_params)!r}]")
        for flag in CAPABILITIES:
            if hasattr(obj, flag):
                print(f"  [{flag} = {getattr(obj, flag)!r}]")
        doc = inspect.getdoc(obj)
        if doc:
            print()
            print(doc)
    return 0


def _print_metrics(metrics: dict[str, Any]) -> None:
    evaluations = metrics.get("evaluations", {})
    baseline = metrics.get("random_init", {})
    if not evaluations:
        return
    print(f"\n{'evaluator':<24} {'metric':<22} {'pretrained':>11} {'random init':>12}")
    print("-" * 72)
    for name, values in evaluations.items():
        for metric, value in values.items():
            if metric == "seconds" or metric.startswith("layer_weight"):
                continue
            base = baseline.get(name, {}).get(metric)
            base_text = f"{base:>12.4f}" if base is not None else f"{'':>12}"
            print(f"{name:<24} {metric:<22} {value:>11.4f} {base_text}")


def _print_run(metrics: dict[str, Any]) -> None:
    train = metrics.get("train")
    if train:
        loss = train["final_loss"]
        print(
            f"\n{metrics['name']}: {train['steps']} steps in {train['seconds']:.1f} s "
            f"({train['samples_per_second']:.0f} samples/s), final loss "
            + (f"{loss:.4f}" if loss is not None else "n/a")
        )
    _print_metrics(metrics)


def _results_table(printed: set[str]) -> Any:
    """A hook plugin printing each pretraining run's results as soon as they are final, before the plots."""
    from ._hooks import hookimpl

    class ResultsTable:
        @hookimpl
        def ssl_on_results(self, metrics: dict[str, Any]) -> None:
            _print_run(metrics)
            sys.stdout.flush()
            printed.add(str(metrics.get("name")))

    return ResultsTable()


def _cmd_run(args: argparse.Namespace) -> int:
    from ._config import apply_overrides
    from ._hooks import make_plugin_manager
    from ._registry import default_registry
    from ._run import run

    source = args.pipeline or "quickstart"
    recipe_args = apply_overrides({}, args.recipe)
    hooks = make_plugin_manager(report=default_registry().report)
    printed: set[str] = set()
    hooks.register(_results_table(printed))
    result = run(
        source, out=args.out, overrides=args.set, resume=args.resume, overwrite=args.overwrite, root=args.root,
        recipe_args=recipe_args, loggers=args.logger, hooks=hooks,
    )  # fmt: skip
    if not result.is_main:  # under torchrun only rank 0 reports
        return 0
    if "stages" in result.metrics:
        for number, stage in enumerate(result.metrics["stages"], start=1):
            print(f"\n== stage {number}: {stage['stage']} ({stage['kind']})")
            for key, value in stage.get("artefacts", {}).items():
                print(f"  {key}: {value}")
            if stage.get("name") not in printed:  # this process printed pretrain stages as they finished
                _print_run(stage)
        if result.out_dir is not None:
            print(f"\nwrote {result.out_dir}/: stages.json, metrics.json and one folder per stage")
        return 0
    if result.out_dir is not None:
        print(
            f"\nwrote {result.out_dir}/: config.toml, metrics.json, log.csv, checkpoints/"
            + "".join(f", {Path(plot).name}" for plot in result.metrics.get("plots", []))
        )
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ._evaluate import evaluate_checkpoint

    results = evaluate_checkpoint(args.checkpoint, evaluators=args.evaluator, overrides=args.set, root=args.root)
    _print_metrics({"evaluations": results})
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from ._evaluate import load_encoder
    from ._export import ExportSource, export, export_formats

    if args.list or not args.to:
        loaded = load_encoder(args.run, root=args.root)
        formats = export_formats(ExportSource(loaded.encoder, loaded.config, loaded.splits))
        print(f"export formats for encoder {loaded.config.encoder.name!r}:")
        for name, why in formats.items():
            print(f"  {name:<12} {'yes' if why is None else 'no: ' + why}")
        if not args.list:
            print("choose one with --to FORMAT --out PATH")
        return 0 if args.list else 2
    if not args.out:
        raise ConfigError(f"--out PATH is required: the folder to write the {args.to} export into")
    result = export(args.run, args.to, args.out, root=args.root, overwrite=args.overwrite)
    print(f"wrote {result.path}/: {', '.join(result.files)}")
    print(f"checked on the run's data: largest difference from the encoder {result.max_abs_diff:.2g} (fp32)")
    if result.load:
        print("load it with:\n    " + result.load.replace("\n", "\n    "))
    return 0


def _parser() -> tuple[argparse.ArgumentParser, Any]:
    parser = argparse.ArgumentParser(prog="ssl", description="Self-supervised learning pipelines from plugins.")
    parser.add_argument("--version", action="version", version=f"ssl-core {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks (anywhere on the command line)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", help="list installed plugins and their components (reads metadata only)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--strict", action="store_true", help="exit 1 when any plugin has a problem")
    p.add_argument("--check", action="store_true", help="also import every component to find import errors")
    p.set_defaults(func=_cmd_plugins)

    p = sub.add_parser("info", help="show a component's parameters and documentation")
    p.add_argument("name", help="component name, e.g. core.knn")
    p.add_argument("--kind", choices=list(COMPONENT_GROUPS), help="restrict to one kind")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("run", help="pretrain, then evaluate (no PIPELINE: the built-in quickstart)")
    p.add_argument("pipeline", nargs="?", help="a pipeline .toml, a recipe name (vision.mae) or 'quickstart'")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.steps=100")
    p.add_argument("--out", default="runs/latest", help="output directory (default: runs/latest)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--overwrite", action="store_true", help="delete the run already in --out, then start afresh")
    p.add_argument("--root", default=None, help="dataset root directory")
    p.add_argument(
        "--recipe", action="append", default=[], metavar="KEY=VALUE", help="a recipe argument, e.g. preset=paper"
    )
    p.add_argument(
        "--logger", action="append", default=[], metavar="NAME",
        help="also log with NAME (jsonl, tensorboard, mlflow, wandb or a plugin's logger)",
    )  # fmt: skip
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("evaluate", help="evaluate the encoder of a checkpoint or run directory")
    p.add_argument("checkpoint", help="a checkpoint .pt file or a run directory")
    p.add_argument("--evaluator", action="append", default=[], metavar="NAME", help="evaluator(s) to run")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the stored config")
    p.add_argument(
        "--root", default=None, help="dataset root directory (default: the one the run recorded; pass it if moved)"
    )
    p.add_argument("--json", action="store_true", help="also print the metrics as JSON")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("export", help="write a run's encoder for other libraries (timm, hf, onnx, safetensors, ...)")
    p.add_argument("run", help="a run directory or checkpoint .pt file")
    p.add_argument("--to", default=None, metavar="FORMAT", help="safetensors, onnx or a plugin's (timm, hf, ...)")
    p.add_argument("--out", default=None, help="folder to write")
    p.add_argument("--list", action="store_true", help="list the formats this run's encoder exports to")
    p.add_argument("--overwrite", action="store_true", help="replace --out when it exists")
    p.add_argument("--root", default=None, help="dataset root (default: the one the run recorded)")
    p.set_defaults(func=_cmd_export)
    return parser, sub


def _pop_debug(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--debug`` (accepted anywhere before a ``--``), and whether it was there."""
    end = argv.index("--") if "--" in argv else len(argv)
    kept = [a for a in argv[:end] if a != "--debug"]
    return kept + argv[end:], len(kept) != end


def _quiet_broken_pipe() -> int:
    """The reader of stdout went away (``ssl plugins | head``): no traceback, exit as ``SIGPIPE`` would."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # Python flushes stdout again at exit; let that go nowhere
    return 141


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ssl`` console script; returns the exit status."""
    argv, debug = _pop_debug(list(sys.argv[1:] if argv is None else argv))
    parser, sub = _parser()
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is not None and command not in _BUILTIN_COMMANDS:  # only now load hook plugins' CLI commands
        from ._hooks import make_plugin_manager

        make_plugin_manager().hook.ssl_add_cli_commands(subparsers=sub)
    args = parser.parse_args(argv)
    args.debug = debug
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, inside the handler, not at interpreter exit
        return status
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except PreemptedError as exc:
        print(f"ssl {args.command}: {exc}", file=sys.stderr)
        return EXIT_PREEMPTED
    except SSLCoreError as exc:
        if args.debug:
            raise
        print(f"ssl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ssl {args.command}: interrupted; the last checkpoint is kept, continue with --resume", file=sys.stderr)
        return 130
