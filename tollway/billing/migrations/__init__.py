"""Billing's migrations (subsystem `billing`): meters, plans, charges, entitlements, plan versions
and subscriptions."""
