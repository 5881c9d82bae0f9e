"""`python -m emulator ...` (guarded: the hook's worker processes import this module by name)."""

from __future__ import annotations

if __name__ == "__main__":
    from emulator.cli import main

    main()
