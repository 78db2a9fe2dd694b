"""The circleback service at the edge: configuration, the store, the cycle, the CLI and the web endpoints."""
