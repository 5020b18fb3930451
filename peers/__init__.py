"""Clients of a running VoxGate, as people's browsers and consoles are: used by tests and benchmarks alike.

Not part of the distribution; nothing in the code packages imports it.
"""
