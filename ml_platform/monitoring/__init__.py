"""Monitoring computations: input drift and performance estimated before outcomes arrive."""
