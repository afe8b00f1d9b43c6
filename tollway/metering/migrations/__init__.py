"""The ledger's migrations, run in order by `tollway migrations bootstrap` and `up`.

The ledger was the billable plugin's before it became core: what ran then is recorded under
the subsystem `billable`, and counts as run here.
"""

RECORDED_AS = ("billable",)
