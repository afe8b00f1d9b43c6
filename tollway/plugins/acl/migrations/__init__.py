"""acl migrations (subsystem `acl`)."""
