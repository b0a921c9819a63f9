"""fedgate wire contract: .proto files and their generated stubs."""
