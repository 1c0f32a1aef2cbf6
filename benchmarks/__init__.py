"""coatcheck's benchmarks: HTTP load against real servers, store micro-benchmarks, scale checks."""
