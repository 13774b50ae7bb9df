"""What the gateway tells its operator: logs, metrics, and the seam between them and the core.

- ``observer``: ``JobObserver``, what the core calls as jobs move (a no-op base class; the core
  imports nothing else of this package, and nothing here imports prometheus-client but
  ``metrics``);
- ``metrics``: ``Metrics``, the Prometheus registry that counts those calls;
- ``gauges``: values read at scrape time (queue depth, in-flight jobs, circuit breakers);
- ``http_metrics``: the HTTP latency middleware;
- ``logs``: logging set-up (JSON or text lines with request and job ids);
- ``redact``: URLs in log lines lose their user info and query string.
"""
