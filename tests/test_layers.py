"""The package's import rule: imports point down the layers (or across one), never up, and no two
modules import each other, directly or through others. Imports inside functions count too; only
`if TYPE_CHECKING:` blocks are left out (they never run). The package itself (`import echorec`,
`__import__("echorec")`) is the top layer: a module below that imports it runs back up."""

import ast
import os

import echorec

ROOT = os.path.dirname(echorec.__file__)
# Lowest first. A module may import its own layer and the ones below.
LAYERS = [
    {"errors", "fields", "fsio", "sysinfo", "device", "version"},
    {"data", "nn", "registry"},
    {"models"},
    {"config", "runfolder"},
    {"training", "eval"},
    {"serve", "bench"},
    {"cli", "api", "__main__", "__init__"},
]


def layer_of(module: str) -> int:
    top = module.split(".")[1] if module.count(".") else "__init__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def modules() -> dict[str, str]:
    out = {}
    for folder, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, f), os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                out[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = os.path.join(folder, f)
    return out


def _is_type_checking(node) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(path: str, module: str, known: set[str]) -> set[str]:
    """The echorec modules that `module` imports (a package import counts as its __init__)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    found = set()
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            continue
        stack.extend(ast.iter_child_nodes(node))
        names = []
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("__import__", "importlib.import_module") \
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            names = [node.args[0].value]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative import
                pkg = module.split(".")[: -node.level] if not path.endswith("__init__.py") else module.split(".")
                base = ".".join(pkg + ([node.module] if node.module else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        found.update(n for n in names if n.split(".")[0] == "echorec")
    return {n if n in known else n.rsplit(".", 1)[0] for n in found} - {module}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports(p, m, set(mods)) for m, p in mods.items() if m != "echorec"}


def test_no_import_points_up_a_layer():
    up = [f"{m} (layer {layer_of(m)}) imports {d} (layer {layer_of(d)})"
          for m, deps in graph().items() for d in deps if layer_of(d) > layer_of(m)]
    assert not up, "\n".join(up)


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(m, path):
        state[m] = 1
        for d in sorted(g.get(m, ())):
            if state.get(d) == 1:
                cycles.append(" -> ".join(path[path.index(d):] + [d]))
            elif d in g and not state.get(d):
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(g):
        if not state.get(m):
            visit(m, [m])
    assert not cycles, "\n".join(cycles)


def test_the_checker_sees_function_level_and_package_imports():
    g = graph()
    assert layer_of("echorec") == len(LAYERS) - 1  # the package root is the top layer
    assert "echorec.models" in g["echorec.config"]  # imported inside a function
    assert "echorec.registry" in g["echorec.models.sasrec"]
