"""``python -m kgx``: the same as the ``kgx`` command."""

from kgx.cli import app

app(prog_name="kgx")
