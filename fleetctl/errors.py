from __future__ import annotations


class FleetctlError(Exception):
    """A user-facing failure: printed as one line on stderr, exit status 1."""
