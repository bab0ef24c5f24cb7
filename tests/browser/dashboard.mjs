// Drives the coordinator's dashboard in Debian's chromium (playwright-core, no downloaded
// browser). Run by tests/tests/dashboard.rs, which starts the coordinator and the fleet.
//
//   DROVER_URL=https://127.0.0.1:PORT DROVER_ADMIN_TOKEN=… DROVER_VIEWER_TOKEN=… \
//   DROVER_SCREENSHOTS=target/screenshots DROVER_MODE=full|filter \
//   DROVER_CTL=…/droverctl DROVER_CTL_ARGS='["--profile", …]' node dashboard.mjs
//
// `full` mode drives every view at 1440, 390 and 360 px (no horizontal overflow; axe-core
// finds no serious or critical violation at 1440 and 390), follows a rollout live, pauses
// it from the page, and runs droverctl (DROVER_CTL with DROVER_CTL_ARGS first) to set the
// channel `side` to a release its agents fail: the change shows on Overview within 2 s and
// the failures stay visible there.
//
// `filter` mode checks that every version and reason filter shows exactly the matching
// agents (DROVER_EXPECT_AGENTS of them in all) and measures each filter's time in the page.
// Times are checked only against DROVER_FILTER_BUDGET_MS when it is set (drover-loadgen
// dashboard sets it, at 10,000 agents): a test must not depend on how fast the machine is.
//
// Prints one JSON object on stdout (what it measured and saw); exits non-zero on any failed
// check, naming it on stderr. HTTPS errors are ignored: the coordinator's CA is its own.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`set ${name}`);
  return value;
};
const url = env('DROVER_URL');
const adminToken = env('DROVER_ADMIN_TOKEN');
const viewerToken = process.env.DROVER_VIEWER_TOKEN ?? '';
const shots = env('DROVER_SCREENSHOTS', 'target/screenshots');
const mode = env('DROVER_MODE', 'full');
const executablePath = env('DROVER_CHROMIUM', '/usr/bin/chromium');
const expectAgents = Number(env('DROVER_EXPECT_AGENTS', '10000'));
const filterBudgetMs = process.env.DROVER_FILTER_BUDGET_MS ? Number(process.env.DROVER_FILTER_BUDGET_MS) : null;

const result = { mode, screenshots: [] };
const check = (ok, what) => { if (!ok) throw new Error(`check failed: ${what}`); };
const views = ['overview', 'rollouts', 'agents', 'events'];

// droverctl, as an operator runs it; resolves once it has exited (the change is committed).
const droverctl = (...args) => new Promise((resolve, reject) => {
  const prefix = JSON.parse(process.env.DROVER_CTL_ARGS ?? '[]');
  execFile(env('DROVER_CTL'), [...prefix, ...args], (err, stdout, stderr) => (err ? reject(new Error(`droverctl ${args.join(' ')}: ${stderr}`)) : resolve(stdout)));
});

// Waits for `predicate` in the page, at most `ms`; says what it waited for if it times out.
const waitFor = async (p, what, predicate, arg, ms = 30_000) => {
  try { await p.waitForFunction(predicate, arg, { timeout: ms, polling: 50 }); } catch (err) { throw new Error(`${what}: ${err.message}`); }
};

const browser = await chromium.launch({ executablePath, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  page.on('pageerror', (err) => { result.page_errors = [...(result.page_errors ?? []), String(err)]; });
  // The Content-Security-Policy blocks anything inline or foreign: each refusal is an error.
  page.on('console', (msg) => {
    if (msg.type() === 'error' && msg.text().includes('Content Security Policy')) {
      result.page_errors = [...(result.page_errors ?? []), msg.text()];
    }
  });

  const shot = async (p, name) => {
    const path = `${shots}/${name}.png`;
    await p.screenshot({ path, fullPage: true });
    result.screenshots.push(path);
  };
  // An API call from inside the page (same origin, the browser's TLS trust).
  const call = (p, path, token, body) => p.evaluate(async ({ path, token, body }) => {
    const response = await fetch(path, {
      method: body ? 'POST' : 'GET',
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    return { status: response.status, body: await response.json().catch(() => null) };
  }, { path, token, body });

  // The page-structure rules axe-core reported as critical or serious on every view: each
  // form control has a name, no header cell is empty, and there is one visible h1.
  const namedAndTitled = async (p, where) => {
    const problems = await p.evaluate(() => {
      const visible = (e) => e.getClientRects().length > 0;
      const out = [];
      for (const c of document.querySelectorAll('select, input:not([type=hidden])')) {
        if (visible(c) && !(c.labels?.length || c.getAttribute('aria-label'))) out.push(`unnamed ${c.tagName.toLowerCase()}#${c.id}`);
      }
      for (const th of document.querySelectorAll('th')) {
        if (visible(th) && !th.textContent.trim() && !th.getAttribute('aria-label')) out.push(`empty th in #${th.closest('table')?.id}`);
      }
      const h1s = [...document.querySelectorAll('h1')].filter(visible).length;
      if (h1s !== 1) out.push(`${h1s} visible h1`);
      return out;
    });
    check(problems.length === 0, `${where}: ${problems.join('; ')}`);
  };

  // axe-core's serious and critical violations on the page as it is now.
  const axeClean = async (p, where) => {
    const violations = await p.evaluate(async (source) => {
      if (!window.axe) (0, eval)(source);
      const run = await window.axe.run(document, { resultTypes: ['violations'] });
      return run.violations.filter((v) => ['serious', 'critical'].includes(v.impact))
        .map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
    }, axeSource);
    check(violations.length === 0, `axe-core on ${where}: ${JSON.stringify(violations)}`);
  };

  // How far the page is wider than the screen, and what sticks out (innermost first).
  const overflow = (p) => p.evaluate(() => ({
    extra: document.documentElement.scrollWidth - window.innerWidth,
    wide: [...document.querySelectorAll('body *')].filter((e) => e.getClientRects().length && e.getBoundingClientRect().right > window.innerWidth + 1
      && ![...e.children].some((c) => c.getBoundingClientRect().right > window.innerWidth + 1)).slice(0, 5)
      .map((e) => `${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}.${e.className}`),
  }));

  // Every view at this page's width: a screenshot, no horizontal overflow, and (unless
  // `axe` is false) no serious or critical accessibility violation.
  const everyView = async (p, label, axe = true) => {
    const seen = {};
    for (const view of views) {
      await p.click(`[data-view=${view}]`);
      await p.waitForFunction((v) => !document.getElementById(v).hidden, view);
      if (view === 'agents') await p.waitForSelector('#agent-table tbody tr');
      if (view === 'events') await p.waitForSelector('#event-feed li');
      if (view === 'rollouts') await p.waitForSelector('article.rollout');
      await shot(p, `${label}-${view}`);
      const o = await overflow(p);
      seen[view] = o.extra;
      check(o.extra <= 0, `${label} ${view} is not wider than the screen (${o.extra} px extra; sticking out: ${o.wide})`);
      if (axe) await axeClean(p, `${label} ${view}`);
    }
    return seen;
  };

  const signIn = async (p, token) => {
    await p.goto(url);
    await p.waitForSelector('#login-form');
    // Before signing in only the form shows: no tab to click that would hide it.
    for (const hidden of ['#nav', '#logout', '#live']) {
      check(!(await p.isVisible(hidden)), `${hidden} is hidden before signing in`);
    }
    await p.fill('#token', token);
    await p.click('#login-form button[type=submit]');
    await p.waitForSelector('#nav:not([hidden])');
    await p.waitForFunction(() => window.drover.renders.summary > 0);
  };

  if (mode === 'filter') {
    await signIn(page, adminToken);
    await page.click('[data-view=agents]');
    await page.waitForFunction(() => window.drover.renders.agents > 0);
    const versions = await page.$$eval('#f-version option', (os) => os.map((o) => o.value).filter(Boolean));
    check(versions.length >= 2, `several versions to filter by: ${versions}`);
    // Time from the filter change to the rendered rows, measured in the page.
    const runs = [];
    for (const version of [...versions, '', ...versions]) {
      const ms = await page.evaluate(async (version) => {
        const before = window.drover.renders.agents;
        const select = document.getElementById('f-version');
        const started = performance.now();
        select.value = version;
        select.dispatchEvent(new Event('input', { bubbles: true }));
        while (window.drover.renders.agents === before) await new Promise((r) => setTimeout(r, 2));
        return performance.now() - started;
      }, version);
      const info = await page.textContent('#page-info');
      // The version column (the fifth) of every row shown.
      const shown = await page.$$eval('#agent-table tbody tr', (rows) => rows.map((r) => r.cells[4]?.textContent ?? ''));
      check(shown.length > 0, `agents shown for version filter '${version}': ${info}`);
      if (version) check(shown.every((v) => v === version), `only ${version} shown: ${[...new Set(shown)]}`);
      else check(info.endsWith(`of ${expectAgents}`), `every agent matches no filter: ${info}`);
      runs.push({ version: version || 'any', ms: Math.round(ms), rows: shown.length, info });
    }
    // The version filters' matches add up to the fleet.
    const matching = (info) => Number(info.split(' of ')[1]);
    const byVersion = runs.slice(0, versions.length).map((r) => matching(r.info));
    check(byVersion.reduce((a, b) => a + b, 0) === expectAgents, `version filters cover the fleet: ${byVersion}`);
    // A reason is decided in memory over every matching agent: the slow path, measured too.
    const reasonRuns = [];
    await page.selectOption('#f-version', '');
    await page.waitForFunction((n) => document.getElementById('page-info').textContent.endsWith(`of ${n}`), expectAgents);
    for (const reason of ['unknown_channel', '', 'unknown_channel']) {
      const ms = await page.evaluate(async (reason) => {
        const before = window.drover.renders.agents;
        const select = document.getElementById('f-reason');
        const started = performance.now();
        select.value = reason;
        select.dispatchEvent(new Event('input', { bubbles: true }));
        while (window.drover.renders.agents === before) await new Promise((r) => setTimeout(r, 2));
        return performance.now() - started;
      }, reason);
      reasonRuns.push({ reason: reason || 'any', ms: Math.round(ms), info: await page.textContent('#page-info') });
    }
    result.reason_runs = reasonRuns;
    result.reason_max_ms = Math.max(...reasonRuns.map((r) => r.ms));
    result.total_agents = Number(await page.textContent('#count-total'));
    result.filter_runs = runs;
    result.filter_max_ms = Math.max(...runs.map((r) => r.ms));
    check(result.total_agents === expectAgents, `${expectAgents} agents counted: ${result.total_agents}`);
    await shot(page, `agents-${expectAgents}`);
    if (filterBudgetMs !== null) {
      check(result.filter_max_ms < filterBudgetMs, `every version filter under ${filterBudgetMs} ms (max ${result.filter_max_ms} ms)`);
    }
  } else {
    // Login.
    await page.goto(url);
    await page.waitForSelector('#login-form');
    await shot(page, 'login');
    const bad = await (async () => {
      await page.fill('#token', 'not-a-token');
      await page.click('#login-form button[type=submit]');
      await page.waitForFunction(() => document.getElementById('login-error').textContent !== '');
      return page.textContent('#login-error');
    })();
    result.bad_token_message = bad;
    await signIn(page, adminToken);

    // Overview: counts change live while the rollout advances; no reload.
    await page.evaluate(() => { window.__sameDocument = true; });
    const onTarget = () => page.evaluate(() => Number(document.querySelector('#by-version tr[data-version="1.1.0"] .count')?.textContent ?? 0));
    await page.waitForFunction(() => window.Chart && document.querySelectorAll('#by-version tr').length > 0);
    const before = await onTarget();
    await shot(page, 'overview');
    await namedAndTitled(page, 'overview');
    // Colours mean something: health in green / red / grey, and a version keeps its colour.
    const colours = () => page.evaluate(() => {
      const pick = (id) => {
        const c = window.Chart.getChart(id);
        return Object.fromEntries(c.data.labels.map((l, i) => [l, c.data.datasets[0].backgroundColor[i]]));
      };
      return { health: pick('chart-health'), version: pick('chart-version') };
    });
    const coloursBefore = await colours();
    check(coloursBefore.health.healthy === '#16a34a', `healthy is green: ${JSON.stringify(coloursBefore.health)}`);
    check(['#dc2626', undefined].includes(coloursBefore.health.unhealthy), `unhealthy is red: ${JSON.stringify(coloursBefore.health)}`);
    check(Object.values(coloursBefore.version).every((c) => !['#16a34a', '#dc2626'].includes(c)),
      `no version is drawn in a health colour: ${JSON.stringify(coloursBefore.version)}`);
    const advanced = await call(page, `/api/v1/testing/clock/advance?ms=${4 * 3600 * 1000}`, adminToken, {});
    check(advanced.status === 200, `advance the rollout clock: ${JSON.stringify(advanced)}`);
    await page.waitForFunction((before) => Number(document.querySelector('#by-version tr[data-version="1.1.0"] .count')?.textContent ?? 0) > before,
      before, { timeout: 60_000 });
    const after = await onTarget();
    const coloursAfter = await colours();
    for (const [version, colour] of Object.entries(coloursAfter.version)) {
      check(!(version in coloursBefore.version) || coloursBefore.version[version] === colour,
        `version ${version} keeps its colour: ${JSON.stringify(coloursBefore.version)} then ${JSON.stringify(coloursAfter.version)}`);
    }
    result.colours = coloursAfter;
    check(await page.evaluate(() => window.__sameDocument === true), 'the page was not reloaded');
    result.overview_live = { on_target_before: before, on_target_after: after };

    // Rollouts: pause from the page (dry run shown first, then the real call).
    await page.click('[data-view=rollouts]');
    await page.waitForSelector('article.rollout[data-channel=edge]');
    // Each group's agents by reason code, live from the stream.
    // Each in words, its code kept in data-reason and explained in its title.
    await page.waitForFunction(() => /^\d+ group unstarted$/.test(document.querySelector('.group[data-group=prod] .reasons [data-reason=group_unstarted]')?.textContent ?? ''))
      .catch(async (err) => { throw new Error(`${err.message}; reasons shown: ${await page.$$eval('.reasons', (r) => r.map((x) => x.textContent))}`); });
    result.prod_reasons = await page.textContent('.group[data-group=prod] .reasons');
    // The plan's ETA: for the rollout and for the group still to come.
    await page.waitForFunction(() => /ETA/.test(document.querySelector('article.rollout[data-channel=edge] [data-eta=rollout]')?.textContent ?? '')
      && /ETA (starts|no start)/.test(document.querySelector('.group[data-group=prod] .note')?.textContent ?? ''));
    result.eta = await page.textContent('article.rollout[data-channel=edge] [data-eta=rollout]');
    await shot(page, 'rollouts');
    await namedAndTitled(page, 'rollouts');
    await page.click('article.rollout[data-channel=edge] button[data-action=pause]');
    await page.waitForSelector('#confirm[open]');
    result.pause_preview = await page.textContent('#confirm-summary');
    await shot(page, 'pause-confirm');
    await page.click('#confirm-ok');
    await page.waitForSelector('article.rollout[data-channel=edge][data-paused=true]', { timeout: 30_000 });
    // The pause is a stop: the card counts, live, who has heard it.
    await waitFor(page, 'the edge card counts the pause acknowledged by every connected updater', () => {
      const s = document.querySelector('article.rollout[data-channel=edge] .stop[data-stop-epoch]');
      return s && Number(s.dataset.acknowledged) > 0 && s.dataset.notYet === '0';
    });
    result.stop = await page.$eval('article.rollout[data-channel=edge] .stop', (s) => ({ ...s.dataset, text: s.textContent }));
    const status = await call(page, '/api/v1/rollouts?channel=edge', adminToken);
    check(status.body?.[0]?.paused === true, `paused over HTTP: ${JSON.stringify(status.body)}`);
    const audit = await call(page, '/api/v1/audit?limit=100', adminToken);
    const pauses = (audit.body ?? []).filter((a) => a.action === 'PauseRollout');
    check(pauses.some((a) => a.result === 'ok' || a.result === 'changed'), `the pause audited: ${JSON.stringify(pauses)}`);
    check(pauses.some((a) => a.result === 'dry_run'), `the pause's dry run audited: ${JSON.stringify(pauses)}`);
    result.audit = pauses.map((a) => ({ actor: a.actor, role: a.role, result: a.result }));
    // "Past rollouts" lists rollouts that ended, not the one whose card is above.
    const activeId = status.body?.[0]?.rollout_id;
    await page.waitForFunction(() => window.drover.renders.past > 0);
    const past = await page.$$eval('#past-rollouts tbody tr', (rows) => rows.map((r) => r.dataset.rollout));
    check(activeId && !past.includes(activeId), `the active rollout ${activeId} is not among past rollouts: ${past}`);

    // A live update rebuilds the card; keyboard focus stays on the control it was on.
    await page.focus('article.rollout[data-channel=edge] button[data-action=rollback]');
    for (const [verb, paused] of [['resume', 'false'], ['pause', 'true']]) {
      const before = await page.evaluate(() => window.drover.renders.rollouts);
      const done = await call(page, `/api/v1/rollouts/${verb}`, adminToken, { channel: 'edge', dry_run: false });
      check(done.status === 200, `${verb} over HTTP: ${JSON.stringify(done)}`);
      await waitFor(page, `the card redrawn ${verb}d`, ([b, p]) => window.drover.renders.rollouts > b
        && document.querySelector(`article.rollout[data-channel=edge][data-paused=${p}]`), [before, paused]);
      const focused = await page.evaluate(() => {
        const a = document.activeElement;
        return `${a?.closest('article')?.dataset.channel}/${a?.dataset.action}`;
      });
      check(focused === 'edge/rollback', `focus stays on edge's Roll back through a live redraw (${verb}): on ${focused}`);
    }

    // Overview names the active rollout, paused.
    await page.click('[data-view=overview]');
    await waitFor(page, 'the banner shows edge paused', () => document.querySelector('#rollout-banner .banner.paused[data-channel=edge]'));
    result.banner = await page.textContent('#rollout-banner');

    // A change made with droverctl shows within 2 s: the side channel's 10 agents are served
    // a release (1.1.1) they do not run, so they count in the strip at once.
    const needsLook = () => page.evaluate(() => Object.fromEntries([...document.querySelectorAll('#conditions [data-condition]')]
      .map((b) => [b.dataset.condition, Number(b.querySelector('.value').textContent)])));
    const lookBefore = await needsLook();
    const sum = (c) => Object.values(c).reduce((a, b) => a + b, 0);
    await droverctl('channels', 'set', 'side', '1.1.1');
    const changed = Date.now();
    await waitFor(page, 'the side channel change on Overview within 2 s', (want) => [...document.querySelectorAll('#conditions .value')]
      .reduce((a, v) => a + Number(v.textContent), 0) >= want, sum(lookBefore) + 10, 2000);
    result.droverctl_shown_ms = Date.now() - changed;
    // Every side agent fails its install and reverts: the failures stay on Overview.
    await waitFor(page, 'the side agents failing on Overview', () => {
      const n = (c) => Number(document.querySelector(`#conditions [data-condition=${c}] .value`)?.textContent ?? 0);
      return n('failing') + n('reverted') >= 10;
    }, undefined, 90_000);
    result.needs_a_look = await needsLook();
    await shot(page, 'overview-failing');
    await axeClean(page, 'overview with failures');
    // Its card leads to exactly those agents.
    const worst = result.needs_a_look.reverted >= result.needs_a_look.failing ? 'reverted' : 'failing';
    await page.click(`#conditions [data-condition=${worst}]`);
    await waitFor(page, `the agents ${worst}`, (n) => document.getElementById('page-info').textContent.endsWith(`of ${n}`)
      && [...document.querySelectorAll('#agent-table tbody tr')].every((r) => r.cells[3].textContent === 'side'), result.needs_a_look[worst]);
    check(await page.inputValue('#f-condition') === worst, `the filter says ${worst}`);
    // The table follows the fleet without a click: the channel goes back, the failures end.
    await droverctl('channels', 'set', 'side', '1.0.0');
    await waitFor(page, 'the filtered table empties live', () => document.getElementById('page-info').textContent.endsWith('of 0'), undefined, 15_000);
    await page.selectOption('#f-condition', '');

    // A rollout whose canary fails halts; the card and Overview's banner say why, naming
    // the canary and its error.
    await droverctl('rollout', 'create', '--channel', 'side', '--from', '1.0.0', '--to', '1.1.1', '--group', 'dev:canaries=1');
    await page.click('[data-view=rollouts]');
    await waitFor(page, 'the side rollout halted with its cause', () => {
      const cause = document.querySelector('article.rollout[data-channel=side][data-status=halted] .group[data-group=dev] .cause');
      return cause?.querySelector('button[data-agent]') && /1\.1\.1 (failed|reverted)/.test(cause.textContent);
    }, undefined, 60_000);
    result.halt_cause = await page.textContent('article.rollout[data-channel=side] .cause');
    // The edge fleet sends health samples: its done group shows the verdict it passed, signal
    // by signal, with bounds and the agents it rests on.
    await waitFor(page, "edge's dev group shows its health verdict", () =>
      document.querySelectorAll('article.rollout[data-channel=edge] .group[data-group=dev] .verdict[data-verdict=pass] tr[data-signal]').length >= 4);
    result.verdict_rows = await page.$$eval('article.rollout[data-channel=edge] .group[data-group=dev] .verdict tr[data-signal]',
      (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
    check(/no window|ETA/.test(await page.textContent('article.rollout[data-channel=side] [data-eta=rollout]')) === false,
      'a halted rollout gives no ETA');
    await shot(page, 'rollouts-halted');
    await page.click('[data-view=overview]');
    await waitFor(page, 'the banner shows side halted', () => /canary side-\d+ (\(stratum [^)]*\) )?failed/.test(document.querySelector('#rollout-banner .banner.halted[data-channel=side]')?.textContent ?? ''));

    // Agents and one agent's detail.
    await page.click('[data-view=agents]');
    await page.waitForSelector('#agent-table tbody tr');
    await shot(page, 'agents');
    await namedAndTitled(page, 'agents');
    // By keyboard, from the last row (the page scrolled down to it): the panel opens in view.
    await page.focus('#agent-table tbody tr:last-child');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#agent-detail .why');
    const panelTop = await page.$eval('#agent-detail h3', (e) => {
      const r = e.getBoundingClientRect();
      return { top: r.top, bottom: r.bottom, viewport: window.innerHeight, rows: document.querySelectorAll('#agent-table tbody tr').length };
    });
    check(panelTop.top >= 0 && panelTop.bottom <= panelTop.viewport, `the agent panel opens with its heading in view: ${JSON.stringify(panelTop)}`);
    result.agent_detail_why = await page.textContent('#agent-detail .why');
    // The sentence in plain words that the API sends as `explanation`.
    result.agent_detail_explanation = (await page.textContent('#agent-detail .why-text')).trim();
    check(result.agent_detail_explanation.length > 0 && result.agent_detail_explanation !== 'undefined',
      `the agent panel says why in words: '${result.agent_detail_explanation}'`);
    await shot(page, 'agent-detail');

    // Events, live: the pause is in the feed.
    await page.click('[data-view=events]');
    await page.waitForFunction(() => document.querySelectorAll('#event-feed li').length > 0);
    await shot(page, 'events');
    await namedAndTitled(page, 'events');
    result.events_shown = await page.$$eval('#event-feed li', (li) => li.length);
    const order = await page.$$eval('#event-feed li', (li) => li.map((x) => Number(x.dataset.event)));
    check(order.every((id, i) => i === 0 || order[i - 1] > id), `events newest first: ${order.slice(0, 20)}`);
    // Each event names what it is about, and the feed filters.
    const subjects = await page.$$eval('#event-feed .subject', (s) => s.map((x) => x.textContent));
    check(subjects.some((t) => /rollout r-/.test(t)), `events name their rollout: ${subjects.slice(0, 5)}`);
    const kind = await page.$eval('#event-feed li', (li) => li.dataset.kind);
    await page.fill('#event-filter', kind);
    const rows = await page.$$eval('#event-feed li', (li) => li.map((x) => ({ kind: x.dataset.kind, hidden: x.hidden, text: x.textContent.toLowerCase() })));
    check(rows.filter((r) => !r.hidden).length > 0 && rows.filter((r) => !r.hidden).every((r) => r.text.includes(kind)),
      `the filter '${kind}' keeps only rows that name it`);
    check(new Set(rows.map((r) => r.kind)).size === 1 || rows.some((r) => r.hidden), `the filter '${kind}' hides the others`);
    result.events_filtered = { kind, shown: rows.filter((r) => !r.hidden).length, of: rows.length };
    await page.fill('#event-filter', '');

    // Every view at 1440 px, then on phones of 390 and 360 px: no overflow, axe clean.
    result.overflow = { desktop: await everyView(page, 'desktop') };
    const phoneContext = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 390, height: 844 } });
    const phone = await phoneContext.newPage();
    await signIn(phone, adminToken);
    result.overflow.phone = await everyView(phone, 'phone');
    const small = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 360, height: 740 } });
    const smallPage = await small.newPage();
    await signIn(smallPage, adminToken);
    result.overflow.small_phone = await everyView(smallPage, 'phone-360', false);
    await small.close();
    // A confirm on the phone: its buttons are on the screen (dry run only; cancelled).
    await phone.click('[data-view=rollouts]');
    await phone.click('article.rollout[data-channel=edge] button[data-action=resume]');
    await phone.waitForSelector('#confirm[open]');
    await shot(phone, 'phone-confirm');
    const offScreen = await phone.$$eval('#confirm menu button', (buttons) => buttons.filter((b) => {
      const r = b.getBoundingClientRect();
      return r.left < 0 || r.top < 0 || r.right > window.innerWidth || r.bottom > window.innerHeight;
    }).map((b) => b.textContent));
    check(offScreen.length === 0, `the confirm's buttons are on a 390 px screen: off screen ${offScreen}`);
    await phone.click('#confirm menu button[value=cancel]');
    await phoneContext.close();

    // A viewer: no action buttons anywhere, and a forged POST is refused.
    const viewerContext = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1440, height: 900 } });
    const viewer = await viewerContext.newPage();
    await signIn(viewer, viewerToken);
    await viewer.click('[data-view=rollouts]');
    await viewer.waitForFunction(() => window.drover.renders.rollouts > 0);
    await viewer.waitForSelector('#channels tbody tr');
    result.viewer_action_buttons = await viewer.$$eval('button.action, [data-action]', (b) => b.length);
    await shot(viewer, 'rollouts-viewer');
    check(result.viewer_action_buttons === 0, `a viewer sees no action buttons (${result.viewer_action_buttons})`);
    const forged = await call(viewer, '/api/v1/rollouts/resume', viewerToken, { channel: 'edge', dry_run: false });
    result.viewer_forged_post = forged;
    check(forged.status === 403, `a viewer's forged POST is refused: ${JSON.stringify(forged)}`);
  }
  check(!result.page_errors, `no script errors in the page: ${result.page_errors}`);
  result.ok = true;
} catch (err) {
  result.ok = false;
  result.error = String(err?.stack ?? err);
  process.exitCode = 1;
  console.error(result.error);
} finally {
  await browser.close();
  console.log(JSON.stringify(result));
}
