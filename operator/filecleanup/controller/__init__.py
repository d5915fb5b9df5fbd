"""Layer controller. The operator as a process: Kopf's wiring (handlers, runtime), the Lease, the retention
sweeper, the pause switch, Kopf's log lines, and the helm test's self-check. The top layer beside album."""
