"""The plugin's configuration: plain data, validated by the Admin API (Kong's error shapes)."""

SCHEMA = {
    "name": "hello-header",
    # Higher than key-auth's 1250: its access phase runs first, so even a 401 carries the header.
    "priority": 2000,
    "scopes": ("global", "service", "route", "consumer"),
    "config": {
        "value": {"type": "string", "required": True, "description": "the value of the X-Hello response header"},
    },
}
