"""A disk cache for the kernel descriptions spconv builds when it is imported.

``import spconv.pytorch`` imports ``spconv.algo``, which describes every prebuilt CUDA kernel
(644 convolution and 84 GEMM parameter sets, the convolution ones twice) by generating each
kernel's whole code object in Python, only to read six numbers from it (elements per access of
A, B and C, the minimum architecture, int8 inference, dynamic mask). That took 10-20 s of every
tool's start on a 2-core CPU, before any work, also on machines without CUDA; mmdet3d's model
and dataset packages import it, so every FULLER tool paid it.

:func:`install` (called by ``import fuller``) adds an import hook that, while ``spconv.algo``
executes, answers spconv's two kernel generators from a JSON table of those six numbers keyed by
the full parameter set, and restores the real generators as soon as ``spconv.algo`` is loaded
(run-time compilation for unknown kernels uses its own imports and is not touched). A parameter
set missing from the table is generated for real and added; the table is written once, atomically,
per spconv and cumm version, to ``$FULLER_CACHE_DIR`` (default ``$XDG_CACHE_HOME/fuller``, else
``~/.cache/fuller``). The descriptions spconv ends up with are the same objects with the same
values (``tests/test_imports.py`` compares all of them with and without the table).
``FULLER_SPCONV_CACHE=0`` turns the hook off; an unreadable table is ignored and rebuilt.
"""

import hashlib
import importlib.abc
import importlib.machinery
import json
import os
import os.path as osp
import sys
from enum import Enum
from types import SimpleNamespace

_TARGET = 'spconv.algo'
_FIELDS = ('epa_a', 'epa_b', 'epa_c', 'min_arch', 'int8_inference', 'dynamic_mask')


def cache_dir() -> str:
    if os.environ.get('FULLER_CACHE_DIR'):
        return os.environ['FULLER_CACHE_DIR']
    base = os.environ.get('XDG_CACHE_HOME') or osp.join(osp.expanduser('~'), '.cache')
    return osp.join(base, 'fuller')


def _versions() -> str | None:
    try:
        import cumm
        import spconv
    except ImportError:
        return None
    sv, cv = getattr(spconv, '__version__', None), getattr(cumm, '__version__', None)
    return f'spconv-{sv}-cumm-{cv}' if sv and cv else None


def param_key(p) -> str:
    """A string that names one cumm parameter set by all of its fields, recursively."""

    def enc(v):
        if isinstance(v, Enum):
            return f'{type(v).__name__}.{v.name}'
        if isinstance(v, (bool, int, float, str, type(None))):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return '[' + ','.join(enc(x) for x in v) + ']'
        fields = getattr(v, '__dict__', None)
        if fields:
            return type(v).__name__ + '(' + ','.join(f'{k}={enc(fields[k])}' for k in sorted(fields)) + ')'
        return f'{type(v).__name__}:{v!r}'

    return enc(p)


def _summary(ker, conv: bool) -> list:
    return [ker.input_spec.input_iter_a.element_per_acc, ker.input_spec.input_iter_b.element_per_acc,
            ker.output_spec.out_iter.element_per_acc, list(ker.min_arch()),
            bool(ker.int8_inference) if conv else False, bool(ker.dynamic_mask) if conv else False]


def _kernel_view(values: list) -> SimpleNamespace:
    """An object with the attributes spconv's ``algocore`` reads from a generated kernel."""
    epa_a, epa_b, epa_c, min_arch, int8, dyn = values
    return SimpleNamespace(
        input_spec=SimpleNamespace(input_iter_a=SimpleNamespace(element_per_acc=epa_a),
                                   input_iter_b=SimpleNamespace(element_per_acc=epa_b)),
        output_spec=SimpleNamespace(out_iter=SimpleNamespace(element_per_acc=epa_c)),
        min_arch=lambda: tuple(min_arch), int8_inference=int8, dynamic_mask=dyn)


def _load_table(path: str) -> dict:
    try:
        with open(path) as f:
            table = json.load(f)
        if isinstance(table, dict) and all(isinstance(v, list) and len(v) == len(_FIELDS) for v in table.values()):
            return table
    except (OSError, ValueError):
        pass
    return {}


class _Loader(importlib.abc.Loader):
    def __init__(self, inner, path: str):
        self.inner, self.path = inner, path

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        import spconv.algocore as algocore

        table, misses = _load_table(self.path), []
        real = {'gen_conv_kernels': algocore.gen_conv_kernels, 'gen_gemm_kernels': algocore.gen_gemm_kernels}

        def cached(name: str, conv: bool):
            def gen(p, *args, **kwargs):
                if args or kwargs:  # not the description call: leave it to cumm
                    return real[name](p, *args, **kwargs)
                key = hashlib.sha1((('conv|' if conv else 'gemm|') + param_key(p)).encode()).hexdigest()
                if key not in table:
                    ker = real[name](p)
                    table[key] = _summary(ker, conv)
                    misses.append(key)
                    return ker
                return _kernel_view(table[key])

            return gen

        algocore.gen_conv_kernels = cached('gen_conv_kernels', True)
        algocore.gen_gemm_kernels = cached('gen_gemm_kernels', False)
        try:
            self.inner.exec_module(module)
        finally:
            algocore.gen_conv_kernels, algocore.gen_gemm_kernels = real['gen_conv_kernels'], real['gen_gemm_kernels']
        if misses:
            _write_table(self.path, table)


def _write_table(path: str, table: dict) -> None:
    """Whole or not at all (a temporary file and one ``os.replace``); a read-only cache directory
    only means the next start builds the descriptions again."""
    tmp = f'{path}.tmp-{os.getpid()}'
    try:
        os.makedirs(osp.dirname(path), exist_ok=True)
        with open(tmp, 'w') as f:
            json.dump(table, f)
        os.replace(tmp, path)
    except OSError:
        if osp.exists(tmp):
            os.remove(tmp)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != _TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        versions = _versions()
        if spec is None or spec.loader is None or versions is None:
            return spec
        spec.loader = _Loader(spec.loader, osp.join(cache_dir(), f'{versions}-kernel-descriptions.json'))
        return spec


def install() -> None:
    """Add the import hook (once; not when ``FULLER_SPCONV_CACHE=0`` or spconv is already loaded)."""
    if os.environ.get('FULLER_SPCONV_CACHE', '1') == '0' or _TARGET in sys.modules:
        return
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
