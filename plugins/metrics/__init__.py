"""Plugin execution metrics: what is recorded, where it goes, and how it is exposed.

* :mod:`~plugins.metrics.instruments`: this process's Prometheus instruments;
* :mod:`~plugins.metrics.recorder`: the recorders ToolRunner is handed, which count
  an execution now or hold its persisted row until the caller's transaction commits;
* :mod:`~plugins.metrics.exposition`: the ``/metrics`` page, the instruments and
  the counters persisted in the database.
"""
