"""prometheus: Kong's Prometheus plugin. Per-request metrics counted in each worker, summed by
the master, served as GET /metrics on the Admin API and on the status listener."""
