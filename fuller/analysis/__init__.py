"""Studies and benchmarks: the statistics and reports of ``tools/ablate.py`` and the benchmarks of
``tools/benchmark.py`` (the scripts are their command lines)."""
