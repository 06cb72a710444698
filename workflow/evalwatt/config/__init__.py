"""The run configuration: load, validate, fill defaults, check rules and the machine."""
