"""One module per part of a page: the alerts and machines table, the machine's dialog and its Summary, Performance
and Analytics tabs, the estate page's timeline and grid, and the download buttons."""
