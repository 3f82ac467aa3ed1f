"""Processor accounts, routing and processors' notifications (SPEC §7)."""
