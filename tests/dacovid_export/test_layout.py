"""The house rules, checked: imports run one way through the stages, and no module imports in a circle.

Stages from the bottom up (README "Layout"); a module may import its own stage and
the stages below it, at the top of the file or inside a function alike.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# folder on disk -> the package it installs as: a module's import path is its file path
FOLDERS = {"dacovid_export": "dacovid_export"}
STAGES = ["core", "data", "model", "artifacts", "trt", "export", "calibration", "engine", "train", "backends",
          "parity", "bench", "serve", "pipeline", "cli", "__main__"]
# The one deliberate exception to "imports run one way": modules any stage may import because they import
# nothing of the project (so no circle can form through them). trt/targets.py holds the TensorRT facts
# (runtimes, TensorRT-RTX targets, the hardware-compatibility floor) that artifacts/ validates sidecars
# against; trt/ itself needs artifacts/ (ONNX graph anatomy), so it cannot move below it.
LEAVES = {"dacovid_export.trt.targets"}
# TensorRT knowledge has one home, trt/: these names are defined nowhere else
TRT_FACTS = {"RUNTIMES", "RTX_TARGETS", "RTX_DEFAULT_TARGETS", "HARDWARE_COMPATIBLE_MIN_CC"}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


MODULES = _modules()


def _type_only_nodes(tree: ast.AST) -> set[ast.AST]:
    """Import statements under ``if TYPE_CHECKING:``: read by type checkers only, never run."""
    out: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            out.update(n for stmt in node.body for n in ast.walk(stmt))
    return out


def _imports(name: str, path: Path, *, type_only: bool = True) -> set[str]:
    """Every project module ``name`` imports, wherever the import statement sits (``type_only``: with those under
    ``if TYPE_CHECKING:``)."""
    found = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped = set() if type_only else _type_only_nodes(tree)
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("dacovid_export"):
            module = node.module
            # "from dacovid_export.bench import report" names a module too
            found.update(f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("dacovid_export"))
    return {m for m in found if m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}
# what runs: a circle through type-only imports never executes (a precision module types its options with
# PrecisionConfig, which validates through the registry)
RUN_GRAPH = {name: _imports(name, path, type_only=False) for name, path in MODULES.items()}


def _stage(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return -1  # the root package: __version__ and the error types
    return STAGES.index(parts[1])


def test_every_module_belongs_to_a_stage() -> None:
    unknown = sorted(m for m in MODULES if len(m.split(".")) > 1 and m.split(".")[1] not in STAGES)
    assert unknown == []


def test_imports_never_run_up_the_stages() -> None:
    upward = sorted(
        f"{m} -> {t}"
        for m, targets in GRAPH.items()
        for t in targets
        if m != "dacovid_export" and _stage(t) > _stage(m) and t not in LEAVES
    )
    assert upward == []


@pytest.mark.parametrize("leaf", sorted(LEAVES))
def test_leaves_import_nothing_of_the_project(leaf: str) -> None:
    assert GRAPH[leaf] == set()


def _module_level_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    names |= {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    return names


def test_tensorrt_facts_live_in_trt_only() -> None:
    outside = sorted(
        f"{m}: {name}"
        for m, path in MODULES.items()
        if not m.startswith("dacovid_export.trt.")
        for name in _module_level_names(path) & TRT_FACTS
    )
    assert outside == []


def test_no_module_imports_in_a_circle() -> None:
    cycles = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(RUN_GRAPH.get(node, ())):
            if target not in RUN_GRAPH:
                continue  # a package path that is not a module of its own
            if state.get(target) == 1:
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = 2

    for module in sorted(RUN_GRAPH):
        if module not in state:
            visit(module, [module])
    assert cycles == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.endswith("__main__")))
def test_every_module_says_what_it_holds(module: str) -> None:
    tree = ast.parse(MODULES[module].read_text())
    assert ast.get_docstring(tree), f"{module} has no docstring"
    if MODULES[module].name != "__init__.py":
        names = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
        names |= {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
        assert "__all__" in names, f"{module} has no __all__"


def _library_modules() -> list[str]:
    return sorted(m for m in MODULES if m.split(".")[1:2] != ["cli"] and not m.endswith("__main__"))


def test_library_code_never_prints() -> None:
    """The library says things through ``core/log.get_logger("<stage>")``; only the CLI prints."""
    printing = sorted(
        m
        for m in _library_modules()
        for node in ast.walk(ast.parse(MODULES[m].read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
    )
    assert printing == []


def test_progress_bars_come_from_one_helper() -> None:
    """tqdm is imported by core/progress.py alone (``progress_bar``)."""
    importing = sorted(
        m
        for m in _library_modules()
        if m != "dacovid_export.core.progress"
        for node in ast.walk(ast.parse(MODULES[m].read_text()))
        if (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "tqdm")
        or (isinstance(node, ast.Import) and any(a.name.split(".")[0] == "tqdm" for a in node.names))
    )
    assert importing == []


# Each package's __init__ has one face: a docstring, eager re-exports of its own modules' public names, __all__.
# cli/ names nothing (its modules are entry points, imported by nothing).
FACE_EXEMPT = {"dacovid_export.cli"}


@pytest.mark.parametrize(
    "package", sorted(m for m, p in MODULES.items() if p.name == "__init__.py" and m != "dacovid_export" and m not in FACE_EXEMPT)
)
def test_every_package_face_has_one_style(package: str) -> None:
    tree = ast.parse(MODULES[package].read_text())
    names = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    assert "__all__" in names, f"{package}/__init__ has no __all__"
    assert not any(isinstance(n, ast.FunctionDef) for n in tree.body), f"{package}/__init__ defines functions (lazy __getattr__?)"
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert imports, f"{package}/__init__ re-exports nothing"
    assert all(isinstance(n, ast.ImportFrom) and (n.module or "").startswith(package + ".") for n in imports), package


@pytest.mark.parametrize("leaf", sorted(LEAVES))
def test_a_leaf_package_face_imports_only_the_leaf(leaf: str) -> None:
    """Importing a leaf runs its package's __init__ first: that may import the leaf and nothing else."""
    package = leaf.rsplit(".", 1)[0]
    assert GRAPH[package] <= {leaf}


def test_one_module_level_definition_per_public_name() -> None:
    """A public name is defined once across the package (functions, classes, constants), so an import finds the one home.

    ``main`` is the exception: each console script (pyproject [project.scripts]) has its own.
    """
    homes: dict[str, list[str]] = {}
    for module, path in MODULES.items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names = [node.target.id]
            else:
                continue
            for name in names:
                if not name.startswith("_") and name != "main":
                    homes.setdefault(name, []).append(module)
    assert {name: where for name, where in homes.items() if len(where) > 1} == {}


# One runner core per runtime (core/onnxruntime_session.py, core/openvino_model.py): the backends wrap it and the
# precision step's guards run it, so session options, the explicit OpenVINO precision and the error mapping live once.
RUNNER_CORES = {
    "InferenceSession(": "dacovid_export.core.onnxruntime_session",
    "compile_model(": "dacovid_export.core.openvino_model",
    "create_infer_request(": "dacovid_export.core.openvino_model",
}


@pytest.mark.parametrize("call", sorted(RUNNER_CORES))
def test_one_runner_core_per_runtime(call: str) -> None:
    making = sorted(m for m, path in MODULES.items() if call in path.read_text())
    assert making == [RUNNER_CORES[call]]


# bench and the pipeline ask the backend classes (registry roles, class attributes), never a backend by name
ASKS_THE_BACKEND = ["dacovid_export.bench.plan", "dacovid_export.bench.run", "dacovid_export.bench.config",
                    "dacovid_export.bench.report", "dacovid_export.pipeline.latency"]


@pytest.mark.parametrize("module", ASKS_THE_BACKEND)
def test_bench_and_pipeline_name_no_backend(module: str) -> None:
    from dacovid_export.backends.registry import BACKEND_NAMES

    named = sorted(
        f"line {n.lineno}: {n.value!r}"
        for n in ast.walk(ast.parse(MODULES[module].read_text()))
        if isinstance(n, ast.Constant) and n.value in BACKEND_NAMES
    )
    assert named == []
