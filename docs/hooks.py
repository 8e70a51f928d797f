"""mkdocs hooks: benchmark tables from ``benchmarks/results/*.json``, the CLI reference, links out of ``docs/``.

Markers in the Markdown sources:

- ``<!-- benchmark: NAME -->`` becomes a table of ``benchmarks/results/NAME.json``: one row
  per (case, metric), one column per implementation, the mean of the raw rows (with the
  number of rows when more than one), and a line with the commit and the environment;
- ``<!-- ssl-cli-reference -->`` becomes the ``--help`` of ``ssl`` and each built-in command.

Links from a page to files of the repository outside ``docs/`` (``../benchmarks/...``,
``../examples/...``) are checked to exist and rendered as code paths; a missing target
or result file fails the build.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BENCHMARK = re.compile(r"<!--\s*benchmark:\s*([\w-]+)\s*-->")
CLI = "<!-- ssl-cli-reference -->"
OUTSIDE_LINK = re.compile(r"\[([^\]]+)\]\((\.\./[^)\s#]+)(#[^)]*)?\)")


def _number(value: float) -> str:
    if value == 0 or 0.01 <= abs(value) < 100_000:
        return f"{value:.4g}" if abs(value) < 100 else f"{value:,.1f}"
    return f"{value:.3g}"


def benchmark_table(name: str) -> str:
    """The Markdown table of one benchmark JSON file."""
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        raise PluginError(f"docs refer to benchmark results {path.relative_to(ROOT)}, which do not exist")
    doc = json.loads(path.read_text())
    values: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    impls: list[str] = []
    for row in doc["rows"]:
        values[(str(row["case"]), str(row["metric"]))][str(row["impl"])].append(float(row["value"]))
        if row["impl"] not in impls:
            impls.append(str(row["impl"]))
    lines = ["| case | metric | " + " | ".join(impls) + " |", "| --- | --- |" + " --- |" * len(impls)]
    for (case, metric), by_impl in values.items():
        cells = []
        for impl in impls:
            raw = by_impl.get(impl)
            if not raw:
                cells.append("")
            elif len(raw) == 1:
                cells.append(_number(raw[0]))
            else:
                cells.append(f"{_number(statistics.mean(raw))} (n={len(raw)})")
        lines.append(f"| {case} | {metric} | " + " | ".join(cells) + " |")
    env = doc.get("environment", {})
    facts = ", ".join(f"{k} {env[k]}" for k in ("torch", "python", "cpu_count", "torch_threads", "cuda") if k in env)
    source = f"`benchmarks/results/{name}.json`, benchmark `{doc.get('benchmark', name)}`"
    footer = f"*Source: {source}; commit `{str(doc.get('commit', 'unknown'))[:12]}`; {facts}. Means of the raw rows.*"
    return "\n".join(lines) + "\n\n" + footer + "\n"


def cli_reference() -> str:
    """``ssl --help`` and the help of each built-in command, from the argparse definitions."""
    sys.path.insert(0, str(ROOT / "core" / "src"))
    try:
        from ssl_core._cli import _parser
    finally:
        sys.path.pop(0)
    parser, sub = _parser()
    parser.prog = "ssl"
    parts = ["## ssl", "", "```text", parser.format_help().rstrip(), "```", ""]
    for name, command in sub.choices.items():
        assert isinstance(command, argparse.ArgumentParser)
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            command.print_help()
        parts += [f"## ssl {name}", "", "```text", text.getvalue().rstrip(), "```", ""]
    return "\n".join(parts)


def _outside_link(match: re.Match[str], page: Any) -> str:
    text, target = match.group(1), match.group(2)
    source_dir = (ROOT / "docs" / page.file.src_uri).parent
    resolved = (source_dir / target).resolve()
    if not resolved.exists():
        raise PluginError(f"{page.file.src_uri}: link to {target}, which does not exist in the repository")
    relative = resolved.relative_to(ROOT)
    return text if text.strip("`") == str(relative) else f"{text} (`{relative}`)"


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Expand the markers and rewrite links that leave ``docs/``."""
    markdown = BENCHMARK.sub(lambda m: benchmark_table(m.group(1)), markdown)
    if CLI in markdown:
        markdown = markdown.replace(CLI, cli_reference())
    return OUTSIDE_LINK.sub(lambda m: _outside_link(m, page), markdown)
