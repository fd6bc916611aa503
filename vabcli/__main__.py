"""`python -m vabcli` runs the `vab` command line."""

from .cli import main

main()
