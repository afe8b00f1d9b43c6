"""Billing's migrations (subsystem `billing`): meters, plans, charges, entitlements, plan versions
and subscriptions (000); invoices, their lines, credit notes and number sequences (001)."""
