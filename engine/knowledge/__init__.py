"""Knowledge: files, vector stores, and the pipeline that makes them searchable and citable."""
