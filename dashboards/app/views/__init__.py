"""One module per part of the page: machines table, and the dialog's Summary, Performance and Analytics tabs."""
