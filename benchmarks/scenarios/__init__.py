"""One module per scenario; each takes the shared :class:`~benchmarks.context.Bench`."""
