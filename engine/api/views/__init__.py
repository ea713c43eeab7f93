"""One module per resource of the Assistants API; urls.py maps OpenAI's paths to them."""
