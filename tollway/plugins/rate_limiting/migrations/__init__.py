"""rate-limiting migrations (subsystem `rate-limiting`): the cluster policy's counters."""
