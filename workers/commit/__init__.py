"""Committing events: the publisher, the commit script, leases and the reaper."""
