// The dashboard in a real browser (issue 16's target): Debian's chromium, headless, driven by
// playwright-core. Three agents with ACL tokens on the local profile; the page asks for a token
// and shows 3 alive, with round trips to the other two, the ring agreed by all 3; a task submitted through the form with a `where`
// runs on a member with that tag (two have it: the task's copy needs one too) and shows
// succeeded, its constraint beside its key; one agent is killed with SIGKILL and its row must
// turn dead within 5 s; a task submitted through the form shows succeeded; a drained member's
// row says so. A screenshot is kept as the test's artifact (SCREENSHOT, default dashboard.png in
// the working folder).
//
// Then 500 members: the same page, served from a scripted API (the page's HTML as alpha serves
// it, the members and ring made up) shows all 500 in dense mode, the ring with 500 arcs, and a
// change from the stream on one row; it prints how long a full render of the table takes.
//
//   node dashboard.mjs /path/to/chorus [/path/to/chromium]
import { spawn, execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const chorus = process.argv[2];
const browserPath = process.argv[3] || "/usr/bin/chromium";
const screenshot = process.env.SCREENSHOT || "dashboard.png";
const work = mkdtempSync(join(tmpdir(), "chorus-dashboard-"));
const agents = [];
let browser = null;

function step(what) {
  console.log(`[${new Date().toISOString().slice(11, 19)}] ${what}`);
}
function fail(why) {
  console.log(`FAIL: ${why}`);
  for (const a of agents) {
    try {
      console.log(`== ${a.name}.log (tail)\n` + readFileSync(a.log, "utf8").split("\n").slice(-15).join("\n"));
    } catch (e) { /* not written */ }
  }
  throw new Error(why);
}
async function until(cond, seconds, why, more) {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await new Promise((done) => setTimeout(done, 100));
  }
  fail(more ? why + ": " + await more() : why);
}
// Starts an agent; resolves once its log says where it listens.
async function start(name, args) {
  const log = join(work, `${name}.log`);
  writeFileSync(log, "");
  const out = openSync(log, "a");
  const proc = spawn(chorus, ["agent", "--name", name, "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0",
    "--profile", "local", ...args], { stdio: ["ignore", out, out] });
  const agent = { name, log, proc, gossip: null, http: null };
  agents.push(agent);
  await until(() => {
    const line = readFileSync(log, "utf8").split("\n").find((l) => l.includes(" agent started "));
    if (!line) return false;
    agent.gossip = / bind=(\S+)/.exec(line)[1];
    agent.http = / http=(\S+)/.exec(line)[1];
    return true;
  }, 30, `${name} did not start`);
  return agent;
}

// An API that says there are `n` members (the page needs nothing else of it): GET / is the
// dashboard as an agent serves it; send(type, data) writes an event to the open streams.
async function bigCluster(html, n) {
  const names = Array.from({ length: n }, (_, i) => "m" + String(i).padStart(4, "0"));
  const member = (name, i) => ({ name, addr: `10.0.${i >> 8}.${i & 255}:7900`, http: "", state: "alive",
    incarnation: 1, phi: 0.1, load: (i % 10) / 10, tags: { zone: "z" + (i % 5) }, state_since_ms: 1000 });
  const view = { index: 1, members: names.map(member) };
  const ring = { checksum: "00000000000000aa", agreement: { agree: n, differ: 0, unknown: 0 }, vnodes: 64,
    candidates: 3, members: names.map((name) => ({ name, share: 1 / n, load: 0, checksum: "000000aa" })) };
  const streams = [];
  const json = (res, body) => { res.writeHead(200, { "Content-Type": "application/json" }); res.end(JSON.stringify(body)); };
  const server = createServer((req, res) => {
    const path = req.url.split("?")[0];
    if (path === "/") { res.writeHead(200, { "Content-Type": "text/html" }); res.end(html); }
    else if (path === "/v1/members") json(res, view);
    else if (path === "/v1/members/stream") {
      res.writeHead(200, { "Content-Type": "text/event-stream" });
      res.write(`event: snapshot\nid: 1\ndata: ${JSON.stringify(view)}\n\n`);
      streams.push(res);
    } else if (path === "/v1/ring") json(res, ring);
    else if (path === "/v1/self") json(res, { name: "m0000", addr: "10.0.0.0:7900", http: "", version: "test",
      config: { cluster: "big", profile: "lan" }, tasks: { handlers: ["echo"] } });
    else if (path === "/v1/health") json(res, {});
    else if (path === "/v1/tasks") json(res, { tasks: [], running: 0, queued: 0 });
    else { res.writeHead(404); res.end(); }
  });
  await new Promise((done) => server.listen(0, "127.0.0.1", done));
  return {
    port: server.address().port,
    send(type, data) {
      if (type === "member") {  // the page reads its member events against what it holds
        view.members = view.members.map((m) => m.name === data.name ? Object.assign({}, m, { state: data.state }) : m);
      }
      for (const s of streams) s.write(`event: ${type}\nid: 2\ndata: ${JSON.stringify(data)}\n\n`);
    },
    close() { for (const s of streams) s.end(); server.close(); },
  };
}

try {
  const made = execFileSync(chorus, ["tokengen", "--id", "dashboard", "--scope", "write"], { encoding: "utf8" })
    .trim().split("\n");
  const secret = made[0];
  const tokens = join(work, "tokens.json");
  const admin = execFileSync(chorus, ["tokengen", "--id", "test", "--scope", "admin"], { encoding: "utf8" })
    .trim().split("\n");
  writeFileSync(tokens, JSON.stringify({ tokens: [JSON.parse(made[1]), JSON.parse(admin[1])] }));
  const common = ["--acl-tokens", tokens];
  const a = await start("alpha", common);
  const b = await start("bravo", [...common, "--seed", a.gossip, "--tag", "role=gpu"]);
  const c = await start("charlie", [...common, "--seed", a.gossip, "--tag", "role=gpu"]);

  step("chromium opens the dashboard of alpha");
  browser = await chromium.launch({ executablePath: browserPath, headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`http://${a.http}/`);

  step("without a token it asks for one; with it, 3 members alive");
  await page.waitForSelector("#token-bar", { state: "visible", timeout: 10000 });
  await page.fill("#token", secret);
  await page.click("#token-form button");
  const alive = () => page.$$eval("#members tbody tr[data-state=alive]", (rows) => rows.length);
  await until(async () => (await alive()) === 3, 20, "the page did not show 3 alive members");
  const rtts = () => page.$$eval("#members tbody tr", (rows) =>
    rows.filter((r) => r.dataset.name !== "alpha" && /\d ms$/.test(r.querySelector("td.rtt").textContent)).length);
  await until(async () => (await rtts()) === 2, 20, "the round trips to bravo and charlie are not shown");
  const agreement = () => page.$eval("#ring-checksum", (p) => [p.dataset.agree, p.dataset.total].join("/"));
  await until(async () => (await agreement()) === "3/3", 20,
    "the ring's agreement did not reach 3 of 3 (members say their checksum on probes and acks)");

  step("a task with where role=gpu runs on bravo or charlie, the members so tagged, and says so");
  await page.fill("#task-key", "render:7");
  await page.selectOption("#task-type", "echo");
  await page.fill("#task-where", "role=gpu");
  await page.click("#submit-form button");
  const placed = () => page.$$eval('#tasks tbody tr[data-state=succeeded][data-where="role=gpu"]',
    (rows) => rows.map((r) => r.cells[4].textContent));
  await until(async () => ["bravo", "charlie"].includes((await placed())[0]), 15,
    "the task with where role=gpu did not show succeeded on bravo or charlie",
    () => page.$eval("#submit-status", (s) => s.textContent));
  await page.fill("#task-where", "");

  step("kill -9 charlie: its row turns dead within 5 s");
  const killed = Date.now();
  c.proc.kill("SIGKILL");
  await until(async () => (await page.$$eval('#members tbody tr[data-name="charlie"][data-state=dead]',
    (rows) => rows.length)) === 1, 5, "charlie's row did not turn dead within 5 s");
  step(`  dead on the page after ${((Date.now() - killed) / 1000).toFixed(1)} s`);

  step("a task submitted through the form shows succeeded");
  await page.fill("#task-key", "user:42");
  await page.selectOption("#task-type", "echo");
  await page.fill("#task-payload", '{"from":"the dashboard"}');
  await page.click("#submit-form button");
  await until(async () => (await page.$$eval("#tasks tbody tr[data-state=succeeded]",
    (rows) => rows.filter((r) => r.cells[1].textContent === "user:42").length)) === 1,
    15, "the submitted task did not show succeeded", () => page.$eval("#submit-status", (s) => s.textContent));

  step("a key lookup shows its candidates and the pick");
  await page.fill("#lookup-key", "user:42");
  await page.click("#lookup-form button");
  await until(async () => (await page.$$eval("#lookup tr.candidate", (rows) => rows.length)) >= 1, 10,
    "the key lookup showed no candidates");
  await until(async () => (await page.$$eval("#ring path", (arcs) => arcs.length)) >= 2, 10,
    "the ring has no arcs");

  step("chorus drain on bravo: its row says draining");
  execFileSync(chorus, ["drain", "--http", b.http, "--token", admin[0]], { encoding: "utf8" });
  await until(async () => (await page.$$eval('#members tbody tr[data-name="bravo"][data-draining="1"]',
    (rows) => rows.length)) === 1, 10, "bravo's row does not say draining");

  await page.screenshot({ path: screenshot, fullPage: true });
  step(`screenshot: ${screenshot}`);
  if (errors.length) fail(`the page threw: ${errors.join("; ")}`);

  step("500 members, from a scripted API: dense mode, 500 rows and arcs, a change from the stream");
  const html = await (await fetch(`http://${a.http}/`)).text();
  const big = await bigCluster(html, 500);
  const page2 = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page2.on("pageerror", (e) => errors.push(String(e)));
  const opened = Date.now();
  await page2.goto(`http://127.0.0.1:${big.port}/`);
  await until(async () => (await page2.$$eval("#members tbody tr", (r) => r.length)) === 500, 20,
    "the page did not show 500 members");
  const shown = Date.now() - opened;
  if (!(await page2.$eval("#members", (t) => t.classList.contains("dense")))) fail("500 members, not dense");
  await until(async () => (await page2.$$eval("#ring path", (arcs) => arcs.length)) === 500, 20,
    "the ring does not have 500 arcs");
  const renderMs = await page2.evaluate(() => {
    const t0 = performance.now();
    for (let i = 0; i < 10; i++) renderMembers();
    return (performance.now() - t0) / 10;
  });
  big.send("member", { name: "m0250", state: "dead" });
  await until(async () => (await page2.$$eval('#members tbody tr[data-name="m0250"][data-state=dead]',
    (rows) => rows.length)) === 1, 5, "a change from the stream did not reach its row among 500");
  step(`  500 members shown ${shown} ms after opening; a full render of the table ${renderMs.toFixed(1)} ms`);
  big.close();
  if (errors.length) fail(`the page threw: ${errors.join("; ")}`);
  console.log("PASS");
} finally {
  if (browser) await browser.close();
  for (const a of agents) a.proc.kill("SIGKILL");
  rmSync(work, { recursive: true, force: true });
}
