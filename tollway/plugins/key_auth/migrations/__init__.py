"""key-auth migrations (subsystem `key-auth`)."""
