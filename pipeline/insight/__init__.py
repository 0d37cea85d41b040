"""Operator insight computed from telemetry: ETA of running jobs, anomalies of finished ones, bottlenecks, RPO."""
