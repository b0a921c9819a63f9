"""`python -m fedgate` runs the CLI."""

from fedgate.cli import main

main()
