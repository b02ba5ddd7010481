"""Sensor protocols: pure, table-driven decoders (bytes -> samples in SI units) and command encoders."""
