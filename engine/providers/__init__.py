"""Model providers: the model API the engine calls, and the offline retrieval-only model."""
