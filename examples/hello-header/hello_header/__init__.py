"""hello-header: an example Tollway plugin (see docs/plugins.md in Tollway's repository)."""
