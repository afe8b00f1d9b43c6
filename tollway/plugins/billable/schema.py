"""billable: meter every call per consumer, service, route and status, for billing."""

SCHEMA = {
    "name": "billable",
    # Runs after auth plugins in access; its work is in the meter phase, at the end of the call.
    "priority": 5,
    "scopes": ("global", "service", "route", "consumer"),
    "config": {},
}
