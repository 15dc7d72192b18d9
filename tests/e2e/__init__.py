"""End-to-end tests: the recorder, the simulator and the read-only commands as real processes."""
