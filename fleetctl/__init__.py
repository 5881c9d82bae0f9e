"""fleetctl: the operator and factory command line for the serial registry and the claim credentials."""
