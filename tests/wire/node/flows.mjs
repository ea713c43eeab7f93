// The Assistants cookbook's flows with the official Node SDK, as its README writes them, against
// a live Threadline. Run by tests/wire/test_node_sdk.py: `node flows.mjs <flow>`, with
// OPENAI_BASE_URL and OPENAI_API_KEY set (the SDK reads them itself) and a flow's own inputs in
// THREADLINE_* variables. A flow that goes wrong throws: node exits non-zero with the reason.
import assert from "node:assert/strict";
import fs from "node:fs";
import OpenAI, { NotFoundError, AuthenticationError, BadRequestError } from "openai";

const client = new OpenAI({ maxRetries: 0, timeout: 30_000 });
const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} is not set`);
  return value;
};

const flows = {
  // Assistants, threads and messages: create, read, update, list (auto-pagination), delete.
  async basics() {
    const made = [];
    for (let i = 0; i < 23; i++) {
      made.push(await client.beta.assistants.create({ model: env("THREADLINE_MODEL"), name: `node ${i}` }));
    }
    const seen = [];
    for await (const assistant of client.beta.assistants.list({ limit: 5 })) seen.push(assistant.id);
    for (const assistant of made) assert.ok(seen.includes(assistant.id));
    const renamed = await client.beta.assistants.update(made[0].id, { name: "renamed" });
    assert.equal(renamed.name, "renamed");
    assert.equal((await client.beta.assistants.retrieve(made[0].id)).name, "renamed");

    const thread = await client.beta.threads.create({ metadata: { from: "node" } });
    await client.beta.threads.messages.create(thread.id, { role: "user", content: "Hello" });
    await client.beta.threads.messages.create(thread.id, {
      role: "user",
      content: [{ type: "text", text: "In parts" }],
    });
    const messages = await client.beta.threads.messages.list(thread.id, { order: "asc" });
    assert.deepEqual(
      messages.data.map((m) => m.content[0].text.value),
      ["Hello", "In parts"],
    );
    const updated = await client.beta.threads.update(thread.id, { metadata: { from: "node 2" } });
    assert.equal(updated.metadata.from, "node 2");
    for (const assistant of made) {
      assert.equal((await client.beta.assistants.delete(assistant.id)).deleted, true);
    }
    assert.equal((await client.beta.threads.delete(thread.id)).deleted, true);
  },

  // createAndPoll with no interval: the server's openai-poll-after-ms sets the pace, not the
  // SDK's own 5 seconds.
  async createAndPoll() {
    const assistant = await client.beta.assistants.create({ model: env("THREADLINE_MODEL") });
    const thread = await client.beta.threads.create({
      messages: [{ role: "user", content: "Echo this back" }],
    });
    const started = Date.now();
    const run = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    const seconds = (Date.now() - started) / 1000;
    assert.equal(run.status, "completed");
    // Without the header, each poll after the first would wait 5 s.
    assert.ok(seconds < 4.5, `createAndPoll took ${seconds} s`);
    const answer = (await client.beta.threads.messages.list(thread.id)).data[0];
    assert.equal(answer.role, "assistant");
    assert.equal(answer.content[0].text.value, env("THREADLINE_ANSWER"));
    const raw = await client.beta.threads.runs.retrieve(run.id, { thread_id: thread.id }).asResponse();
    assert.equal(raw.headers.get("openai-poll-after-ms"), "500");
    assert.match(raw.headers.get("x-request-id"), /^req_/);
  },

  // Streaming with the event helpers, and createAndRunStream, which starts with the thread.
  async stream() {
    const assistant = await client.beta.assistants.create({ model: env("THREADLINE_MODEL") });
    const thread = await client.beta.threads.create({
      messages: [{ role: "user", content: "Stream this back" }],
    });
    let text = "";
    const events = [];
    const stream = client.beta.threads.runs
      .stream(thread.id, { assistant_id: assistant.id })
      .on("event", (e) => events.push(e.event))
      .on("textDelta", (delta) => (text += delta.value));
    const run = await stream.finalRun();
    assert.equal(run.status, "completed");
    assert.equal(text, env("THREADLINE_ANSWER"));
    assert.equal(events[0], "thread.run.created");
    assert.ok(events.includes("thread.message.delta"));

    const created = [];
    const both = client.beta.threads.createAndRunStream({
      assistant_id: assistant.id,
      thread: { messages: [{ role: "user", content: "Stream this back" }] },
    });
    for await (const event of both) created.push(event.event);
    assert.deepEqual(created.slice(0, 2), ["thread.created", "thread.run.created"]);
    assert.equal(created.at(-1), "thread.run.completed");
  },

  // Function calling: the run asks, the client answers with submitToolOutputsStream.
  async functionCalling() {
    const assistant = await client.beta.assistants.create({
      model: env("THREADLINE_MODEL"),
      tools: [
        {
          type: "function",
          function: {
            name: "get_weather",
            parameters: { type: "object", properties: { city: { type: "string" } } },
          },
        },
      ],
    });
    const thread = await client.beta.threads.create({
      messages: [{ role: "user", content: "Weather in Oslo?" }],
    });
    const first = client.beta.threads.runs.stream(thread.id, { assistant_id: assistant.id });
    const parked = await first.finalRun();
    assert.equal(parked.status, "requires_action");
    const [call] = parked.required_action.submit_tool_outputs.tool_calls;
    assert.equal(call.function.name, "get_weather");
    assert.deepEqual(JSON.parse(call.function.arguments), { city: "Oslo" });
    let text = "";
    const second = client.beta.threads.runs
      .submitToolOutputsStream(parked.id, {
        thread_id: thread.id,
        tool_outputs: [{ tool_call_id: call.id, output: "12°C and clear" }],
      })
      .on("textDelta", (delta) => (text += delta.value));
    assert.equal((await second.finalRun()).status, "completed");
    assert.equal(text, env("THREADLINE_ANSWER"));
  },

  // The README's upload, a stream from disk sent chunked, then file search over it with
  // uploadAndPoll, createAndPoll and a batch.
  async fileSearch() {
    const path = env("THREADLINE_PDF");
    const file = await client.files.create({ file: fs.createReadStream(path), purpose: "assistants" });
    assert.equal(file.bytes, fs.statSync(path).size);
    const store = await client.vectorStores.create({ name: "Node's knowledge" });
    const attached = await client.vectorStores.files.createAndPoll(store.id, { file_id: file.id });
    assert.equal(attached.status, "completed", JSON.stringify(attached.last_error));
    const uploaded = await client.vectorStores.files.uploadAndPoll(store.id, fs.createReadStream(path));
    assert.equal(uploaded.status, "completed");
    const batch = await client.vectorStores.fileBatches.uploadAndPoll(store.id, {
      files: [fs.createReadStream(path)],
    });
    assert.equal(batch.file_counts.completed, 1);

    const assistant = await client.beta.assistants.create({
      model: "threadline-retrieval",
      tools: [{ type: "file_search" }],
      tool_resources: { file_search: { vector_store_ids: [store.id] } },
    });
    const run = await client.beta.threads.createAndRunPoll({
      assistant_id: assistant.id,
      thread: { messages: [{ role: "user", content: env("THREADLINE_QUESTION") }] },
    });
    assert.equal(run.status, "completed");
    const answer = (await client.beta.threads.messages.list(run.thread_id)).data[0].content[0].text;
    assert.ok(answer.value.includes(env("THREADLINE_EVIDENCE")), answer.value);
    assert.ok(answer.annotations.some((a) => a.type === "file_citation"));

    const results = await client.vectorStores.search(store.id, { query: env("THREADLINE_QUESTION") });
    assert.ok(results.data.length > 0);
  },

  // Files: streamed and in-memory uploads, listing, download, delete.
  async files() {
    const path = env("THREADLINE_PDF");
    const streamed = await client.files.create({
      file: fs.createReadStream(path),
      purpose: "assistants",
      expires_after: { anchor: "created_at", seconds: 3600 },
    });
    assert.equal(streamed.expires_at, streamed.created_at + 3600);
    const inMemory = await client.files.create({
      file: await OpenAI.toFile(Buffer.from("# Notes\n\nFrom memory.\n"), "notes.md"),
      purpose: "assistants",
    });
    const listed = [];
    for await (const file of client.files.list({ limit: 1 })) listed.push(file.id);
    assert.ok(listed.includes(streamed.id) && listed.includes(inMemory.id));
    const content = Buffer.from(await (await client.files.content(streamed.id)).arrayBuffer());
    assert.ok(content.equals(fs.readFileSync(path)));
    assert.equal((await client.files.delete(inMemory.id)).deleted, true);
  },

  // Errors arrive as the SDK's own classes with OpenAI's fields.
  async errors() {
    await assert.rejects(client.beta.assistants.retrieve("asst_nobody"), (error) => {
      assert.ok(error instanceof NotFoundError);
      assert.match(error.requestID, /^req_/);
      return true;
    });
    await assert.rejects(
      client.beta.assistants.create({ model: "m", response_format: { type: "json_schema" } }),
      (error) => {
        assert.ok(error instanceof BadRequestError);
        assert.equal(error.param, "response_format.json_schema");
        return true;
      },
    );
    const stranger = new OpenAI({ apiKey: "sk-not-a-key", maxRetries: 0 });
    await assert.rejects(stranger.models.list(), AuthenticationError);
  },
};

const name = process.argv[2];
assert.ok(flows[name], `no flow named ${name}; flows: ${Object.keys(flows).join(", ")}`);
await flows[name]();
console.log(`ok ${name}`);
