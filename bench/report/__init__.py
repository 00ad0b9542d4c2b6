"""Reports from run folders: reading runs, statistics, tables, plots, pages, and the build entry point."""
