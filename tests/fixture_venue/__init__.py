"""Fixture venues for tests: real venue protocols on loopback, serving recorded frames."""
