"""Limits per person: which apply (`rules`), counting and refusing (`admission`), and what the
admin's usage page shows (`report`)."""
