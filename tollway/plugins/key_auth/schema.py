"""key-auth: authenticate consumers with an API key in a header or the query string."""

SCHEMA = {
    "name": "key-auth",
    "priority": 1250,
    # Where the plugin may be attached: key-auth identifies the consumer, so not on one.
    "scopes": ("global", "service", "route"),
    "config": {
        "key_names": {
            "type": "array", "elements": {"type": "string", "header_name": True}, "required": True,
            "default": ["apikey"],
            "description": "header or query argument names in which the key is looked up",
        },
        "hide_credentials": {
            "type": "boolean", "required": True, "default": False,
            "description": "remove the key from the request before it reaches the upstream",
        },
        "anonymous": {
            "type": "string", "default": None,
            "description": "id or username of a consumer to use when no key is given",
        },
        "key_in_header": {
            "type": "boolean", "required": True, "default": True,
            "description": "look for the key in request headers",
        },
        "key_in_query": {
            "type": "boolean", "required": True, "default": True,
            "description": "look for the key in the query string",
        },
        "key_in_body": {
            "type": "boolean", "required": True, "default": False,
            "description": "look for the key in a form or JSON body (not supported; must stay false)",
        },
        "run_on_preflight": {
            "type": "boolean", "required": True, "default": True,
            "description": "also authenticate OPTIONS preflight requests",
        },
    },
}
