"""accessctl benchmarks: ``python -m bench`` (``make bench``) runs them on the local stack and prints one table."""
