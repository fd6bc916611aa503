"""`python -m vabcli` runs the `vab` command line."""

from vabcli.cli.main import main

main()
