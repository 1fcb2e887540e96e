// Seed-protocol clients (whole texts with `code_change`, the original design's client) across two hubs
// of the native cluster: one connected straight to each hub, a Yjs client through nginx. Edits cross
// through Redis; every replica ends with the same text, and a seed client's lines are kept.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { io } from "socket.io-client";
import { Cluster, repo } from "./harness.mjs";
import { CollabClient, sleep, until } from "../js/collab/client.mjs";

const cluster = new Cluster();

/** A client of the original design: it sends its whole text and shows the texts it is sent. */
class SeedClient {
  static async join(url, code, name) {
    const c = new SeedClient();
    c.socket = io(url, { transports: ["websocket"], forceNew: true, reconnection: false });
    c.text = null;
    c.socket.on("sync_code", (d) => (c.text = d.code));
    c.socket.on("code_updated", (d) => (c.text = d.code));
    const ack = await c.socket.timeout(5000).emitWithAck("join_session", { session_code: code, name });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    assert.ok(await until(() => c.text !== null, 5000), "sync_code");
    return c;
  }

  /** Sends `text`; resolves with the ack (the change is stored). */
  change(text) {
    this.text = text;
    return this.socket.timeout(10000).emitWithAck("code_change", { code: text });
  }

  close() {
    this.socket.disconnect();
  }
}

describe("seed clients across two hubs", { timeout: 120_000 }, () => {
  before(async () => {
    await cluster.start();
  });
  after(async () => {
    await cluster.stop();
  });

  it("a client alone ends with exactly its text; the other hub's clients see it", async () => {
    const code = await cluster.createInterview();
    const a = await SeedClient.join(cluster.urlOf("hub-1"), code, "A");
    const b = await SeedClient.join(cluster.urlOf("hub-2"), code, "B");
    const y = new CollabClient(cluster.url, { code, name: "Y" });
    assert.ok(await until(() => y.synced, 5000));
    for (const t of ["hello world\n", "hello there\n", "", "x = 1\ny = 2\n", "y = 2\n", "z\r\n😀 é\n"]) {
      const ack = await a.change(t);
      assert.equal(ack.ok, true, JSON.stringify(ack));
      assert.ok(await until(() => b.text === t && y.value === t, 5000), `${JSON.stringify(t)}: B ${JSON.stringify(b.text)}, Y ${JSON.stringify(y.value)}`);
      assert.equal(a.text, t, "A is not sent a merged text");
    }
    for (const c of [a, b, y]) c.close();
  });

  it("bursts from both hubs and a Yjs client converge and keep every line", async () => {
    const code = await cluster.createInterview();
    const a = await SeedClient.join(cluster.urlOf("hub-1"), code, "A");
    await a.change("top\nmiddle\nbottom\n");
    const b = await SeedClient.join(cluster.urlOf("hub-2"), code, "B");
    const y = new CollabClient(cluster.url, { code, name: "Y" });
    assert.ok(await until(() => y.synced && y.value === "top\nmiddle\nbottom\n", 5000));
    const pending = [];
    for (let i = 0; i < 12; i++) {
      // A types under `top`, B at the end, Y under `middle`: none waits for the others.
      pending.push(a.change(a.text.replace("top\n", `top\na${i}\n`)));
      pending.push(b.change(`${b.text}b${i}\n`));
      const at = y.value.indexOf("middle\n") + "middle\n".length;
      y.text.insert(at, `y${i}\n`);
      await sleep(15);
    }
    for (const ack of await Promise.all(pending)) assert.equal(ack.ok, true, JSON.stringify(ack));
    assert.ok(await until(() => y.saved, 10000), "Y's edits acknowledged");
    const same = () => a.text === b.text && b.text === y.value;
    assert.ok(await until(same, 10000), `A ${JSON.stringify(a.text)}\nB ${JSON.stringify(b.text)}\nY ${JSON.stringify(y.value)}`);
    const fresh = new CollabClient(cluster.urlOf("hub-2"), { code, name: "Fresh" });
    assert.ok(await until(() => fresh.synced && fresh.value === y.value, 5000), "a fresh participant loads the same text");
    const lines = y.value.split("\n");
    for (const l of lines) assert.match(l, /^(top|middle|bottom|[aby]\d+|)$/, `a line spliced from two: ${JSON.stringify(l)}`);
    for (let i = 0; i < 12; i++) {
      for (const p of ["a", "b", "y"]) assert.equal(lines.filter((l) => l === `${p}${i}`).length, 1, `${p}${i} in ${JSON.stringify(y.value)}`);
    }
    for (const l of ["top", "middle", "bottom"]) assert.equal(lines.filter((x) => x === l).length, 1);
    for (const c of [a, b, y, fresh]) c.close();
  });

  // The python-socketio client of tests/py (the stack a seed-era user has), its scenarios with each
  // interview's clients on different hubs: scripts/test.sh makes its venv before these tests run.
  const python = join(repo, "target", "tools", "py", "bin", "python");
  it("python-socketio clients on two hubs: the seed scenarios", { skip: !existsSync(python) && `no ${python} (scripts/test.sh makes it)` }, async () => {
    const env = {
      ...process.env,
      DUET_SEED_API: cluster.url,
      DUET_SEED_HUBS: `${cluster.urlOf("hub-1")},${cluster.urlOf("hub-2")}`,
    };
    const args = ["-m", "unittest", "-v", "test_seed_client.SeedClientsAcrossHubs"];
    try {
      const { stderr } = await promisify(execFile)(python, args, { cwd: join(repo, "tests", "py"), env, timeout: 90_000 });
      // unittest reports on stderr; every scenario ran (none skipped) and passed.
      assert.match(stderr, /Ran 3 tests/, stderr);
      assert.match(stderr, /\nOK\n/, stderr);
    } catch (err) {
      assert.fail(`python scenarios across hubs failed:\n${err.stderr ?? err}`);
    }
  });
});
