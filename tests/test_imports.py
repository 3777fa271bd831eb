"""The package's import graph: no circle, and no arrow that runs up a layer.

Every ``import fuller...`` / ``from fuller... import`` / relative import in every module counts,
at the top of a file or inside a function (a lazy import is still a dependency).
"""

import ast
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PKG = osp.join(ROOT, 'fuller')

# Lower layers never import higher ones; packages of one layer do not import each other.
LAYERS = [
    {'fuller._spconv_cache', 'fuller.registry', 'fuller.utils'},
    {'fuller.calibration', 'fuller.datasets'},
    {'fuller.demo', 'fuller.models', 'fuller.evaluation', 'fuller.visualization'},
    {'fuller.engine'},
    {'fuller.analysis', 'fuller.testing'},
]


def _modules() -> dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(PKG):
        for f in files:
            if f.endswith('.py'):
                rel = osp.relpath(osp.join(dirpath, f), ROOT)[:-3].replace(os.sep, '.')
                out[rel[:-len('.__init__')] if rel.endswith('.__init__') else rel] = osp.join(dirpath, f)
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the FULLER modules it imports (a name imported from a package resolves to the
    submodule when there is one)."""
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        is_pkg = path.endswith('__init__.py')
        package = name if is_pkg else name.rpartition('.')[0]
        deps = set()
        for node in ast.walk(ast.parse(open(path).read(), path)):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split('.')
                    base = base[:len(base) - node.level + 1]
                    mod = '.'.join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ''
                targets = [f'{mod}.{a.name}' if f'{mod}.{a.name}' in mods else mod for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition('.')[0]
                if t and t != name and t.startswith('fuller'):
                    deps.add(t)
        graph[name] = deps
    return graph


def _package(module: str) -> str:
    parts = module.split('.')
    return '.'.join(parts[:2]) if len(parts) > 1 else module


def _layer(module: str) -> int:
    pkg = _package(module)
    for i, layer in enumerate(LAYERS):
        if pkg in layer:
            return i
    raise AssertionError(f'{pkg} is in no layer of tests/test_imports.py: place it')


def test_every_package_has_a_layer():
    for module in import_graph():
        if module != 'fuller':
            _layer(module)


def test_no_import_runs_up_a_layer_or_across_one():
    bad = []
    for module, deps in import_graph().items():
        if module == 'fuller':
            continue
        for dep in deps:
            if _package(dep) == _package(module):
                continue
            if _layer(dep) >= _layer(module):
                bad.append(f'{module} -> {dep}')
    assert not bad, 'imports that run up (or across) a layer:\n  ' + '\n  '.join(sorted(bad))


def test_no_import_circle():
    graph = import_graph()
    state, stack, cycles = {}, [], []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    assert not cycles, 'import circles:\n  ' + '\n  '.join(' -> '.join(c) for c in cycles)


def test_the_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert 'fuller.registry' in graph['fuller.datasets.nuscenes_mtl']  # absolute, top of file
    assert 'fuller.datasets.metainfo' in graph['fuller.datasets.nuscenes_mtl'] or \
        'fuller.datasets.info_io' in graph['fuller.datasets.nuscenes_mtl']  # relative
    assert 'fuller.visualization' in graph['fuller.engine.hooks']  # inside a method


@pytest.mark.parametrize('package', ['fuller.utils', 'fuller.calibration', 'fuller.datasets', 'fuller.models',
                                     'fuller.evaluation', 'fuller.visualization', 'fuller.engine'])
def test_each_package_imports_first_in_a_fresh_interpreter(package):
    proc = subprocess.run([sys.executable, '-c', f'import {package}'], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


_DUMP_DESCRIPTIONS = r'''
import json
import fuller  # noqa: F401  (installs the hook)
import spconv.algo as algo
rows = []
for table in (algo.GEMM.static_key_to_desps, algo.CONV.static_key_to_desps):
    for key in sorted(table, key=repr):
        for d in table[key]:
            rows.append({a: repr(getattr(d, a)) for a in dir(d)
                         if not a.startswith('_') and not callable(getattr(d, a))} | {'str': str(d)})
print(json.dumps(rows))
'''


def test_spconv_gets_the_same_kernel_descriptions_from_the_cache(tmp_path):
    """fuller._spconv_cache answers spconv's import-time kernel generation from a table: every
    description spconv holds (84 GEMM, 644 convolution) has the values it has without the table."""

    def dump(**env):
        proc = subprocess.run([sys.executable, '-c', _DUMP_DESCRIPTIONS], capture_output=True, text=True, cwd=ROOT,
                              timeout=300, env={**os.environ, 'FULLER_CACHE_DIR': str(tmp_path), **env})
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout)

    real = dump(FULLER_SPCONV_CACHE='0')
    assert not list(tmp_path.iterdir())
    first = dump()  # builds the table: real kernels, recorded
    (table,) = tmp_path.iterdir()
    stamp = table.stat().st_mtime_ns
    cached = dump()  # answered from the table, which is complete and so not rewritten
    assert table.stat().st_mtime_ns == stamp
    assert len(real) == 84 + 644 and 'element_per_access_a' in real[-1] and 'dynamic_mask' in real[-1]
    assert first == real and cached == real
    table.write_text('{"truncated": [1, 2')  # a broken table is ignored and rebuilt
    assert dump() == real and len(json.loads(table.read_text())) == 84 + 644
