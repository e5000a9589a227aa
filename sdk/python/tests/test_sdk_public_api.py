"""The public surface is exactly ``untrace.__all__``; keep this list in step on purpose."""

from __future__ import annotations

import importlib.resources
import inspect

import untrace

PUBLIC = [
    "Config",
    "Span",
    "Untrace",
    "__version__",
    "current_span",
    "flush",
    "get_client",
    "init",
    "instrument",
    "observe",
    "shutdown",
    "span",
    "trace",
    "uninstrument",
]


def test_all_is_the_documented_list() -> None:
    assert sorted(untrace.__all__) == PUBLIC


def test_every_public_name_exists_and_private_modules_stay_private() -> None:
    for name in untrace.__all__:
        assert hasattr(untrace, name), name
    public_members = {
        name
        for name, value in vars(untrace).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public_members == set(PUBLIC) - {"__version__"}


def test_public_classes_present_as_untrace_members() -> None:
    for cls in (untrace.Untrace, untrace.Config, untrace.Span):
        assert cls.__module__ == "untrace"


def test_package_is_typed() -> None:
    assert importlib.resources.files("untrace").joinpath("py.typed").is_file()


def test_sdk_does_not_import_the_server() -> None:
    import subprocess
    import sys

    code = (
        "import sys, untrace; untrace.instrument();"
        "bad = [m for m in sys.modules"
        " if m.startswith(('untrace_server', 'msgspec', 'pydantic_settings'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
