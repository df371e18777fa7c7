"""rpcmm benchmarks: ``benchmarks/run`` (see main.py and doc/performance.rst)."""
