"""Function calls the chat answers for the runs it relays (design.md: "Tools: who runs what").

`models` holds the registry (`Function`) and a record of every call (`CallRound`, `FunctionCall`);
`decide` says what answers a call; `python`, `webhook`, `user` and `mcp_calls` (a tool of an MCP
server, with `mcp_client`, `mcp_http`, `mcp_catalog`, `elicitation`) are the kinds of answer;
`execute` runs a server-side call once; `rounds` answers one `requires_action` of a run from start
to `submit_tool_outputs`; `actions` is what the person does with a pending call (allow, deny,
answer); `notices` wakes a run's relay when its calls change; `recovery` takes over the rounds of
a process that died; `history` finds the calls of finished runs for the page.
"""
