"""The live answer: a run relayed as HTML fragments, kept for late readers, served as SSE.

The POST that starts a run also starts its `relay`, a background task that feeds the run's
events to the answer's view model (`answer.RunView`) and publishes the fragments it returns:
first into the run's `replay` log, then on the channel layer (`layers` in one process, Redis in
several). The SSE consumer (`consumers`, at `routing`'s path) sends a browser what it missed
from the log, then follows live.
"""
