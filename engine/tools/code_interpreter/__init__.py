"""Code interpreter: model-written Python in a bubblewrap sandbox, one session per thread.

`sessions.Sessions` is what runs call (`execute(thread_id, code, files, on_output)` gives an
`Execution`); `sandbox` starts the sandbox and says whether one can start here; `kernel` is the
server's side of one sandbox; `runner` is the program inside it; `limits` and `cgroups` are what
it may use and how that is enforced.
"""
