"""The HTTP edge of the Assistants API: keys, request bodies, errors, lists, views, URLs."""
