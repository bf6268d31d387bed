"""Headless Hoichan participants (aiortc): for site probes, tests and benchmarks."""
