"""`python -m device_sim`."""

from device_sim.cli import app

app(prog_name="python -m device_sim")
