"""Pluggy hooks: events reach hook plugins, CLI commands come from plugins, broken ones are skipped."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import ssl_core
from ssl_core._hooks import make_plugin_manager

HOOK_SOURCE = """
from ssl_core import hookimpl

@hookimpl
def ssl_add_cli_commands(subparsers):
    p = subparsers.add_parser("hello", help="say hello")
    p.add_argument("who")
    p.set_defaults(func=lambda args: print(f"hello {args.who}") or 0)
"""


def test_events_and_logger_backend_receive_the_run() -> None:
    torch.set_num_threads(1)
    seen: dict[str, list[Any]] = {"start": [], "steps": [], "logged": [], "end": [], "evaluated": []}

    class Recorder:
        @ssl_core.hookimpl
        def ssl_on_train_start(self, config: Any, encoder: Any, objective: Any, out_dir: Any) -> None:
            seen["start"].append(config["name"])

        @ssl_core.hookimpl
        def ssl_on_step_end(self, step: int, metrics: Any) -> None:
            seen["steps"].append(step)

        @ssl_core.hookimpl
        def ssl_log_metrics(self, step: int, metrics: Any) -> None:
            seen["logged"].append(metrics["loss"])

        @ssl_core.hookimpl
        def ssl_on_train_end(self, summary: Any) -> None:
            seen["end"].append(summary["steps"])

        @ssl_core.hookimpl
        def ssl_on_evaluate_end(self, evaluator: str, metrics: Any) -> None:
            seen["evaluated"].append(evaluator)

    pm = make_plugin_manager(load_entry_points=False)
    pm.register(Recorder())
    ssl_core.run(
        "quickstart",
        hooks=pm,
        overrides=[
            "train.steps=4",
            "train.log_every=2",
            "train.batch_size=32",
            "train.progress=false",
            "plots=false",
            "evaluate=[{name='core.knn', k=[5]}]",
        ],
    )
    assert seen["start"] == ["quickstart"] and seen["steps"] == [1, 2, 3, 4] and seen["end"] == [4]
    assert len(seen["logged"]) == 3  # steps 1, 2 and 4
    assert seen["evaluated"] == ["core.knn", "random_init/core.knn"]


def test_plugin_cli_command_and_broken_hook_plugin(tmp_path: Path, fake_distribution: Callable[..., None]) -> None:
    make_distribution = fake_distribution
    make_distribution(
        tmp_path,
        "ssl-hello",
        entry_points={"ssl_core.hooks": {"hello": "ssl_hello"}},
        module="ssl_hello",
        module_source=HOOK_SOURCE,
    )
    make_distribution(
        tmp_path,
        "ssl-badhook",
        entry_points={"ssl_core.hooks": {"bad": "ssl_badhook"}},
        module="ssl_badhook",
        module_source="raise RuntimeError('boom')\n",
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "ssl_core", "hello", "world"], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hello world"
    assert "hook plugin 'bad' from ssl-badhook was skipped: RuntimeError: boom" in out.stderr
