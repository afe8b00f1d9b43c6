"""The billable plugin's migrations, run in order by `tollway migrations up`."""
