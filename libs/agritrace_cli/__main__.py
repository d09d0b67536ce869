"""Lets `python -m agritrace_cli` run the tool."""

from agritrace_cli.main import app

app(prog_name="agritrace")
