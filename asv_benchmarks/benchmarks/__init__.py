"""airspeed velocity benchmarks for xcorrdiff (run from ``asv_benchmarks/``)."""
