import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Code, ConnectError } from "@connectrpc/connect";

import { connect, createRiggerTransport } from "../src/client.js";
import { startServer, type TestServer } from "./server.js";

let server: TestServer;
const seen: { authorization: string | null; title: string }[] = [];

before(async () => {
  server = await startServer({
    addTask(request, context) {
      seen.push({ authorization: context.requestHeader.get("authorization"), title: request.title });
      if (request.title === "") {
        throw new ConnectError("title: must not be empty", Code.InvalidArgument);
      }
      return { task: { id: "t-1", title: request.title, version: 1n } };
    },
    async *subscribeToTaskEvents(_request, context) {
      seen.push({ authorization: context.requestHeader.get("authorization"), title: "<stream>" });
      yield { sequence: 1n };
    },
  });
});

after(() => server.close());

test("connect reaches a plaintext server and returns the generated client", async () => {
  const client = connect({ address: server.address });
  const response = await client.addTask({ title: "Write tests" });
  assert.equal(response.task?.title, "Write tests");
  assert.equal(response.task?.version, 1n);
});

test("an explicit http:// address is used as given", async () => {
  const client = connect({ address: `http://${server.address}` });
  assert.equal((await client.addTask({ title: "T" })).task?.id, "t-1");
});

test("the token goes out as a bearer header on unary calls and streams", async () => {
  seen.length = 0;
  const client = connect({ address: server.address, token: "s3cret" });
  await client.addTask({ title: "T" });
  for await (const event of client.subscribeToTaskEvents({})) {
    assert.equal(event.sequence, 1n);
  }
  assert.deepEqual(
    seen.map((s) => s.authorization),
    ["Bearer s3cret", "Bearer s3cret"],
  );
});

test("without a token no authorization header is sent", async () => {
  seen.length = 0;
  await connect({ address: server.address }).addTask({ title: "T" });
  assert.equal(seen[0]?.authorization, null);
});

test("a server's status reaches the caller as a ConnectError with its code", async () => {
  const client = connect({ address: server.address });
  await assert.rejects(client.addTask({ title: "" }), (e: unknown) => {
    assert.ok(e instanceof ConnectError);
    assert.equal(e.code, Code.InvalidArgument);
    assert.equal(e.rawMessage, "title: must not be empty");
    return true;
  });
});

test("a certificate without its key (or the reverse) is refused before dialling", () => {
  assert.throws(() => createRiggerTransport({ address: "localhost:1", certFile: "c.pem" }), /together/);
  assert.throws(() => createRiggerTransport({ address: "localhost:1", keyFile: "k.pem" }), /together/);
});

test("a CA file that cannot be read is an error at once", () => {
  assert.throws(() => connect({ address: "localhost:1", caFile: "/nonexistent/ca.pem" }), /ENOENT/);
});
