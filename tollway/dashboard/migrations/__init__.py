"""The dashboard's migrations (portal tokens), run in order by `tollway migrations bootstrap` and `up`."""
