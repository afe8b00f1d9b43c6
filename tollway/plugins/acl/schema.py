"""acl: let consumers in, or keep them out, by the groups they belong to (Kong's acl plugin)."""

SCHEMA = {
    "name": "acl",
    # After the auth plugins (key-auth: 1250), which identify the consumer whose groups count.
    "priority": 950,
    # Groups belong to consumers: the plugin gates a route or service, not a consumer.
    "scopes": ("global", "service", "route"),
    "config": {
        "allow": {
            "type": "array", "elements": {"type": "string"}, "default": None,
            "description": "groups let in; every other consumer is refused (403)",
        },
        "deny": {
            "type": "array", "elements": {"type": "string"}, "default": None,
            "description": "groups refused (403); every other consumer is let in",
        },
        "hide_groups_header": {
            "type": "boolean", "required": True, "default": False,
            "description": "do not send the consumer's groups upstream in X-Consumer-Groups",
        },
        "always_use_authenticated_groups": {
            "type": "boolean", "required": True, "default": False,
            "description": "prefer groups an auth plugin authenticated over the consumer's (no bundled "
                           "plugin sets such groups, so the consumer's are used)",
        },
        "include_consumer_groups": {
            "type": "boolean", "required": True, "default": False, "one_of": (False,),
            "description": "Kong Enterprise's consumer groups; Tollway has none, so it stays false",
        },
    },
    # Kong's entity checks, in its words
    "checks": (
        {"only_one_of": ("allow", "deny")},
        {"at_least_one_of": ("allow", "deny")},
    ),
}
