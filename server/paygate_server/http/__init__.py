"""HTTP plumbing shared by every API endpoint: request ids, body limits, authentication,
JSON parsing, error rendering and idempotency."""
