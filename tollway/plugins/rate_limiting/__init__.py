"""rate-limiting: Kong's rate-limiting plugin, exact across the workers of a node and across nodes."""
