"""InfluxDB v1 access: point encoding, batching writer, InfluxQL queries."""
