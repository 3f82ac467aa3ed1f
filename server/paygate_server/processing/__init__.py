"""Payment processing: charge attempts, processor connectors and reconciliation."""
