"""The run event log: contracts, the append path, broadcasting and reads."""
