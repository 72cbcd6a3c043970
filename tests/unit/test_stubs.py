"""Every compiled module ships a ``.pyi`` stub next to its ``.pyx`` (httptools style: the
stub is where type checkers and editors read its API and docstrings), and the stub names
exactly the compiled module's public names: no more, no fewer, class members included.

A public name of a compiled module is one without a leading underscore that is not a
module and not a class or function imported from elsewhere (``conduit.errors``, ``aio``):
what it defines, plus what it re-exports from its pure twin (``Handle``, the constants).
The stub's names are read with ``ast``: definitions, annotated names, and ``from x import
y as y`` (an explicit re-export, PEP 484).
"""

import ast
import doctest
import pathlib
import types

import pytest

import conduit
from conduit import _ext

ROOT = pathlib.Path(conduit.__file__).resolve().parent
PYX = sorted(ROOT.rglob("*.pyx"))


def module_name(path: pathlib.Path) -> str:
    return ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)


def twins_of(path: pathlib.Path) -> dict:
    """``_ext.twins`` for the compiled module at ``path`` (``_<name>_c.pyx``)."""
    package, _, leaf = module_name(path).rpartition(".")
    assert leaf.startswith("_") and leaf.endswith("_c"), path
    return _ext.twins(package, leaf[1:-2])


def compiled(path: pathlib.Path) -> types.ModuleType:
    if _ext.MODE == "0":
        pytest.skip("extensions switched off for this run (CONDUIT_EXTENSIONS=0)")
    found = twins_of(path)  # with CONDUIT_EXTENSIONS=1 a missing build raises here
    if "compiled" not in found:
        pytest.skip(f"{module_name(path)} is not built here")
    return found["compiled"]


def own(value, module: types.ModuleType) -> bool:
    """Whether ``value`` belongs to the module's API (its own, or its pure twin's)."""
    if isinstance(value, types.ModuleType):
        return False
    if isinstance(value, type) or callable(value):
        twin = module.__name__[:-2] + "_py"
        return getattr(value, "__module__", None) in (module.__name__, twin)
    return True  # a constant or an object such as the module's logger


def module_names(module: types.ModuleType) -> set:
    return {name for name in dir(module)
            if not name.startswith("_") and own(getattr(module, name), module)}


def stub_tree(path: pathlib.Path) -> ast.Module:
    stub = path.with_suffix(".pyi")
    if not stub.is_file():
        pytest.fail(f"{module_name(path)} has no stub: write {stub.relative_to(ROOT.parent)}")
    return ast.parse(stub.read_text())


def defined_names(body: list) -> dict:
    """Public names a stub body defines: {name: the ast node, or None if re-exported}."""
    names: dict = {}
    for node in body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
        elif isinstance(node, ast.Assign):
            names.update((t.id, node) for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom):
            names.update((a.name, None) for a in node.names if a.asname == a.name)
    return {name: node for name, node in names.items() if not name.startswith("_")}


def stub_all(tree: ast.Module):
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return ast.literal_eval(node.value)
    return None


@pytest.fixture(params=PYX, ids=module_name)
def pyx(request):
    return request.param


def test_there_are_compiled_modules():
    assert len(PYX) >= 5, PYX


def test_every_compiled_module_has_a_stub(pyx):
    tree = stub_tree(pyx)
    assert ast.get_docstring(tree), f"{pyx.stem}.pyi has no module docstring"
    for name, node in defined_names(tree.body).items():
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            assert ast.get_docstring(node), f"{pyx.stem}.pyi: {name} has no docstring"


def test_stub_names_match_the_compiled_module(pyx):
    module = compiled(pyx)
    tree = stub_tree(pyx)
    in_stub = set(defined_names(tree.body))
    in_module = module_names(module)
    assert not in_stub - in_module, f"{pyx.stem}.pyi names what the module lacks: " \
        f"{sorted(in_stub - in_module)}"
    assert not in_module - in_stub, f"{pyx.stem}.pyi lacks public names of the module: " \
        f"{sorted(in_module - in_stub)}"
    assert stub_all(tree) == getattr(module, "__all__", None), "__all__ differs"


def test_stub_classes_match_the_compiled_classes(pyx):
    module = compiled(pyx)
    for name, node in defined_names(stub_tree(pyx).body).items():
        if not isinstance(node, ast.ClassDef):
            continue
        cls = getattr(module, name)
        in_stub = set(defined_names(node.body))
        in_class = {member for member in vars(cls) if not member.startswith("_")}
        assert not in_stub - in_class, f"{pyx.stem}.pyi: {name} names what the class " \
            f"lacks: {sorted(in_stub - in_class)}"
        assert not in_class - in_stub, f"{pyx.stem}.pyi: {name} lacks public members: " \
            f"{sorted(in_class - in_stub)}"


@pytest.mark.parametrize("twin", ["compiled", "pure"])
def test_stub_examples_run_on_both_twins(pyx, twin):
    found = twins_of(pyx)
    if twin not in found:
        pytest.skip(f"no {twin} twin of {module_name(pyx)} here")
    module = found[twin]
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for node in ast.walk(stub_tree(pyx)):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            text = ast.get_docstring(node) or ""
            if ">>>" in text:
                runner.run(parser.get_doctest(text, dict(vars(module)), node.name,
                                              str(pyx.with_suffix(".pyi")), node.lineno))
    assert not runner.failures, f"{runner.failures} example(s) in {pyx.stem}.pyi failed"


def test_stubs_are_package_data():
    """The stubs ship in the wheel: pyproject's package-data for conduit matches each one."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = ROOT.parent / "pyproject.toml"
    if not pyproject.is_file():
        pytest.skip("not a source checkout")
    patterns = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"][
        "conduit"]
    shipped = {path for pattern in patterns for path in ROOT.glob(pattern)}
    assert (ROOT / "py.typed") in shipped
    for path in PYX:
        assert path.with_suffix(".pyi") in shipped, path
