"""The only layer that talks to the Kubernetes API: raw JSON requests, watches, events."""
