"""The `fedgate` command: parse, call the library, render."""
