"""The code's layout: no import cycle, `surrogates` independent of `diffcalo`, every module importable on
its own, no matplotlib backend chosen by library code, and a clean `ruff check`."""

import ast
import pathlib
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("diffcalo", "surrogates")


def _modules() -> dict[str, pathlib.Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def _imports(name: str, path: pathlib.Path, mods: dict) -> set[str]:
    """Modules of ours that ``name`` imports anywhere (module level or inside functions). ``from pkg
    import sub`` counts as importing the submodule; a module's own ancestor packages are not edges
    (Python imports them before the module itself)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in mods else node.module)
    out = set()
    for m in found:
        while m and m not in mods:
            m = m.rpartition(".")[0]
        if m and m != name and not name.startswith(m + "."):
            out.add(m)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_is_acyclic_and_surrogates_never_imports_diffcalo():
    mods = _modules()
    graph = {m: _imports(m, p, mods) for m, p in mods.items()}
    assert len(mods) > 40 and sum(map(len, graph.values())) > 80       # the scan sees the code
    assert _cycles(graph) == []
    leaks = {m: sorted(d for d in deps if d.split(".")[0] == "diffcalo") for m, deps in graph.items()
             if m.startswith("surrogates")}
    assert {m: d for m, d in leaks.items() if d} == {}


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_imports_on_its_own():
    """Each module imported in a fresh module table (only third-party libraries kept loaded), so a
    module that works only because another one happened to be imported first fails here."""
    names = sorted(_modules())
    script = textwrap.dedent(f"""
        import importlib, sys, traceback
        import jax, numpy, flax, optax, h5py, sklearn, matplotlib       # third-party: load once
        failed = []
        for name in {names!r}:
            for loaded in [m for m in sys.modules if m.split('.')[0] in {PACKAGES!r}]:
                del sys.modules[loaded]
            try:
                importlib.import_module(name)
            except Exception:
                failed.append(name + ': ' + traceback.format_exc(limit=3))
        print('\\n'.join(failed))
        sys.exit(1 if failed else 0)
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


def test_library_code_never_picks_a_matplotlib_backend():
    offenders = [str(p.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
                 if "matplotlib.use(" in p.read_text()]
    assert offenders == []


def test_ruff_check_is_clean():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    if "No module named ruff" in r.stderr:
        pytest.fail("ruff is part of the test extra: pip install -e '.[test]'")
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_command_line_option_has_help_and_version_is_printed(capsys):
    import argparse

    from diffcalo import __version__
    from diffcalo.cli import build_parser, main

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {'/'.join(a.option_strings) or a.dest}" for name, p in sub.choices.items()
               for a in p._actions if not isinstance(a, argparse._HelpAction) and not a.help]
    assert len(sub.choices) >= 13 and missing == []
    assert all(a.help for a in sub._choices_actions)                        # every command is described
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"diffcalo {__version__}"


def test_files_read_at_run_time_are_package_data():
    """``diffcalo validate``, the pile-up model and the examples read files inside the package: each must
    match a package-data pattern of pyproject.toml, or an installed wheel would not have it."""
    import fnmatch
    import tomllib

    from diffcalo.examples import NAMES as EXAMPLES
    from diffcalo.examples import path as example_path
    from diffcalo.pileup import DEFAULT_MODEL_FILE
    from diffcalo.validation import GEANT4_LUXE_FILE

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["diffcalo"]
    needed = [GEANT4_LUXE_FILE, DEFAULT_MODEL_FILE] + [example_path(n) for n in EXAMPLES]
    for f in needed:
        rel = pathlib.Path(f).resolve().relative_to(ROOT / "diffcalo").as_posix()
        assert pathlib.Path(f).is_file() and any(fnmatch.fnmatch(rel, p) for p in patterns), rel
