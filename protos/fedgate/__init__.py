"""Generated code for the protobuf package `fedgate`."""
