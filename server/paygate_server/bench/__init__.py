"""``paygate bench``: the load generator (SPEC §10).

It drives complete payments (create → process with an ``encryptedCard`` → status until
final) or one endpoint, from many merchants, closed-loop (N in flight) or open-loop (a
target rate), always bounded by a duration or a count; it reports payments/s, per-endpoint
latency percentiles, errors by code, and the CPU the gateway, the simulator and the
generator itself used, read from ``/proc``. See docs/performance.md.
"""
