"""Reports and estate views: periods in the display time zone, the estate summary, week-over-week, the VM × day
grid, the backup-window timeline, and their CSV exports."""
