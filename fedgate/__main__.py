"""`python -m fedgate` runs the CLI."""

from fedgate.cli.commands import main

main()
