"""Runs: their lifecycle, the execution of their turns on the worker, and their event streams."""
