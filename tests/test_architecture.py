"""The package's shape: every module imports, no module imports one that imports it back, and the
registries (fastnn.layers.ACTIVATIONS/LAYERS, fastnn.losses.LOSSES, fastnn.optim.OPTIMIZERS) are the only
lists of activations, losses and optimizers: every consumer's list is derived from them.
"""

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastnn
import fastnn.io as fio
from fastnn import _cli_train, engine, layers, losses, onnx, optim
from fastnn._kernels import _activations, _plan
from fastnn.benchmarks import cli as bench_cli
from fastnn.benchmarks import optim as bench_optim

ROOT = Path(fastnn.__file__).parent

# Import edges that close a cycle and are known (each an import inside a function): none.
KNOWN_CYCLE_EDGES: set = set()


# ------------------------------------------------------------------------------------------------ import graph

def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict:
    """fastnn module name -> path of every Python source file of the package."""
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _known_modules() -> set:
    compiled = {_module_name(p.with_name(p.name.split(".")[0] + ".py")) for p in ROOT.rglob("*.so")}
    return set(_sources()) | compiled


def _imports(name: str, path: Path, known: set) -> dict:
    """{imported fastnn module: True if only imported inside functions} for one source file.

    ``from X import y`` counts as importing X.y when that is a module, else X. Importing a submodule
    also runs its parent packages' __init__; those implied imports are not edges.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict = {}

    def resolve(target: str) -> str:
        while target not in known:
            target = target.rpartition(".")[0]
        return target

    def add(target: str, in_function: bool) -> None:
        target = resolve(target)
        if target != name:
            found[target] = found.get(target, True) and in_function

    def visit(node, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] == "fastnn":
                        add(alias.name, in_function)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package
                    for _ in range(child.level - 1):
                        base = base.rpartition(".")[0]
                    base += f".{child.module}" if child.module else ""
                elif (child.module or "").split(".")[0] == "fastnn":
                    base = child.module
                else:
                    continue
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    add(sub if sub in known else base, in_function)
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def _graph() -> dict:
    known = _known_modules()
    return {name: _imports(name, path, known) for name, path in _sources().items()}


def _cycles(graph: dict) -> list:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(n for n in _sources() if n != "fastnn.__main__" and not n.endswith("_build_info"))
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            "print(len(sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=ROOT.parent)
    assert done.returncode == 0, done.stderr


def test_no_module_imports_a_module_that_imports_it_back():
    graph = _graph()
    for src, dst in KNOWN_CYCLE_EDGES:
        assert graph[src].get(dst) is True, f"{src} -> {dst} is listed as a known function-level import"
        del graph[src][dst]
    assert _cycles(graph) == []


def test_the_cycle_detector_sees_function_level_cycles():
    graph = _graph()
    graph["fastnn.layers"]["fastnn.model"] = True   # a function-level import closing a circle is found
    assert any({"fastnn.model", "fastnn.layers"} <= set(c) for c in _cycles(graph))
    assert _cycles({"a": {"b": False}, "b": {"c": True}, "c": {"a": False}, "d": {"a": False}}) == [["a", "b", "c"]]


def test_no_module_reads_the_version_from_the_package():
    graph = _graph()
    importers = sorted(m for m, targets in graph.items() if "fastnn" in targets)
    # only the entry points above the package (the command line and the benchmarks) import fastnn itself
    assert all(m == "fastnn.__main__" or m.startswith("fastnn.benchmarks.") for m in importers), importers


# ------------------------------------------------------------------------------------------------ registries

# fastnn.metrics is the metrics' registry: Keras names metrics and losses alike ("mae", "mean_squared_error")
REGISTRY_HOMES = {"fastnn.layers", "fastnn.losses", "fastnn.optim", "fastnn.metrics"}
# Known copies outside the files this restructuring owns; delete an entry when its copy goes.
KNOWN_COPIES: set = set()


def _registry_names() -> list[set]:
    """Per registry, the names a copied list would hold: its keys and its classes' names."""
    out = []
    for registry in (layers.ACTIVATIONS, losses.LOSSES, optim.OPTIMIZERS):
        out.append(set(registry) | {cls.__name__ for cls in registry.values()})
    return out


def _literal_words(node) -> list[str]:
    """Strings and identifiers (x, module.X) held by a literal tuple/list/set/dict (dict: its keys and values)."""
    elts = list(node.keys) + list(node.values) if isinstance(node, ast.Dict) else node.elts
    words = []
    for e in elts:
        if isinstance(e, ast.Constant) and isinstance(e.value, str):
            words.append(e.value)
        elif isinstance(e, ast.Name):
            words.append(e.id)
        elif isinstance(e, ast.Attribute):
            words.append(e.attr)
    return words


def _copied_lists(tree, registries) -> list:
    """Literal collections naming three or more members of one registry (``__all__`` exports aside)."""
    exports = {id(n.value) for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AugAssign))
               and any(isinstance(t, ast.Name) and t.id == "__all__"
                       for t in (n.targets if isinstance(n, ast.Assign) else [n.target]))}
    return [node for node in ast.walk(tree)
            if isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)) and id(node) not in exports
            and any(len(set(_literal_words(node)) & names) >= 3 for names in registries)]


def test_no_module_keeps_its_own_list_of_registered_names():
    """Outside the registries' homes, no literal collection names three or more members of one registry.

    fastnn._kernels and fastnn._reference hold the kernel kinds (their CODES tables), not these names.
    """
    registries = _registry_names()
    files = {name: path for name, path in _sources().items()
             if name not in REGISTRY_HOMES | KNOWN_COPIES and not name.startswith(("fastnn._kernels",
                                                                                  "fastnn._reference"))}
    bench = ROOT.parent / "bench"   # the repository's benchmark scripts (not in an installed package)
    files.update({f"bench/{p.name}": p for p in sorted(bench.glob("*.py"))} if bench.is_dir() else {})
    copies = [f"{name}:{node.lineno}: {sorted(_literal_words(node))}" for name, path in files.items()
              for node in _copied_lists(ast.parse(path.read_text(encoding="utf-8")), registries)]
    assert copies == []


def test_the_copy_detector_finds_a_copied_list():
    tree = ast.parse('OPTS = {"sgd": "SGD", "adam": "Adam", "rmsprop": "RMSprop"}\nACTS = (L.ReLU, L.Tanh, L.ELU)\n'
                     '__all__ = ["ReLU", "Tanh", "ELU"]\nOK = ("relu", "weight", "mse")')
    assert [n.lineno for n in _copied_lists(tree, _registry_names())] == [1, 2]
    assert all(_copied_lists(ast.parse(_sources()[m].read_text()), _registry_names()) for m in KNOWN_COPIES)


def _choices(parser, option):
    return next(a.choices for a in parser._actions if option in a.option_strings)


def test_command_line_choices_are_the_registries():
    import argparse

    parser = argparse.ArgumentParser()
    _cli_train.configure(parser)
    hidden = sorted(n for n, c in layers.ACTIVATIONS.items() if c.elementwise and c is not layers.Identity)
    assert _choices(parser, "--activation") == hidden
    assert _choices(parser, "--optimizer") == sorted(optim.OPTIMIZERS)
    assert {row[0] for row in bench_optim.OPTIMIZERS.values()} == {c.__name__ for c in optim.OPTIMIZERS.values()}
    assert all(bench_optim.fastnn_has(row) for row in bench_optim.OPTIMIZERS)
    parser = argparse.ArgumentParser()
    bench_cli.configure(parser)
    assert parser.parse_args([]).optimizers == list(bench_optim.OPTIMIZERS)


def test_file_allow_lists_are_the_registries():
    assert fio._LAYERS == layers.LAYERS
    assert set(fio._ACTIVATIONS.values()) == set(layers.ACTIVATIONS.values())
    assert set(fio._OPTIMIZERS.values()) == set(optim.OPTIMIZERS.values())
    assert set(fio._LOSSES.values()) == set(losses.LOSSES.values())
    assert set(layers.LAYERS) == {c.__name__ for c in layers.LAYERS.values()}
    assert set(onnx._ACTIVATIONS) == set(layers.ACTIVATIONS.values())


def _default(cls):
    return cls(3, 2) if cls is layers.Dense else cls()


@pytest.mark.parametrize("cls", list(layers.LAYERS.values()), ids=list(layers.LAYERS))
def test_layer_classes_carry_their_schema(cls):
    layer = _default(cls)
    assert list(layer._config()) == list(cls.config_types)
    assert set(cls.config_types.values()) <= {"int", "float", "bool", "str", "activation"}
    # every keyword, in order (config first, then the keywords that only give a width)
    assert list(cls.config_types) + list(cls.build_keywords) == [n for n in inspect.signature(cls).parameters]


@pytest.mark.parametrize("cls", list(dict.fromkeys(layers.ACTIVATIONS.values())))
def test_activation_classes_carry_kernel_torch_and_onnx(cls):
    act = cls()
    assert act.kind in _activations.CODES
    assert set(cls.torch_params) <= set(cls.config_types)
    assert set(cls.onnx_attrs.values()) <= set(cls.config_types)
    assert cls.onnx_op[:1].isupper()
    torch = pytest.importorskip("torch")
    module = getattr(torch.nn, cls.torch_module)(**{t: getattr(act, k) for k, t in cls.torch_params.items()})
    again = cls._from_torch(module)
    assert type(again) is cls and again._config() == act._config()


def test_every_kernel_activation_has_a_class():
    kinds = {cls().kind for cls in layers.ACTIVATIONS.values()} | {layers.GELU("tanh").kind}
    assert kinds == set(_activations.CODES)


@pytest.mark.parametrize("name", list(losses.LOSSES))
def test_loss_classes_carry_their_plan_kind(name):
    cls = losses.LOSSES[name]
    assert cls.plan_kind is None or isinstance(cls.plan_kind, _plan.LossKind)
    loss = cls()
    t = np.zeros(4, np.int64) if cls.row_wise else np.zeros((4, 3))
    assert engine._loss_kind(loss, t) == cls.plan_kind
    assert cls.row_wise == isinstance(loss, losses._ClassLoss)


def test_compile_and_plot_accept_every_registered_name():
    from fastnn.plot import _loss_fn

    model = fastnn.Sequential([fastnn.Dense(3, 2, activation="sigmoid")])
    for name, cls in optim.OPTIMIZERS.items():
        model.compile(optimizer=name.upper(), loss="mse")
        assert type(model.optimizer) is cls
    softmax = fastnn.Sequential([fastnn.Dense(3, 2, activation="softmax")])   # Keras's categorical losses need it
    for name, cls in losses.LOSSES.items():
        m = softmax if name.endswith("categorical_crossentropy") else model
        m.compile(loss=name)
        assert type(m.loss) is cls
        assert type(_loss_fn(m, None, name)) is cls
    for name, cls in layers.ACTIVATIONS.items():
        assert type(layers.get_activation(name)) is cls


# ------------------------------------------------------------------------------------------------ Cython kernels

def _kernel_graph() -> dict:
    """fastnn._kernels module -> the kernel modules it cimports or imports (from .pyx, .pxd and .tp sources)."""
    import re

    folder = ROOT / "_kernels"
    pattern = re.compile(r"^\s*(?:from\s+fastnn\._kernels\.?(\w*)\s+c?import\s+([\w, ()]+)"
                         r"|c?import\s+fastnn\._kernels\.(\w+))", re.M)
    kernels = {p.name.split(".")[0] for p in folder.iterdir() if p.name.endswith((".pyx", ".pxd", ".tp"))}
    graph: dict = {}
    for path in sorted(folder.iterdir()):
        if not path.name.endswith((".pyx", ".pxd", ".pyx.tp", ".pxd.tp")):
            continue
        name = path.name.split(".")[0]
        deps = graph.setdefault(name, {})
        for mod, names, plain in pattern.findall(path.read_text(encoding="utf-8")):
            targets = [plain] if plain else [mod] if mod else [n.strip() for n in names.strip("()").split(",")]
            for target in targets:
                if target in kernels and target != name:
                    deps[target] = False
    return graph


def test_no_kernel_module_imports_one_that_imports_it_back():
    """Cython cimports and run-time imports among the kernels form a tree (no hidden circle like the former
    _dense -> _plan run-time import while _plan cimported _dense)."""
    if not (ROOT / "_kernels" / "_plan.pyx").exists():
        pytest.skip("the kernels' Cython sources are not installed (a wheel): checked in the source tree")
    graph = _kernel_graph()
    assert graph["_plan"].keys() >= {"_blas", "_activations", "_dense", "_dropout", "_losses", "_optim"}
    assert "_plan" not in graph["_dense"]
    assert _cycles(graph) == []
