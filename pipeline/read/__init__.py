"""Read services: what the API and the dashboard show of jobs, machines and telemetry history."""
