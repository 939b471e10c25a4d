"""Both codec backends implement exactly the interface declared in _codec.pyi."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import fastws

from .support.codecs import all_codecs

STUB = ast.parse((Path(fastws.__file__).parent / "_codec.pyi").read_text())
FUNCTIONS = {node.name: node for node in STUB.body if isinstance(node, ast.FunctionDef)}
CLASSES = {node.name: node for node in STUB.body if isinstance(node, ast.ClassDef)}


def stub_parameters(node: ast.FunctionDef) -> list[tuple[str, str]]:
    args = node.args
    params = [(a.arg, "positional") for a in args.posonlyargs + args.args]
    params += [(a.arg, "keyword") for a in args.kwonlyargs]
    return [p for p in params if p[0] != "self"]


def runtime_parameters(function) -> list[tuple[str, str]]:
    kinds = {
        inspect.Parameter.POSITIONAL_ONLY: "positional",
        inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
        inspect.Parameter.KEYWORD_ONLY: "keyword",
    }
    params = inspect.signature(function).parameters.values()
    return [(p.name, kinds[p.kind]) for p in params if p.name != "self"]


SAMPLE_ARGUMENTS = {"opcode": 2, "payload": b"x", "fin": False, "rsv1": True, "is_client": True, "assemble": False}


def check_constructor(cls, parameters):
    """Extension types hide their signature, so check the constructor by calling it:
    every stub parameter is accepted by name, and an unknown one is refused."""
    kwargs = {name: SAMPLE_ARGUMENTS.get(name, None) for name, _ in parameters}
    if "rsv1_allowed" in kwargs:
        kwargs["rsv1_allowed"] = True
    instance = cls(**kwargs)
    for name, value in kwargs.items():
        assert getattr(instance, name) == value, (cls, name)
    with pytest.raises(TypeError):
        cls(**kwargs, not_a_parameter=1)
    positional = [name for name, kind in parameters if kind == "positional"]
    if positional:
        cls(*[kwargs[name] for name in positional])
    else:
        with pytest.raises(TypeError):
            cls(True)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_functions_match_the_stub(name):
    for codec in all_codecs():
        assert runtime_parameters(getattr(codec, name)) == stub_parameters(FUNCTIONS[name]), codec.__name__


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_classes_match_the_stub(name):
    stub = CLASSES[name]
    members = [n for n in stub.body if isinstance(n, (ast.FunctionDef, ast.AnnAssign))]
    for codec in all_codecs():
        cls = getattr(codec, name)
        for member in members:
            if isinstance(member, ast.FunctionDef) and member.name == "__init__":
                check_constructor(cls, stub_parameters(member))
            elif isinstance(member, ast.FunctionDef):
                assert hasattr(cls, member.name), (codec.__name__, member.name)
        # Attributes declared on the stub exist on instances.
        instance = cls(1, b"") if name == "Frame" else cls()
        for member in members:
            if isinstance(member, ast.AnnAssign):
                assert hasattr(instance, member.target.id), (codec.__name__, member.target.id)  # type: ignore[union-attr]


def test_backends_define_nothing_public_beyond_the_stub():
    declared = set(FUNCTIONS) | set(CLASSES)
    for codec in all_codecs():
        public = {
            n
            for n, v in vars(codec).items()
            if not n.startswith("_") and (callable(v) and not isinstance(v, type(ast)))
        }
        public -= {"InvalidUTF8", "MessageTooBig", "ProtocolError"}
        public = {n for n in public if getattr(vars(codec)[n], "__module__", codec.__name__) == codec.__name__}
        assert public == declared, codec.__name__


def stub_all() -> list[str]:
    for node in STUB.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "__all__":
            return ast.literal_eval(node.value)
    raise AssertionError("the stub declares no __all__")


def test_backends_export_what_the_stub_exports():
    for codec in all_codecs():
        assert sorted(codec.__all__) == sorted(stub_all()), codec.__name__


def test_read_only_properties_are_read_only():
    """Properties without a setter in the stub refuse assignment on both backends;
    declared attributes accept it (and keep the constructor's rules)."""
    for name, stub in CLASSES.items():
        for codec in all_codecs():
            instance = getattr(codec, name)(1, b"") if name == "Frame" else getattr(codec, name)()
            for member in stub.body:
                if isinstance(member, ast.FunctionDef) and any(
                    getattr(d, "id", None) == "property" for d in member.decorator_list
                ):
                    with pytest.raises(AttributeError):
                        setattr(instance, member.name, getattr(instance, member.name))
                elif isinstance(member, ast.AnnAssign):
                    attribute = member.target.id  # type: ignore[union-attr]
                    setattr(instance, attribute, getattr(instance, attribute))
