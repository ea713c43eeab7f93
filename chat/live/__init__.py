"""The live answer: a run relayed as HTML fragments, kept for late readers, served as SSE."""
