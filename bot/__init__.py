"""Starling: relays microblogs and feeds into team chat."""

__version__ = "0.1.0"
