"""A deterministic simulation of the payment core (docs/reliability.md)."""
