"""Tools a run executes in the engine, one module (or package) per tool."""
