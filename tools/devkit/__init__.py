"""Helpers shared by the tests, the benchmarks and the demo: the operator as a process (processes.py),
the sample storages (storages.py), the chart's operator run locally (chart.py), an open key gate
(gates.py) and the examples' modules loaded by path (examples.py). Nothing here imports ``tests``."""
