"""docs/plugins.md states what the code does: its capability and modality tables, the public names it mentions."""

from __future__ import annotations

import re
from pathlib import Path

import ssl_core
from ssl_core._capabilities import markdown_table, modality_table

PLUGINS_MD = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"


def _table_after(marker: str) -> str:
    text = PLUGINS_MD.read_text()
    start = text.index(f"<!-- {marker} -->") + len(f"<!-- {marker} -->")
    lines = []
    for line in text[start:].lstrip("\n").splitlines():
        if not line.startswith("|"):
            break
        lines.append(line)
    return "\n".join(lines)


def test_the_capability_table_is_the_constant() -> None:
    assert _table_after("capabilities-table") == markdown_table(), (
        "docs/plugins.md is out of date; paste ssl_core._capabilities.markdown_table()"
    )


def test_the_modality_table_is_the_constant() -> None:
    assert _table_after("modalities-table") == modality_table()


def test_every_modality_in_use_is_documented() -> None:
    from ssl_core import default_registry

    registry, used = default_registry(), set()
    for kind in ("encoder", "views"):
        for name in registry.names(kind):
            for flag in ("modality", "output_modality"):
                value = getattr(registry.get(kind, name), flag, None)
                if isinstance(value, str):
                    used.add(value)
    assert used <= set(ssl_core.MODALITIES), used - set(ssl_core.MODALITIES)


def test_public_names_the_guide_mentions_exist() -> None:
    text = PLUGINS_MD.read_text()
    from ssl_core._discovery import COMPONENT_GROUPS

    groups = {"plugins", "hooks"} | {group.split(".", 1)[1] for group in COMPONENT_GROUPS.values()}
    mentioned = {m for m in re.findall(r"ssl_core\.([A-Za-z_][A-Za-z_0-9]*)", text) if m not in groups}
    section = text[text.index("## The public API plugins use") : text.index("## Checklist")]
    mentioned |= set(re.findall(r"`([A-Za-z_][A-Za-z_0-9]*)`", section))
    import ssl_core.testing

    exported = set(ssl_core.__all__) | set(ssl_core.testing.__all__) | {"testing", "ssl_core", "_"}
    missing = sorted(mentioned - exported)
    assert not missing, f"docs/plugins.md mentions names ssl_core does not export: {missing}"
    assert "check_compatible" in ssl_core.__all__
