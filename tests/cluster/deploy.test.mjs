// The deploy files name things that exist: every command docker-compose.yml and k8s/ run is a binary
// the workspace builds (and that is built), the Dockerfile builds and copies those binaries, and the
// files pass their tools' own checks: `docker-compose config` (Debian's docker-compose) and
// `kubernetes-validate --strict` (PyPI), each skipped with a message where it is not installed
// (scripts/test.sh installs both when it can).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { repo } from "./harness.mjs";

const cargoBins = (() => {
  const meta = JSON.parse(execFileSync("cargo", ["metadata", "--no-deps", "--format-version", "1"], { cwd: repo, maxBuffer: 1 << 26 }));
  const bins = new Map(); // binary → package
  for (const p of meta.packages) for (const t of p.targets) if (t.kind.includes("bin")) bins.set(t.name, p.name);
  return bins;
})();

/** Every `command:` of every container in docker-compose.yml and k8s/*.yaml: [file, service, argv]. */
function commands() {
  const out = [];
  const compose = parseAllDocuments(readFileSync(join(repo, "docker-compose.yml"), "utf8"), { merge: true })[0].toJS({ maxAliasCount: -1 });
  for (const [name, svc] of Object.entries(compose.services)) {
    // Third-party images run their own commands.
    if (svc.image?.startsWith("duet")) out.push(["docker-compose.yml", name, svc.command]);
  }
  for (const f of readdirSync(join(repo, "k8s")).filter((f) => f.endsWith(".yaml"))) {
    for (const doc of parseAllDocuments(readFileSync(join(repo, "k8s", f), "utf8"))) {
      const obj = doc.toJS();
      for (const c of obj?.spec?.template?.spec?.containers ?? []) out.push([`k8s/${f}`, c.name, c.command]);
    }
  }
  return out;
}

test("every command compose and k8s run is a binary the workspace builds, prefixed duet-", () => {
  const cmds = commands();
  assert.ok(cmds.length >= 9, `found ${cmds.length} commands`);
  for (const [file, name, argv] of cmds) {
    assert.ok(Array.isArray(argv) && argv.length > 0, `${file} ${name}: no command`);
    assert.ok(cargoBins.has(argv[0]), `${file} ${name}: ${argv[0]} is not a binary of the workspace (${[...cargoBins.keys()]})`);
    assert.match(argv[0], /^duet(-|$)/, `${file} ${name}`);
    assert.ok(existsSync(join(repo, "target", "debug", argv[0])), `${argv[0]} was not built`);
  }
});

test("the Dockerfile builds the packages of those binaries and copies each one", () => {
  const dockerfile = readFileSync(join(repo, "deploy", "Dockerfile"), "utf8");
  const built = new Set([...dockerfile.matchAll(/-p ([\w-]+)/g)].map((m) => m[1]));
  const copied = new Set([...dockerfile.matchAll(/target\/release\/([\w-]+)/g)].map((m) => m[1]));
  for (const [file, name, [bin]] of commands()) {
    assert.ok(built.has(cargoBins.get(bin)), `${file} ${name}: package ${cargoBins.get(bin)} is not built`);
    assert.ok(copied.has(bin), `${file} ${name}: ${bin} is not copied into the image`);
  }
  for (const bin of copied) assert.ok(cargoBins.has(bin), `the Dockerfile copies ${bin}, which is not built`);
});

test("docker-compose config accepts docker-compose.yml, and refuses it without SECRET_KEY", (t) => {
  if (spawnSync("docker-compose", ["version"]).status !== 0) {
    t.skip("docker-compose is not installed (apt-get install docker-compose)");
    return;
  }
  const check = (env) => spawnSync("docker-compose", ["-f", "docker-compose.yml", "config", "-q"], { cwd: repo, env, encoding: "utf8" });
  const ok = check({ ...process.env, SECRET_KEY: "test-only" });
  assert.equal(ok.status, 0, ok.stderr);
  const env = { ...process.env };
  delete env.SECRET_KEY;
  const refused = check(env);
  assert.notEqual(refused.status, 0, "a compose file with a default secret");
  assert.match(refused.stderr, /SECRET_KEY/);
});

test("kubernetes-validate --strict accepts k8s/, which commits no Secret", (t) => {
  for (const f of readdirSync(join(repo, "k8s"))) {
    for (const doc of parseAllDocuments(readFileSync(join(repo, "k8s", f), "utf8"))) {
      assert.notEqual(doc.toJS()?.kind, "Secret", `k8s/${f} commits a Secret`);
    }
  }
  const bin = process.env.KUBERNETES_VALIDATE ?? "kubernetes-validate";
  if (spawnSync(bin, ["--version"]).error) {
    t.skip("kubernetes-validate is not installed (pip install kubernetes-validate)");
    return;
  }
  const files = readdirSync(join(repo, "k8s")).filter((f) => f.endsWith(".yaml")).map((f) => join("k8s", f));
  const r = spawnSync(bin, ["--strict", "--quiet", ...files], { cwd: repo, encoding: "utf8" });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

/** Every Rust source file of the services and shared crates, tests left out: what the binaries export. */
function rustSources() {
  const out = [];
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".rs")) out.push(readFileSync(p, "utf8"));
    }
  };
  for (const top of ["services", "shared"]) {
    for (const crate of readdirSync(join(repo, top))) {
      if (existsSync(join(repo, top, crate, "src"))) walk(join(repo, top, crate, "src"));
    }
  }
  return out.join("\n");
}

test("the Grafana dashboard queries only metrics a service exports, over the provisioned Prometheus", () => {
  const dashboard = JSON.parse(readFileSync(join(repo, "deploy", "grafana", "dashboards", "duet.json"), "utf8"));
  const ds = parseAllDocuments(readFileSync(join(repo, "deploy", "grafana", "provisioning", "datasources", "prometheus.yaml"), "utf8"))[0].toJS();
  assert.equal(ds.datasources.length, 1);
  const { uid, type } = ds.datasources[0];
  assert.equal(type, "prometheus");
  const provider = parseAllDocuments(readFileSync(join(repo, "deploy", "grafana", "provisioning", "dashboards", "duet.yaml"), "utf8"))[0].toJS();
  assert.equal(provider.providers[0].type, "file");

  const exprs = [];
  for (const panel of dashboard.panels) {
    if (panel.type === "row") continue;
    assert.equal(panel.datasource?.uid, uid, `panel ${panel.title}: not the provisioned datasource`);
    assert.ok(panel.targets?.length > 0, `panel ${panel.title}: no query`);
    for (const t of panel.targets) {
      assert.equal(t.datasource?.uid, uid, `panel ${panel.title}: a query not on the provisioned datasource`);
      exprs.push(t.expr);
    }
  }
  // Histograms are queried through their series (_bucket, _sum, _count), exported under the base name.
  const names = new Set(exprs.flatMap((e) => [...e.matchAll(/\b(duet_[a-z0-9_]+)/g)].map((m) => m[1].replace(/_(bucket|sum|count)$/, ""))));
  assert.ok(names.size >= 15, `the dashboard queries ${names.size} metrics: ${[...names]}`);
  const sources = rustSources();
  for (const name of names) {
    // A name in a string literal ("name", "name{…}") or a HELP line of a hand-written exposition.
    const exported = new RegExp(`(?:"|# HELP )${name}(?:"|\\s|\\{)`).test(sources);
    assert.ok(exported, `the dashboard queries ${name}, which no service exports`);
  }
  // Each metric family a service exports with a help text is on the dashboard, too (not only the
  // easy ones): the hub's histograms at least.
  for (const name of ["duet_hub_edit_commit_seconds", "duet_hub_edit_delivery_seconds", "duet_http_request_duration_seconds"]) {
    assert.ok(names.has(name), `${name} is not on the dashboard`);
  }
});

test("deploy/prometheus.yml scrapes every service compose runs", () => {
  const prom = parseAllDocuments(readFileSync(join(repo, "deploy", "prometheus.yml"), "utf8"))[0].toJS();
  const targets = new Set(prom.scrape_configs.flatMap((c) => c.static_configs.flatMap((s) => s.targets)));
  const services = commands().filter(([file]) => file === "docker-compose.yml").map(([, name]) => name);
  assert.ok(services.length >= 6, `compose runs ${services.length} services`);
  for (const name of services) assert.ok(targets.has(`${name}:8080`), `${name} is not scraped`);
});
