"""`python -m sensor` runs the holdmon command line."""

from sensor.cli.main import app

app(prog_name="holdmon")
