// The dashboard in a real browser (issue 16's target): Debian's chromium, headless, driven by
// playwright-core. Three agents with ACL tokens on the local profile; the page asks for a token
// and shows 3 alive; one agent is killed with SIGKILL and its row must turn dead within 5 s; a
// task submitted through the form must show succeeded. A screenshot is kept as the test's
// artifact (SCREENSHOT, default dashboard.png in the working folder).
//
//   node dashboard.mjs /path/to/chorus [/path/to/chromium]
import { spawn, execFileSync } from "node:child_process";
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
async function until(cond, seconds, why) {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await new Promise((done) => setTimeout(done, 100));
  }
  fail(why);
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

try {
  const made = execFileSync(chorus, ["tokengen", "--id", "dashboard", "--scope", "write"], { encoding: "utf8" })
    .trim().split("\n");
  const secret = made[0];
  const tokens = join(work, "tokens.json");
  writeFileSync(tokens, JSON.stringify({ tokens: [JSON.parse(made[1])] }));
  const common = ["--acl-tokens", tokens];
  const a = await start("alpha", common);
  await start("bravo", [...common, "--seed", a.gossip]);
  const c = await start("charlie", [...common, "--seed", a.gossip]);

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
  await until(async () => (await page.$$eval("#tasks tbody tr[data-state=succeeded]", (rows) => rows.length)) >= 1,
    15, "the submitted task did not show succeeded");

  step("a key lookup shows its candidates and the pick");
  await page.fill("#lookup-key", "user:42");
  await page.click("#lookup-form button");
  await until(async () => (await page.$$eval("#lookup tr.candidate", (rows) => rows.length)) >= 1, 10,
    "the key lookup showed no candidates");
  await until(async () => (await page.$$eval("#ring path", (arcs) => arcs.length)) >= 2, 10,
    "the ring has no arcs");

  await page.screenshot({ path: screenshot, fullPage: true });
  step(`screenshot: ${screenshot}`);
  if (errors.length) fail(`the page threw: ${errors.join("; ")}`);
  console.log("PASS");
} finally {
  if (browser) await browser.close();
  for (const a of agents) a.proc.kill("SIGKILL");
  rmSync(work, { recursive: true, force: true });
}
