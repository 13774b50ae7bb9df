"""The benchmark harness: ``python -m bench`` (``make bench``). See bench/RESULTS.md."""
