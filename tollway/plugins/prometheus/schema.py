"""prometheus: expose per-request and node metrics in Prometheus' text format (Kong's fields)."""

SCHEMA = {
    "name": "prometheus",
    # Kong's priority: its work is in the log phase, after the response, so the order matters little.
    "priority": 13,
    "scopes": ("global", "service", "route", "consumer"),
    "config": {
        "per_consumer": {
            "type": "boolean", "default": False,
            "description": "fill the consumer label of kong_http_requests_total and kong_bandwidth_bytes "
                           "with the consumer's username",
        },
        "status_code_metrics": {
            "type": "boolean", "default": False,
            "description": "count calls per service, route, status code and source (kong_http_requests_total)",
        },
        "latency_metrics": {
            "type": "boolean", "default": False,
            "description": "histograms of kong_kong_latency_ms, kong_upstream_latency_ms and kong_request_latency_ms",
        },
        "bandwidth_metrics": {
            "type": "boolean", "default": False,
            "description": "count bytes received and sent per service and route (kong_bandwidth_bytes)",
        },
        "upstream_health_metrics": {
            "type": "boolean", "default": False,
            "description": "Kong's kong_upstream_target_health; Tollway has no active health checks, so it "
                           "exports no series for it",
        },
    },
}
