// Scale-out under faults, on the native cluster of scripts/cluster.sh (nginx → 2 gateways → 2 hubs and
// 2 session-APIs, PostgreSQL, Redis): a hub killed, a gateway killed (also one frozen first, holding
// requests), both gateways restarted, nginx reloaded, Redis and PostgreSQL restarted, a third hub
// joining and leaving. Real socket.io-client + Yjs participants type through nginx all along (one
// WebSocket and one long-polling client per interview, with the browser client's reconnection
// settings); after each fault every acknowledged edit must be in the document a fresh participant
// loads, and each scenario asserts its own figures.
//
// The figures that depend on the hub's drain (a stopping hub deregistering and refusing handshakes at
// once: ≤ 1 reconnect and ≤ 3 s per client on a rolling restart) are in drain.test.mjs.
import { describe, it, before, after } from "node:test";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import assert from "node:assert/strict";
import { Cluster, Workload, pollHttp, BROWSER_SOCKET } from "./harness.mjs";
import { CollabClient, sleep, until } from "../js/collab/client.mjs";

/** Issue 16's target: from a hub's (or gateway's) death to every affected client resynced. */
const FAILOVER_MS = 3000;

const cluster = new Cluster();
let work;
const figures = {};

async function noLoss(label) {
  const r = await work.settle();
  assert.deepEqual(r.lost, [], `${label}: acknowledged edits lost`);
  assert.ok(r.acked > 0, `${label}: nothing was acknowledged`);
  work.resume();
  return r;
}

describe("scale-out on the native cluster", { timeout: 300_000 }, () => {
  before(async () => {
    await cluster.start();
    work = new Workload(cluster);
    await work.start();
    await sleep(500);
  });

  after(async () => {
    console.log(`cluster figures: ${JSON.stringify(figures)}`);
    work?.close();
    await cluster.stop();
  });

  const withLogs = (fn) => async () => {
    try {
      await fn();
    } catch (e) {
      console.log(cluster.logs());
      throw e;
    }
  };

  it("a hub killed (-9): its interviews fail over within 3 s, nothing acknowledged is lost, and its return moves nothing", withLogs(async () => {
    const placed = new Map();
    for (const code of work.codes) placed.set(code, await cluster.placement(code));
    const counts = ["hub-1", "hub-2"].map((h) => [...placed.values()].filter((p) => p === h).length);
    const victim = counts[0] >= counts[1] ? "hub-1" : "hub-2";
    const survivor = victim === "hub-1" ? "hub-2" : "hub-1";
    const affected = work.clients.filter((c) => placed.get(c.code) === victim);
    assert.ok(affected.length > 0, `no interview on ${victim}: ${JSON.stringify([...placed])}`);

    const t0 = Date.now();
    await cluster.kill(victim, "KILL");
    const took = await work.resyncTime(affected, t0, 15000);
    figures.hubKill = { clients: affected.length, resyncMs: work.lastResync };
    assert.ok(took !== null, "affected clients did not resync within 15 s");
    assert.ok(took <= FAILOVER_MS, `failover took ${took} ms`);
    // The other hub's interviews were not touched.
    const others = work.disconnectsSince(t0).filter((d) => placed.get(d.code) !== victim);
    assert.deepEqual(others, []);
    // The moved interviews are placed on the survivor now.
    for (const code of new Set(affected.map((c) => c.code))) assert.equal(await cluster.placement(code), survivor);
    await noLoss("hub killed");

    // The hub comes back: placed interviews stay where they are, nobody is disconnected.
    const t1 = Date.now();
    await cluster.up(victim);
    await sleep(3000);
    assert.deepEqual(work.disconnectsSince(t1), [], "a hub joining moved live interviews");
    await noLoss("hub back");
  }));

  it("a gateway killed (-9): its clients reconnect through the other within 3 s, no request fails", withLogs(async () => {
    const http = pollHttp(`${cluster.url}/api/languages`);
    const t0 = Date.now();
    await cluster.kill("gateway-1", "KILL");
    await until(() => work.disconnectsSince(t0).length > 0, 3000);
    await sleep(200);
    const affected = [...new Set(work.disconnectsSince(t0).map((d) => d.client))].map((n) => work.clients.find((c) => c.name === n));
    const took = await work.resyncTime(affected, t0, 15000);
    figures.gatewayKill = { clientsDisconnected: affected.length, resyncMs: work.lastResync };
    assert.ok(took !== null && took <= FAILOVER_MS, `resync took ${took} ms`);
    await sleep(1000);
    const r = await http.stop();
    figures.gatewayKill.http = r.counts;
    assert.deepEqual(r.failures, [], "requests through nginx failed while a gateway was dead");
    await noLoss("gateway killed");
    await cluster.up("gateway-1");
  }));

  it("a gateway frozen, then killed (-9), holding long-poll requests: nginx resends them (POSTs too) to the other, no long-polling client disconnects", withLogs(async () => {
    // Frozen (SIGSTOP), the gateway still completes TCP handshakes (the kernel does), so nginx sends
    // it requests that it never reads; killed, it resets them. nginx resends each to the other gateway
    // — a POST too (`non_idempotent` in deploy/nginx.conf), which the hub takes once (same `t`).
    const errorLog = join(cluster.dir, "nginx.error.log");
    const logFrom = statSync(errorLog).size;
    const t0 = Date.now();
    process.kill(Number(readFileSync(join(cluster.dir, "gateway-1.pid"), "utf8")), "SIGSTOP");
    await sleep(800);
    await cluster.kill("gateway-1", "KILL");
    await sleep(1500);
    const resets = readFileSync(errorLog, "utf8")
      .slice(logFrom)
      .split("\n")
      .filter((l) => /reset by peer|prematurely closed/.test(l) && /transport=polling/.test(l));
    const resentPosts = resets.filter((l) => /request: "POST /.test(l)).length;
    const polling = work.disconnectsSince(t0).filter((d) => d.client.startsWith("polling-"));
    figures.gatewayFrozen = { resetRequests: resets.length, resentPosts, pollingDisconnects: polling.length };
    assert.ok(resentPosts > 0, `no long-poll POST was held by the frozen gateway (${resets.length} requests were)`);
    assert.deepEqual(polling, [], "long-polling clients disconnected");
    assert.ok(await until(() => work.clients.every((c) => c.joined && c.synced), FAILOVER_MS), "clients did not come back");
    await noLoss("gateway frozen and killed");
    await cluster.up("gateway-1");
  }));

  it("both gateways restarted: nginx sends traffic as soon as one is back (no 'no live upstreams')", withLogs(async () => {
    // Traffic all along, as in production: with max_fails/fail_timeout, the failures while both were
    // away would keep nginx from using them for fail_timeout after they are back.
    const http = pollHttp(`${cluster.url}/api/languages`, 20);
    await sleep(300);
    // A stopping gateway closes its WebSockets at once (their clients reconnect through the other)
    // and waits at most 3 s for requests in flight.
    const t0 = Date.now();
    await Promise.all([cluster.kill("gateway-1", "TERM"), cluster.kill("gateway-2", "TERM")]);
    const stopMs = Date.now() - t0;
    await sleep(1500);
    await Promise.all([cluster.up("gateway-1"), cluster.up("gateway-2")]);
    const back = Date.now();
    await sleep(2500);
    const r = await http.stop();
    const afterBack = r.failures.filter((f) => f.at >= back);
    figures.gatewaysBack = { stopMs, http: r.counts, failuresWhileDown: r.failures.length - afterBack.length, failuresAfterBack: afterBack.length };
    assert.ok(stopMs <= 6000, `the gateways took ${stopMs} ms to stop`);
    assert.ok(r.failures.length > 0, "both gateways were down: requests must have failed then");
    assert.deepEqual(afterBack, [], "requests failed after both gateways were back");
    assert.ok(await until(() => work.clients.every((c) => c.joined && c.synced), 10000), "clients did not come back");
    await noLoss("gateways restarted");
  }));

  it("nginx reloaded: no client disconnects, no request fails", withLogs(async () => {
    const http = pollHttp(`${cluster.url}/api/languages`, 20);
    const t0 = Date.now();
    await cluster.sh("reload-nginx");
    await sleep(2000);
    const r = await http.stop();
    figures.nginxReload = { http: r.counts, disconnects: work.disconnectsSince(t0).length };
    assert.deepEqual(r.failures, []);
    assert.deepEqual(work.disconnectsSince(t0), []);
    await noLoss("nginx reloaded");
  }));

  it("Redis restarted: no 502 for new participants, no disconnects, placements written again", withLogs(async () => {
    const placed = new Map();
    for (const code of work.codes) placed.set(code, await cluster.placement(code));
    const t0 = Date.now();
    await cluster.kill("redis", "TERM");
    // A new participant joins while Redis is away: the gateways still know the hubs.
    const during = new CollabClient(cluster.url, { code: work.codes[0], name: "during", socketOptions: BROWSER_SOCKET });
    assert.ok(await until(() => during.joined && during.synced, 5000), `join without Redis: ${JSON.stringify(during.errors)}`);
    await sleep(1000);
    await cluster.up("redis");
    // Back, empty: joins keep working while the hubs re-register.
    const after = new CollabClient(cluster.url, { code: work.codes[1], name: "after", socketOptions: BROWSER_SOCKET });
    assert.ok(await until(() => after.joined && after.synced, 5000), `join after Redis restart: ${JSON.stringify(after.errors)}`);
    during.close();
    after.close();
    // Every live interview's record is back (renewed by the gateways carrying it), on the same hub.
    let same = false;
    const end = Date.now() + 15000;
    while (Date.now() < end && !same) {
      same = true;
      for (const code of work.codes) if ((await cluster.placement(code)) !== placed.get(code)) same = false;
      if (!same) await sleep(250);
    }
    figures.redisRestart = { disconnects: work.disconnectsSince(t0).length, placementsBackMs: Date.now() - t0 };
    assert.ok(same, "placement records did not come back as they were");
    assert.deepEqual(work.disconnectsSince(t0), []);
    await noLoss("Redis restarted");
  }));

  it("PostgreSQL restarted: edits wait, then every one is acknowledged and kept", withLogs(async () => {
    const t0 = Date.now();
    await cluster.kill("postgres", "TERM");
    await sleep(2000);
    await cluster.up("postgres");
    const r = await noLoss("PostgreSQL restarted");
    figures.postgresRestart = { disconnects: work.disconnectsSince(t0).length, acked: r.acked };
  }));

  it("a third hub joins (live interviews stay, new ones may go there) and leaves (its clients move, nothing lost)", withLogs(async () => {
    const t0 = Date.now();
    await cluster.up("hub-3");
    await sleep(2500);
    assert.deepEqual(work.disconnectsSince(t0), [], "a hub joining moved live interviews");
    // New interviews are spread over three hubs now: a third of them go to hub-3 (40 tries leave a
    // chance of (2/3)^40 ≈ 1e-7 of none doing so).
    let onThird = null;
    for (let i = 0; i < 40 && !onThird; i++) {
      const code = await cluster.createInterview();
      const c = new CollabClient(cluster.url, { code, name: "newcomer", socketOptions: BROWSER_SOCKET });
      assert.ok(await until(() => c.joined && c.synced, 5000), `join: ${JSON.stringify(c.errors)}`);
      if ((await cluster.placement(code)) === "hub-3") onThird = code;
      c.close();
    }
    if (onThird) {
      work.codes.push(onThird);
      work.add(onThird);
      work.add(onThird, ["polling"]);
      assert.ok(await until(() => work.of(onThird).every((c) => c.joined && c.synced), 5000));
      assert.equal(await cluster.placement(onThird), "hub-3", "the interview stays on hub-3");
    }
    assert.ok(onThird, "no new interview went to the new hub");
    await noLoss("hub joined");

    const t1 = Date.now();
    const affected = work.clients.filter((c) => c.code === onThird);
    await cluster.kill("hub-3", "TERM");
    const took = await work.resyncTime(affected, t1, 30000);
    figures.hubLeave = { resyncMs: took, reconnects: work.disconnectsSince(t1).length };
    assert.ok(took !== null, "the leaving hub's clients did not come back");
    assert.notEqual(await cluster.placement(onThird), "hub-3");
    await noLoss("hub left");
  }));
});
