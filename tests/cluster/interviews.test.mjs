// Interviews on the native cluster (nginx → 2 gateways → 2 hubs and 2 session-APIs, PostgreSQL,
// Redis): tokens from the session-API behind the gateways are checked by the hubs; an interviewer on
// hub-1 and a candidate on hub-2 (connected straight to each) plus participants through nginx; the
// session-API's start/end reach every hub through Redis; the notes cross hubs to interviewers only.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { Cluster } from "./harness.mjs";
import { CollabClient, sleep, until } from "../js/collab/client.mjs";
import { NotesClient, Recorder, createInterview, joinRest, rest } from "../js/collab/interview.mjs";

const cluster = new Cluster();
// A low creation budget (per client and minute), counted by the two session-APIs together in Redis.
const CREATES_PER_MINUTE = 4;
cluster.env.DUET_API__CREATES_PER_MINUTE = String(CREATES_PER_MINUTE);

describe("interviews across the scaled services", { timeout: 120_000 }, () => {
  before(async () => {
    await cluster.start();
  });
  after(async () => {
    await cluster.stop();
  });

  it("roles, lifecycle and private notes hold across two hubs and two gateways", async () => {
    const url = cluster.url;
    const created = await createInterview(url, { lobby: true });
    const code = created.session_code;
    // The links name the public origin (nginx), not a session-API's address.
    assert.equal(new URL(created.links.candidate).origin, new URL(url).origin);
    assert.equal(new URL(created.links.interviewer).hash, `#token=${created.interviewer_token}`);
    const int = await joinRest(url, code, { name: "Ivan", bearer: created.interviewer_token });
    const cand = await joinRest(url, code, { name: "Cara" });

    const ivan = new CollabClient(cluster.urlOf("hub-1"), { code, name: "Ivan", token: int.token });
    const spy = await Recorder.join(cluster.urlOf("hub-2"), code, { name: "Cara", token: cand.token });
    assert.equal(spy.ack.ok, true, JSON.stringify(spy.ack));
    assert.equal(spy.ack.role, "candidate");
    // A second interviewer through nginx and the gateways (wherever they place the interview).
    const int2 = await joinRest(url, code, { name: "Ines", bearer: created.interviewer_token });
    const ines = new CollabClient(url, { code, name: "Ines", token: int2.token });
    try {
      assert.ok(await until(() => ivan.synced && ines.synced, 10000));
      // A forged token is refused by a hub too.
      const forged = await Recorder.join(cluster.urlOf("hub-2"), code, { name: "F", token: `${cand.token.slice(0, -4)}AAAA` });
      assert.equal(forged.ack.error.code, "unauthorized");
      forged.close();

      // The candidate can neither start the interview (socket, REST through the gateway) nor read notes.
      assert.equal((await spy.emit("start_interview", {})).error.code, "forbidden");
      assert.equal((await rest(url, "POST", `/api/session/${code}/start`, { token: cand.token })).status, 403);
      assert.equal((await new NotesClient(spy.socket).sync()).error.code, "forbidden");

      // Notes written on hub-1 reach the other interviewer; never the candidate on hub-2.
      const n1 = new NotesClient(ivan.socket);
      const n2 = new NotesClient(ines.socket);
      assert.equal((await n1.sync()).ok, true);
      assert.equal((await n2.sync()).ok, true);
      n1.text.insert(0, "private: strong on recursion");
      assert.equal((await n1.saved(1))[0].ok, true);
      assert.ok(await until(() => n2.value === "private: strong on recursion", 5000), n2.value);

      // Started by the session-API (through a gateway): the candidate on hub-2 hears it via Redis.
      const started = await rest(url, "POST", `/api/session/${code}/start`, { token: int.token });
      assert.equal(started.status, 200, JSON.stringify(started.body));
      assert.ok(await until(() => spy.events.some(([e, [p]]) => e === "interview_state" && p.state === "live"), 5000));
      ivan.text.insert(0, "print('live')\n");
      assert.ok(await until(() => ines.value === "print('live')\n", 5000));

      // Ended over the socket on hub-1: edits on every hub are refused.
      const ended = await ivan.socket.timeout(5000).emitWithAck("end_interview", {});
      assert.equal(ended.ok, true, JSON.stringify(ended));
      assert.ok(await until(() => spy.events.some(([e, [p]]) => e === "interview_state" && p.state === "ended"), 5000));
      await sleep(300);
      ines.text.insert(0, "# too late\n");
      assert.ok(await until(() => ines.errors.some((e) => e?.code === "interview_ended"), 5000), JSON.stringify(ines.errors));
      const got = spy.received();
      assert.ok(got.includes("print('live')"), "the candidate received the code");
      assert.ok(!got.includes("recursion"), "the candidate's connection received the notes");
    } finally {
      for (const c of [ivan, ines, spy]) c.close();
    }
  });

  it("the session-APIs behind both gateways count a client's creations together", async () => {
    const into = Math.floor(Date.now() / 1000) % 60;
    if (into >= 50) await sleep((61 - into) * 1000); // one calendar minute's budget
    const statuses = [];
    let refused = null;
    for (let i = 0; i < 2 * CREATES_PER_MINUTE + 2 && !refused; i++) {
      const r = await rest(cluster.url, "POST", "/api/session", { body: {} });
      statuses.push(r.status);
      if (r.status === 429) refused = r;
    }
    assert.ok(refused, `never refused: ${statuses}`);
    assert.equal(refused.body.error.code, "rate_limited");
    const wait = Number(refused.headers.get("retry-after"));
    assert.ok(wait >= 1 && wait <= 60, `Retry-After ${wait}`);
    // Counted apart, two replicas would have allowed twice the budget.
    const created = statuses.filter((s) => s === 201).length;
    assert.ok(created <= CREATES_PER_MINUTE, `${created} created: ${statuses}`);
    // Both replicas answered creations (so the budget was not one replica's alone).
    for (const api of ["session-api-1", "session-api-2"]) {
      const text = await (await fetch(`${cluster.urlOf(api)}/metrics`)).text();
      const answered = text
        .split("\n")
        .filter((l) => l.startsWith("duet_http_requests_total{") && l.includes('route="/api/session"') && l.includes('method="POST"'))
        .reduce((n, l) => n + Number(l.split(" ").pop()), 0);
      assert.ok(answered > 0, `${api} answered no creation:\n${text}`);
    }
  });
});
