"""Reading info files (``nuscenes_infos_*.pkl``) without running code they carry.

An info file is a pickle, and the full unpickler calls whatever class or function the file
names: a downloaded file with a ``__reduce__`` payload runs a shell command the moment it is
opened. Info files hold only plain data (dicts, lists, strings, numbers) and numpy arrays, so
:func:`load_info_file` reads them with an unpickler that resolves exactly those globals and
refuses every other one, naming it. The opt-in for a trusted file that holds other objects is
``trust_info_file=True`` on the dataset (``--trust-info-files`` on the tools), the same rule as
``--trust-checkpoint`` for checkpoints.
"""

import _compat_pickle
import importlib
import pickle

__all__ = ['UnsafeInfoFileError', 'load_info_file', 'ALLOWED_GLOBALS']

# (module, name) pairs an info file may name. numpy pickles an array as
# ``_reconstruct(ndarray, shape, dtype)`` + ``__setstate__`` (protocol 5: ``_frombuffer(bytes,
# dtype, shape, order)``) and a scalar as ``scalar(dtype, bytes)``;
# protocol-2 pickles spell bytes through ``_codecs.encode``. numpy 2 writes ``numpy._core``
# where numpy 1 writes ``numpy.core``: both spellings resolve to the installed numpy.
_NUMPY = {
    ('multiarray', '_reconstruct'), ('multiarray', 'scalar'), ('numeric', '_frombuffer'),
}
ALLOWED_GLOBALS = frozenset({
    ('numpy', 'ndarray'), ('numpy', 'dtype'),
    *(('numpy.core.' + m, n) for m, n in _NUMPY), *(('numpy._core.' + m, n) for m, n in _NUMPY),
    ('_codecs', 'encode'),
    ('collections', 'OrderedDict'),
    *(('builtins', n) for n in ('set', 'frozenset', 'complex', 'slice', 'range', 'bytearray', 'list', 'dict',
                                 'tuple', 'int', 'float', 'bool', 'str', 'bytes')),
})


class UnsafeInfoFileError(pickle.UnpicklingError):
    """An info file names a global that info files never hold (it could run code)."""


def _resolve(module: str, name: str):
    if module.startswith('numpy._core.') or module.startswith('numpy.core.'):
        sub = module.split('.', 2)[2]
        for prefix in ('numpy._core.', 'numpy.core.'):
            try:
                return getattr(importlib.import_module(prefix + sub), name)
            except (ImportError, AttributeError):
                continue
    return getattr(importlib.import_module(module), name)


class _InfoUnpickler(pickle.Unpickler):
    def __init__(self, file, path: str):
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str):
        # Protocol-2 pickles spell Python 2 names (__builtin__.set); map them as pickle does.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in ALLOWED_GLOBALS:
            return _resolve(module, name)
        raise UnsafeInfoFileError(
            f'{self.path} names {module}.{name}, which an info file never holds (info files are plain data and '
            'numpy arrays; this one may run code when loaded): not loaded. Regenerate it with tools/create_data.py, '
            'or, only if you trust its source, load it with --trust-info-files (dataset trust_info_file=True)')


def load_info_file(path: str, trusted: bool = False):
    """The object pickled in the info file ``path``.

    Args:
        path: the ``.pkl`` file.
        trusted: read with the full unpickler, which runs any code the file names: only for a
            file from a trusted source that holds objects other than plain data and numpy arrays.

    Raises:
        UnsafeInfoFileError: (``trusted=False``) the file names any other class or function;
            nothing it names was called.
    """
    with open(path, 'rb') as f:
        return pickle.load(f) if trusted else _InfoUnpickler(f, path).load()
