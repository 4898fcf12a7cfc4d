"""The benchmark harness: workloads, measurements, process bookkeeping and reports."""
