"""Text extraction from uploaded files, in resource-limited child processes."""
