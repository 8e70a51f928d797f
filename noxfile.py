"""Nox sessions for the ssl monorepo: isolated and combined tests, lint, typecheck, docs, demo and bench.

``nox -t ci`` (or plain ``nox``) runs what CI runs. The heavy third-party dependencies (torch and
friends, ~5.5 GB) are installed once into a shared base virtualenv ``.nox/_deps``, pinned by
``constraints.txt``. Each session venv (created without pip) gets a ``_ssl_deps.pth`` file that adds
the base's site-packages to ``sys.path``: torch is importable there, pip (the base's) sees it as
installed, so nothing heavy is reinstalled, and the base's console scripts get thin wrappers in the
session's bin. Our own distributions (ssl-core, the plugins) are installed only into the session
venvs, which keeps "core + one plugin" isolation real. See docs/decisions.md.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nox

if sys.version_info >= (3, 11):
    import tomllib
else:  # nox itself depends on tomli before 3.11
    import tomli as tomllib

nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True
nox.options.error_on_external_run = True
nox.options.tags = ["ci"]

ROOT = Path(__file__).resolve().parent
CONSTRAINTS = ROOT / "constraints.txt"
DEPS_VENV = ROOT / ".nox" / "_deps"
DEPS_MARKER = DEPS_VENV / "ssl-deps.sha256"
DEPS_LOCK = ROOT / ".nox" / "_deps.lock"
DEPS_PTH_NAME = "_ssl_deps.pth"

# Third-party packages that live in the shared layer (versions come from constraints.txt).
HEAVY_DEPENDENCIES: tuple[str, ...] = (
    "torch",
    "torchvision",
    "torchaudio",
    "torch-geometric",
    "tsai",
    "aeon",
    "scikit-learn",
    "numpy",
    "pluggy",
    "importlib-metadata",
    "packaging",
    "matplotlib",
    "tqdm",
    "soundfile",
    "timm",
    "tensorboard",  # ssl-core's logger extras, so the logger tests run in every session
    "mlflow-skinny",
    "wandb",
    "torchdata",  # ssl-core[stream]: StatefulDataLoader for iterable sources
    "webdataset",  # ssl-vision[shards]: writing tar shards
    "onnx",  # ssl export --to onnx (ssl-core[onnx])
    "onnxruntime",
    "onnxscript",
    "transformers",  # ssl export --to hf (ssl-speech[hf])
    "pytest",
    "setuptools>=69",
)
# Distributions a session must resolve from the shared layer, never from its own venv.
LAYER_GUARDED_DISTRIBUTIONS: tuple[str, ...] = ("torch", "torchvision", "torchaudio")

CORE_DIR = "./core"
PLUGINS: dict[str, str] = {
    "speech": "ssl_speech",
    "vision": "ssl_vision",
    "graph": "ssl_graph",
    "timeseries": "ssl_timeseries",
}
THIRDPARTY_EXAMPLE_DIR = "./examples/thirdparty-plugin"
THIRDPARTY_EXAMPLE_MODULE = "ssl_example_vicreg"
LINT_TARGETS: tuple[str, ...] = ("core", "packages", "tests", "benchmarks", "examples", "docs", "noxfile.py")
RUFF_REQUIREMENT = "ruff>=0.17,<0.18"
DOCS_REQUIREMENTS: tuple[str, ...] = (
    "mkdocs>=1.6,<2",
    "mkdocs-material>=9.5,<10",
    "mkdocstrings[python]>=0.27,<2",
    "packaging>=23",  # docs/hooks.py reads ssl's argparse definitions from core/src (no torch needed)
    "importlib-metadata>=6.0",
)
MYPY_REQUIREMENT = "mypy>=2.0,<3"

# Sessions on the layer are created without pip: the base's pip, visible through the .pth, installs into them.
LAYER_VENV_PARAMS: list[str] = ["--without-pip"]

PURELIB_PROBE = "import sysconfig; print(sysconfig.get_path('purelib'))"
ISOLATION_PROBE = """
import importlib.util, sys
expected, others = sys.argv[1], sys.argv[2:]
if importlib.util.find_spec(expected) is None:
    sys.exit(f"{expected} is not importable in its own plugin session")
leaked = [name for name in others if importlib.util.find_spec(name) is not None]
if leaked:
    sys.exit(f"plugin isolation broken: {leaked} importable next to {expected}")
print(f"isolation ok: only {expected} of {[expected, *others]} is importable")
"""
LAYER_PROBE = """
import sys
from importlib import metadata
from pathlib import Path
layer = Path(sys.argv[1]).resolve()
for name in sys.argv[2:]:
    where = Path(metadata.distribution(name).locate_file("")).resolve()
    if where != layer:
        sys.exit(f"{name} resolves to {where}, not to the shared layer {layer}: pip reinstalled it")
print("shared layer ok:", ", ".join(sys.argv[2:]))
"""
SCRIPT_WRAPPERS_PROBE = """
import sys, sysconfig
from importlib import metadata
from pathlib import Path
layer, bindir = sys.argv[1], Path(sysconfig.get_path("scripts"))
made = []
for dist in metadata.distributions(path=[layer]):
    for ep in dist.entry_points.select(group="console_scripts"):
        target = bindir / ep.name
        if target.exists() or "/" in ep.name:
            continue
        head = ep.attr.partition(".")[0]
        target.write_text(
            f"#!{sys.executable}\\nimport sys\\nfrom {ep.module} import {head}\\n\\n"
            f"if __name__ == '__main__':\\n    sys.exit({ep.attr}())\\n"
        )
        target.chmod(0o755)
        made.append(ep.name)
print(f"wrapped {len(made)} console scripts of the shared layer in {bindir}")
"""


def plugin_dir(plugin: str) -> str:
    """Relative path (pip-installable) of a plugin distribution."""
    return f"./packages/ssl-{plugin}"


def all_own_packages() -> list[str]:
    """Core, every plugin and, when present, the example third-party plugin."""
    paths = [CORE_DIR, *(plugin_dir(name) for name in PLUGINS)]
    if (ROOT / THIRDPARTY_EXAMPLE_DIR / "pyproject.toml").is_file():
        paths.append(THIRDPARTY_EXAMPLE_DIR)
    return paths


def python_output(session: nox.Session, python: str, code: str) -> str:
    """Last line printed by ``python -c code``."""
    output = session.run(python, "-c", code, silent=True, external=python != "python")
    if not isinstance(output, str) or not output.strip():
        session.error(f"no output from {python} -c {code!r}")
    return output.strip().splitlines()[-1]


@contextmanager
def deps_lock() -> Iterator[None]:
    """Serialize work on the shared layer between concurrent nox runs in this tree."""
    DEPS_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with DEPS_LOCK.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def deps_fingerprint(base_interpreter: str) -> str:
    """Hash of everything that defines the shared layer: constraints, package list, interpreter."""
    version = subprocess.run(
        [base_interpreter, "-c", "import sys; print(sys.version)"], capture_output=True, text=True, check=True
    ).stdout
    digest = hashlib.sha256()
    digest.update(CONSTRAINTS.read_bytes())
    digest.update("\n".join(HEAVY_DEPENDENCIES).encode())
    digest.update(f"{base_interpreter}\n{version}".encode())
    return digest.hexdigest()


def ensure_deps_layer(session: nox.Session) -> str:
    """Create or reuse ``.nox/_deps`` and return its site-packages directory."""
    base_interpreter = python_output(session, "python", "import sys; print(sys._base_executable)")
    fingerprint = deps_fingerprint(base_interpreter)
    deps_python = str(DEPS_VENV / "bin" / "python")
    with deps_lock():
        if DEPS_MARKER.is_file() and DEPS_MARKER.read_text().strip() == fingerprint:
            session.log(f"Reusing the shared dependency layer {DEPS_VENV} (constraints unchanged)")
        else:
            if DEPS_VENV.exists():
                session.log(f"Constraints or interpreter changed: rebuilding {DEPS_VENV}")
                shutil.rmtree(DEPS_VENV)
            session.log(f"Building the shared dependency layer {DEPS_VENV}")
            session.run(base_interpreter, "-m", "venv", str(DEPS_VENV), external=True)
            session.run(
                deps_python,
                "-m",
                "pip",
                "install",
                "--progress-bar",
                "off",
                "-c",
                str(CONSTRAINTS),
                *HEAVY_DEPENDENCIES,
                external=True,
            )
            DEPS_MARKER.write_text(fingerprint + "\n")
    return python_output(session, deps_python, PURELIB_PROBE)


def use_deps_layer(session: nox.Session) -> str:
    """Link the session venv to the shared layer through a ``.pth`` file; return the layer's site-packages."""
    layer_site = ensure_deps_layer(session)
    session_site = Path(python_output(session, "python", PURELIB_PROBE))
    # addsitedir (not a bare path) so that .pth files inside the layer are processed too.
    (session_site / DEPS_PTH_NAME).write_text(f"import site; site.addsitedir({layer_site!r})\n")
    session.run("python", "-c", SCRIPT_WRAPPERS_PROBE, layer_site, silent=True)
    return layer_site


def build_requirements(*paths: str) -> list[str]:
    """The ``[build-system] requires`` of the given source trees."""
    requirements: list[str] = []
    for path in paths:
        pyproject = tomllib.loads((ROOT / path / "pyproject.toml").read_text())
        requirements += pyproject.get("build-system", {}).get("requires", ["setuptools"])
    return sorted(set(requirements))


def install_own(session: nox.Session, layer_site: str, *paths: str) -> None:
    """Install our distributions (non-editable, constrained) and check torch still comes from the layer.

    Builds run without isolation (their build requirements are installed first, usually already
    satisfied by the layer's setuptools), which saves a throwaway build env per package. Stale
    ``build/`` folders are removed first so a deleted module cannot linger in the wheel.
    """
    for path in paths:
        shutil.rmtree(ROOT / path / "build", ignore_errors=True)
    pip_options = ["--progress-bar", "off", "-c", str(CONSTRAINTS)]
    session.install(*pip_options, *build_requirements(*paths))
    session.install(*pip_options, "--no-build-isolation", *paths)
    session.run("python", "-c", LAYER_PROBE, layer_site, *LAYER_GUARDED_DISTRIBUTIONS)


def run_doctests(session: nox.Session, *modules: str) -> None:
    """The docstring examples of installed packages (``--pyargs``: the installed copy, not the source tree).

    ``-c``/``--rootdir`` keep the root pyproject's pytest settings, which a run rooted in
    site-packages would not find.
    """
    session.run(
        "python", "-m", "pytest", "-q", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT),
        "--doctest-modules", "--pyargs", *modules,
    )  # fmt: skip


def existing(*paths: str) -> list[str]:
    """The given paths that exist (a clean clone has no empty test folders)."""
    return [path for path in paths if (ROOT / path).exists()]


@nox.session(tags=["ci"])
def lint(session: nox.Session) -> None:
    """Ruff lint and format check over all Python sources."""
    session.install(RUFF_REQUIREMENT)
    targets = existing(*LINT_TARGETS)
    session.run("ruff", "check", *targets)
    session.run("ruff", "format", "--check", *targets)


@nox.session(tags=["ci"])
def docs(session: nox.Session) -> None:
    """The documentation site (mkdocs-material + mkdocstrings), built with --strict: broken links fail."""
    session.install("--progress-bar", "off", *DOCS_REQUIREMENTS)
    site = Path(session.create_tmp()) / "site"
    session.run("mkdocs", "build", "--strict", "--site-dir", str(site), env={"NO_MKDOCS_2_WARNING": "1"})
    session.log(f"site built in {site}")


@nox.session(tags=["ci"], venv_params=LAYER_VENV_PARAMS)
def typecheck(session: nox.Session) -> None:
    """Mypy over ssl_core (strict), every plugin and the example plugin (settings in the root pyproject.toml).

    The packages are read from their source trees (``mypy_path`` and ``files`` in the root
    pyproject.toml); their third-party dependencies come from the shared layer, core's light
    ones from installing core.
    """
    layer_site = use_deps_layer(session)
    install_own(session, layer_site, CORE_DIR)  # brings core's light dependencies (and their type hints)
    session.install(MYPY_REQUIREMENT)
    cache_dir = Path(session.virtualenv.location) / "mypy_cache"  # private to this venv's mypy version
    session.run("mypy", "--cache-dir", str(cache_dir), *session.posargs)


@nox.session(tags=["ci"], venv_params=LAYER_VENV_PARAMS)
def core(session: nox.Session) -> None:
    """ssl-core alone: its own test suite and docstring examples, no plugin installed."""
    layer_site = use_deps_layer(session)
    install_own(session, layer_site, CORE_DIR)
    # slow tests (torch.compile, FSDP2) run once, in the `tests` session
    session.run("python", "-m", "pytest", *(session.posargs or ["core/tests", "-m", "not slow"]))
    if not session.posargs:
        run_doctests(session, "ssl_core")


@nox.session(tags=["ci"], venv_params=LAYER_VENV_PARAMS)
@nox.parametrize("plugin", list(PLUGINS), ids=list(PLUGINS))
def plugin(session: nox.Session, plugin: str) -> None:
    """ssl-core plus one plugin: its tests and docstring examples, and proof that no other plugin is importable."""
    layer_site = use_deps_layer(session)
    install_own(session, layer_site, CORE_DIR, plugin_dir(plugin))
    others = [module for name, module in PLUGINS.items() if name != plugin]
    session.run("python", "-c", ISOLATION_PROBE, PLUGINS[plugin], *others)
    session.run("python", "-m", "pytest", *(session.posargs or [f"{plugin_dir(plugin)}/tests"]))
    if not session.posargs:
        run_doctests(session, PLUGINS[plugin])


@nox.session(tags=["ci"], venv_params=LAYER_VENV_PARAMS)
def tests(session: nox.Session) -> None:
    """Everything installed together: cross-package tests, the third-party example, core's slow tests.

    Core's other tests and each plugin's tests already ran, against the same dependency layer,
    in the ``core`` and ``plugin`` sessions; ``nox -s tests -- core/tests packages`` runs them
    here too.
    """
    layer_site = use_deps_layer(session)
    install_own(session, layer_site, *all_own_packages())
    if session.posargs:
        session.run("python", "-m", "pytest", "-q", *session.posargs)
        return
    session.run("python", "-m", "pytest", "-q", *existing(f"{THIRDPARTY_EXAMPLE_DIR}/tests", "tests"))
    session.run("python", "-m", "pytest", "-q", "core/tests", "-m", "slow")
    if (ROOT / THIRDPARTY_EXAMPLE_DIR / "pyproject.toml").is_file():
        run_doctests(session, THIRDPARTY_EXAMPLE_MODULE)  # core's and the plugins' run in their own sessions


SHARED_DATA = ROOT.parent / "shared" / "data"
# A tiny-data `ssl run` per plugin for the wheels session: (needs ../shared/data?, arguments after `ssl run`).
QUIET_RUN = ("--set", "train.progress=false", "--set", "train.steps=2", "--set", "compare_random_init=false")
TINY_RUNS: dict[str, tuple[bool, tuple[str, ...]]] = {
    "speech": (True, (
        "speech.wav2vec2", "--root", str(SHARED_DATA / "fsdd"), "--set", "data.limit=60",
        "--set", "data.progress=false", "--set", "train.batch_size=8", "--set", "encoder.preset=tiny", *QUIET_RUN,
    )),
    "vision": (True, (
        "vision.mae", "--root", str(SHARED_DATA / "cifar10"), "--set", "data.max_per_class=8",
        "--set", "train.batch_size=16", "--set", "encoder.depth=2", *QUIET_RUN,
    )),
    "graph": (True, ("graph.graphmae", "--root", str(SHARED_DATA / "planetoid"), *QUIET_RUN)),
    "timeseries": (False, ("timeseries.ts2vec", "--recipe", "dataset=ItalyPowerDemand", *QUIET_RUN)),
}  # fmt: skip
WHEEL_TOOLS: tuple[str, ...] = ("build>=1.2", "twine>=5")


@nox.session(tags=["ci"])
def wheels(session: nox.Session) -> None:
    """What users install: build and check every distribution, then ssl-core + one plugin from the wheels.

    Builds the wheel and sdist of all five distributions (``python -m build``), checks them
    with ``twine check``, and creates a clean virtualenv (no shared layer, no constraints
    file: the newest versions the declared ranges allow). For each plugin in turn it installs
    ssl-core and that plugin from the wheels, proves no other plugin is importable, runs the
    plugin's tests and a tiny-data ``ssl run``, and uninstalls the plugin before the next.
    """
    session.install(*WHEEL_TOOLS)
    dist = Path(session.create_tmp()) / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    for path in all_own_packages():
        session.run("python", "-m", "build", "--sdist", "--wheel", "--outdir", str(dist), path, silent=True)
    built = sorted(str(p) for p in dist.iterdir())
    session.log("built: " + ", ".join(Path(p).name for p in built))
    session.run("twine", "check", "--strict", *built)

    users = Path(session.create_tmp()) / "users-venv"
    shutil.rmtree(users, ignore_errors=True)
    session.run(sys.executable, "-m", "venv", str(users), external=True)
    python = str(users / "bin" / "python")

    def wheel(distribution: str) -> str:
        name = distribution.replace("-", "_")
        (found,) = [p for p in built if Path(p).name.startswith(f"{name}-") and p.endswith(".whl")]
        return found

    pip = [python, "-m", "pip", "install", "--progress-bar", "off"]
    for plugin, module in PLUGINS.items():
        session.log(f"ssl-core + ssl-{plugin} from wheels, newest dependencies")
        session.run(*pip, wheel("ssl-core"), f"{wheel(f'ssl-{plugin}')}[test]", external=True)
        others = [m for name, m in PLUGINS.items() if name != plugin]
        session.run(python, "-c", ISOLATION_PROBE, module, *others, external=True)
        session.run(python, "-m", "pip", "list", "--format=freeze", external=True, silent=False)
        session.run(
            python, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{plugin_dir(plugin)}/tests", external=True
        )
        needs_data, arguments = TINY_RUNS[plugin]
        if needs_data and not SHARED_DATA.is_dir():
            session.log(f"skipping the tiny ssl run of ssl-{plugin}: {SHARED_DATA} is absent")
        else:
            out = Path(session.create_tmp()) / f"tiny-{plugin}"
            shutil.rmtree(out, ignore_errors=True)
            session.run(str(users / "bin" / "ssl"), "run", *arguments, "--out", str(out), external=True)
            if not (out / "metrics.json").is_file():
                session.error(f"the tiny ssl run of ssl-{plugin} wrote no metrics.json")
        session.run(python, "-m", "pip", "uninstall", "--yes", f"ssl-{plugin}", external=True)


@nox.session(venv_params=LAYER_VENV_PARAMS)
def demo(session: nox.Session) -> None:
    """The README's main job: the quickstart pipeline end to end."""
    layer_site = use_deps_layer(session)
    install_own(session, layer_site, *all_own_packages())
    session.run("ssl", "run", "examples/quickstart.toml", "--out", "runs/quickstart", "--overwrite", *session.posargs)


@nox.session(venv_params=LAYER_VENV_PARAMS)
def bench(session: nox.Session) -> None:
    """Every benchmarks/*.py (not starting with ``_``) in quick mode, JSON into bench-results/."""
    scripts = sorted(path for path in (ROOT / "benchmarks").glob("*.py") if not path.name.startswith("_"))
    if not scripts:
        session.error("no benchmark scripts found in benchmarks/")
    layer_site = use_deps_layer(session)
    install_own(session, layer_site, *all_own_packages())
    results = ROOT / "bench-results"
    results.mkdir(exist_ok=True)
    for script in scripts:
        output = results / f"{script.stem}.json"
        session.run("python", str(script.relative_to(ROOT)), "--quick", "--json", str(output.relative_to(ROOT)))
