// Drover dashboard. Reads the JSON API with the token from sessionStorage; live updates come
// from GET /api/v1/stream (server-sent events read with fetch, which can send the token).
// Every text from the API goes through textContent (el()), never innerHTML.
'use strict';

const state = {
  token: sessionStorage.getItem('drover-token') || '',
  role: 'viewer',
  view: 'overview',
  summary: null,
  rollouts: [],
  reasons: {},
  // Every code with its explanation (GET /api/v1/codes): reasons, conditions, phases, statuses.
  codes: { reasons: {}, conditions: {}, group_phases: {}, rollout_statuses: {} },
  // Halted groups' failing agents, by `${rollout}/${group}`, fetched once per halt.
  causes: {},
  // Each active rollout's ETA (GET /api/v1/rollouts/{id}/eta), refreshed at most every 30 s:
  // the engine run forward costs far more than a live update, so it is not sent per tick.
  etas: {},
  charts: {},
  agents: { offset: 0, limit: 50, total: 0, seq: 0, selected: null },
  stream: null,
};
// Test hooks: the browser test reads these (render counts and the last filter's latency).
window.drover = { timings: {}, renders: { summary: 0, rollouts: 0, agents: 0, events: 0, past: 0 } };

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'style') node.style.cssText = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function toast(text) {
  const t = $('toast');
  t.textContent = text;
  t.classList.add('show');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove('show'), 4000);
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { authorization: `Bearer ${state.token}`, ...(options.body ? { 'content-type': 'application/json' } : {}) },
  });
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  if (!response.ok) {
    const error = new Error(body?.error ?? `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

const isOperator = () => state.role === 'operator' || state.role === 'admin';
// Every time the API sends is UTC; the page says so where it shows one.
const time = (text) => (text ? `${text.replace('T', ' ').replace(/(\.\d+)?Z$/, '')} UTC` : '–');
// A code in words for a label ("group_unstarted" → "group unstarted"); its explanation is the title.
const words = (code) => String(code).replaceAll('_', ' ');
const explain = (kind, code) => state.codes[kind]?.[code] ?? '';

// Rebuilding a region drops keyboard focus to the page; this puts it back on the same control.
function keepingFocus(region, rebuild) {
  const active = document.activeElement;
  const key = active && active !== document.body && region.contains(active) ? focusKey(active) : null;
  rebuild();
  if (key) region.querySelector(key)?.focus({ preventScroll: true });
}

// A selector for a control by the data attributes of it and its ancestors.
function focusKey(node) {
  const parts = [];
  for (let n = node; n && n !== document.body; n = n.parentElement) {
    const attr = ['data-action', 'data-goto', 'data-agent', 'data-condition', 'data-group', 'data-channel', 'data-rollout']
      .find((a) => n.hasAttribute(a));
    if (attr) parts.unshift(`[${attr}="${CSS.escape(n.getAttribute(attr))}"]`);
  }
  return parts.length ? parts.join(' ') : null;
}

// ---- sign in ----
async function signIn(token) {
  state.token = token;
  const me = await api('/api/v1/whoami');
  state.role = me.role;
  sessionStorage.setItem('drover-token', token);
  $('whoami').textContent = `${me.name} (${me.role})`;
  document.body.dataset.role = me.role;
  $('nav').hidden = false;
  $('logout').hidden = false;
  $('live').hidden = false;
  $('login').hidden = true;
  await loadCodes();
  show(location.hash.slice(1) || 'overview');
  connectStream();
  refreshChannels();
  refreshTimeline();
  setInterval(refreshTimeline, 60_000);
}

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  $('login-error').textContent = '';
  try {
    await signIn($('token').value.trim());
    $('token').value = '';
  } catch (err) {
    $('login-error').textContent = err.status === 401
      ? 'That token is unknown or revoked. Ask an admin for one (droverctl admins create).'
      : `Cannot sign in: ${err.message}`;
  }
});
$('logout').addEventListener('click', () => { sessionStorage.removeItem('drover-token'); location.hash = ''; location.reload(); });

function show(view) {
  if (!['overview', 'rollouts', 'agents', 'events'].includes(view)) view = 'overview';
  state.view = view;
  for (const section of document.querySelectorAll('.view')) section.hidden = section.id !== view;
  for (const tab of document.querySelectorAll('.tab')) {
    if (tab.dataset.view === view) tab.setAttribute('aria-current', 'page'); else tab.removeAttribute('aria-current');
  }
  if (location.hash !== `#${view}`) history.replaceState(null, '', `#${view}`);
  if (view === 'rollouts') refreshPastRollouts();
  if (view === 'agents') loadAgents();
  if (view === 'events') loadEvents();
}
for (const tab of document.querySelectorAll('.tab')) tab.addEventListener('click', () => show(tab.dataset.view));

// ---- live stream ----
async function connectStream() {
  const live = $('live');
  for (;;) {
    try {
      const response = await fetch('/api/v1/stream', { headers: { authorization: `Bearer ${state.token}` } });
      if (!response.ok) throw new Error((await response.json().catch(() => ({}))).error ?? `HTTP ${response.status}`);
      live.textContent = 'live'; live.classList.add('on');
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let at;
        while ((at = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, at);
          buffer = buffer.slice(at + 2);
          let name = 'message'; const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) name = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
          }
          if (data.length) onStreamEvent(name, data.join('\n'));
        }
      }
    } catch (err) {
      live.textContent = `offline: ${err.message}`;
    }
    live.classList.remove('on');
    await new Promise((r) => setTimeout(r, 3000));
  }
}

function onStreamEvent(name, data) {
  const value = JSON.parse(data);
  if (name === 'summary') { renderSummary(value); agentsLive(); }
  else if (name === 'rollouts') { renderRollouts(value); agentsLive(); }
  else if (name === 'reasons') { state.reasons = value; renderRollouts(state.rollouts); }
  else if (name === 'event') {
    addEvent(value, true);
    // A channel set with droverctl changes no summary until agents move: show it now.
    if (value.kind === 'admin') refreshChannels();
  }
}

// ---- overview ----
// Green and red are kept for health, so no version or group is drawn in them.
const palette = ['#2563eb', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#4f46e5', '#92400e', '#475569'];
const healthColors = { healthy: '#16a34a', unhealthy: '#dc2626', unknown: '#9ca3af' };

// The same name gets the same colour in every chart and on every redraw (not its position).
function colorOf(name) {
  if (healthColors[name]) return healthColors[name];
  let hash = 0;
  for (const ch of String(name)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return palette[hash % palette.length];
}

// A chart with nothing to draw says so instead of an empty square.
function empty(id, isEmpty) {
  $(id).hidden = isEmpty;
  const note = document.querySelector(`[data-empty-for="${id}"]`);
  if (note) note.hidden = !isEmpty;
}

// Bar charts count agents: the axis says so.
const agentAxis = { scales: { y: { beginAtZero: true, title: { display: true, text: 'agents' }, ticks: { precision: 0 } } } };

function chart(id, type, labels, data, extra = {}) {
  empty(id, data.every((n) => !n));
  const colors = labels.map(colorOf);
  const existing = state.charts[id];
  if (existing) {
    existing.data.labels = labels;
    existing.data.datasets[0].data = data;
    existing.data.datasets[0].backgroundColor = colors;
    existing.update('none');
    return;
  }
  if (!window.Chart) return;
  state.charts[id] = new Chart($(id), {
    type,
    data: { labels, datasets: [{ data, backgroundColor: colors }] },
    // On a phone the legend goes below, or it squeezes the chart to a dot.
    options: { animation: false, responsive: true, plugins: { legend: { display: type !== 'bar', position: window.innerWidth < 640 ? 'bottom' : 'right' } }, ...extra },
  });
}

function renderSummary(summary) {
  state.summary = summary;
  $('count-total').textContent = summary.total_agents;
  $('count-connected').textContent = summary.connected_agents;
  $('count-compliance').textContent = summary.out_of_compliance;
  $('control-plane').textContent = summary.control_plane_version || 'not set';
  const versions = Object.keys(summary.by_version);
  chart('chart-version', 'doughnut', versions, versions.map((v) => summary.by_version[v]));
  $('by-version').tBodies[0].replaceChildren(...versions.map((v) =>
    el('tr', { 'data-version': v }, el('td', {}, v), el('td', { class: 'count' }, summary.by_version[v]))));
  const health = {};
  for (const row of summary.rows) health[row.health] = (health[row.health] ?? 0) + row.count;
  chart('chart-health', 'doughnut', Object.keys(health), Object.values(health));
  const groups = Object.keys(summary.by_group);
  chart('chart-group', 'bar', groups, groups.map((g) => summary.by_group[g]), agentAxis);
  renderConditions(summary.conditions ?? {});
  fillSelect($('f-version'), versions, 'any version');
  fillSelect($('f-group'), groups, 'any group');
  window.drover.renders.summary += 1;
  refreshChannels();
}

// Overview's strip: what needs a look, each a link to the agents in that condition.
const conditionOrder = ['failing', 'reverted', 'stuck', 'behind_target'];
const conditionTone = { failing: 'bad', reverted: 'bad', stuck: 'warn', behind_target: 'info' };
function renderConditions(counts) {
  const box = $('conditions');
  keepingFocus(box, () => box.replaceChildren(...conditionOrder.map((c) => {
    const n = counts[c] ?? 0;
    return el('button', { class: `card condition ${n ? conditionTone[c] : 'calm'}`, 'data-condition': c,
      title: `${explain('conditions', c)} (shows them)`, onclick: () => showCondition(c) },
    el('span', { class: 'label' }, words(c)), el('span', { class: 'value' }, n));
  })));
}

function showCondition(condition) {
  for (const id of ['f-q', 'f-version', 'f-group', 'f-health', 'f-reason']) $(id).value = '';
  $('f-condition').value = condition;
  state.agents.offset = 0;
  show('agents');
}

// Overview's banner: every active rollout, and why a halted one stopped.
function renderBanner(rollouts) {
  const box = $('rollout-banner');
  keepingFocus(box, () => box.replaceChildren(...rollouts.map((r) => {
    const status = r.paused ? 'paused' : r.status;
    const halted = r.groups.filter((g) => g.state === 'halted');
    const moving = r.groups.find((g) => ['canary', 'active'].includes(g.state));
    const detail = halted.length
      ? `halted in ${halted.map((g) => `group ${g.name}: ${g.note || g.state_explanation}`).join('; ')}`
      : r.paused ? 'paused: nobody moves until it is resumed'
        : moving ? `group ${moving.name} ${words(moving.state)}: ${moving.on_target} of ${moving.present} on target` : r.status_explanation;
    return el('div', { class: `banner ${status}`, 'data-channel': r.channel, role: 'status' },
      el('strong', {}, `Rollout on ${r.channel}: ${r.start_version} → ${r.target_version}`),
      el('span', { class: `pill status ${status}` }, words(status)),
      el('span', {}, detail),
      el('button', { class: 'link', 'data-goto': 'rollouts', onclick: () => show('rollouts') }, 'Open'));
  })));
}

function fillSelect(select, values, anyText, label = (v) => v) {
  const current = select.value;
  const have = [...select.options].map((o) => o.value).slice(1).join('\n');
  if (have === values.join('\n')) return;
  select.replaceChildren(el('option', { value: '' }, anyText), ...values.map((v) => el('option', { value: v }, label(v))));
  select.value = values.includes(current) ? current : '';
}

// At most one request at a time; a refresh asked for meanwhile runs once it is done, so a
// change is never left out.
let channelsPending = false;
let channelsAgain = false;
async function refreshChannels() {
  if (channelsPending) { channelsAgain = true; return; }
  channelsPending = true;
  channelsAgain = false;
  try {
    const channels = await api('/api/v1/channels');
    chart('chart-channel', 'bar', channels.map((c) => c.name), channels.map((c) => c.agent_count), agentAxis);
    const body = $('channels').tBodies[0];
    keepingFocus(body, () => body.replaceChildren(...channels.map((c) => el('tr', { 'data-channel': c.name },
      el('td', {}, c.name), el('td', {}, c.version || '–'), el('td', {}, c.critical ? 'yes' : 'no'),
      el('td', {}, c.agent_count),
      el('td', {}, isOperator() && !c.follows_control_plane
        ? el('button', { class: 'action', 'data-action': 'set-version', onclick: () => setChannelVersion(c) }, 'Set version…')
        : '')))));
    window.drover.renders.channels = (window.drover.renders.channels ?? 0) + 1;
  } catch (err) { toast(`Channels: ${err.message}`); }
  finally {
    channelsPending = false;
    if (channelsAgain) refreshChannels();
  }
}

async function refreshTimeline() {
  try {
    const hours = $('timeline-hours').value;
    const timeline = await api(`/api/v1/fleet/versions/timeline?hours=${hours}`);
    const versions = [...new Set(timeline.samples.flatMap((s) => Object.keys(s.versions)))].sort();
    const labels = timeline.samples.map((s) => s.at.slice(5, 16).replace('T', ' '));
    empty('chart-timeline', timeline.samples.length === 0);
    const datasets = versions.map((v) => ({
      label: v, data: timeline.samples.map((s) => s.versions[v] ?? 0),
      borderColor: colorOf(v), backgroundColor: colorOf(v), pointRadius: 0, fill: false,
    }));
    state.charts.timeline?.destroy();
    if (window.Chart) {
      state.charts.timeline = new Chart($('chart-timeline'), {
        type: 'line', data: { labels, datasets },
        options: { animation: false, responsive: true, scales: {
          x: { title: { display: true, text: 'time (UTC)' } },
          y: { beginAtZero: true, title: { display: true, text: 'agents' }, ticks: { precision: 0 } } } },
      });
    }
  } catch (err) { toast(`Timeline: ${err.message}`); }
}
$('timeline-hours').addEventListener('change', refreshTimeline);

// ---- rollouts ----
function progress(group) {
  const total = Math.max(group.present, group.initial, 1);
  const ok = group.on_target;
  const failed = group.failed;
  const inFlight = ['canary', 'active'].includes(group.state) ? Math.max(0, group.present - group.on_target - failed) : 0;
  const waiting = Math.max(0, total - ok - failed - inFlight);
  const part = (cls, n, what) => el('span', { class: cls, style: `width:${(100 * n) / total}%`, title: `${n} ${what}` });
  return el('div', {},
    el('div', { class: 'bar', role: 'img', 'aria-label': `${ok} up to date, ${inFlight} in flight, ${failed} failed, ${waiting} waiting` },
      part('ok', ok, 'up to date'), part('flight', inFlight, 'in flight'), part('failed', failed, 'failed'), part('waiting', waiting, 'waiting')),
    el('div', { class: 'legend' }, `${ok} up to date · ${inFlight} in flight · ${failed} failed · ${waiting} waiting · ${group.healthy} healthy of ${group.present}`));
}

// Why the group's agents are where they are: each reason code with its count, most first.
function reasonCounts(counts) {
  const entries = Object.entries(counts ?? {}).sort((a, b) => b[1] - a[1]);
  return el('div', { class: 'reasons legend' }, ...entries.flatMap(([reason, n], i) => [
    i ? ' · ' : '', el('span', { title: explain('reasons', reason), 'data-reason': reason }, `${n} ${words(reason)}`)]));
}

const ETA_EVERY_MS = 30_000;

// Fetches the ETAs that are missing or stale, then renders again with them.
function refreshEtas(rollouts) {
  const now = Date.now();
  for (const r of rollouts) {
    const known = state.etas[r.rollout_id];
    if (known && now - known.at < ETA_EVERY_MS) continue;
    state.etas[r.rollout_id] = { at: now, plan: known?.plan ?? null };
    api(`/api/v1/rollouts/${encodeURIComponent(r.rollout_id)}/eta`)
      .then((plan) => {
        state.etas[r.rollout_id] = { at: Date.now(), plan };
        renderRollouts(state.rollouts, false);
      })
      .catch(() => {});
  }
}

// "ETA done 2026-11-27 02:00" for the rollout (its last group's planned end), if known.
function rolloutEta(r) {
  // A stopped rollout has no ETA: it waits for an operator, and the card says why.
  if (r.status === 'halted') return ' · stopped: nothing moves until an operator resumes or rolls back';
  if (r.paused) return ' · paused: nothing moves until it is resumed';
  const groups = state.etas[r.rollout_id]?.plan?.groups ?? [];
  const last = groups[groups.length - 1];
  if (!last) return '';
  return last.done_at ? ` · ETA done ${time(last.done_at)}` : ' · ETA: no window within the plan';
}

function groupEta(r, name) {
  const planned = state.etas[r.rollout_id]?.plan?.groups?.find((g) => g.name === name);
  if (!planned) return '';
  if (r.status === 'halted' || r.paused) return '';
  const starts = planned.starts_at ? `starts ${time(planned.starts_at)}` : 'no start planned';
  // The plan's done time equals its start when the group is expected to finish in the same
  // reconcile pass; saying both would read as an error.
  const done = planned.done_at && planned.done_at !== planned.starts_at ? `, done by ${time(planned.done_at)}` : '';
  return ` · ETA ${starts}${done}`;
}

// What an unstarted group waits for, said plainly: the group before it, or (once that is
// done) its wait time or window, whose planned start the ETA gives.
function unstartedNote(r, index) {
  const g = r.groups[index];
  if (g.state !== 'unstarted' || index === 0) return '';
  const before = r.groups[index - 1];
  if (before.state !== 'done') return `waits for group ${before.name} to be done (now ${words(before.state)})`;
  return `group ${before.name} is done; waits for its wait time after it, then its window`;
}

// Why a halted group stopped: its failing agents and their errors (fetched once per halt).
function haltCause(r, g) {
  if (g.state !== 'halted') return null;
  const key = `${r.rollout_id}/${g.name}`;
  if (!(key in state.causes)) {
    state.causes[key] = null;
    const query = (c) => api(`/api/v1/agents?channel=${encodeURIComponent(r.channel)}&group=${encodeURIComponent(g.name)}&condition=${c}&limit=3`);
    Promise.all([query('failing'), query('reverted')])
      .then(([a, b]) => { state.causes[key] = [...a.agents, ...b.agents].slice(0, 3); renderRollouts(state.rollouts, false); })
      .catch(() => { delete state.causes[key]; });
  }
  const agents = state.causes[key] ?? [];
  return el('div', { class: 'cause' }, `Halted: ${g.note || g.state_explanation}`, agents.length ? '. Cause: ' : '',
    ...agents.flatMap((a, i) => [i ? '; ' : '',
      el('button', { class: 'link', 'data-agent': a.agent_id, onclick: () => { show('agents'); showAgent(a.agent_id); } }, a.agent_id),
      ` ${a.last_report ? `${a.last_report.from_version || '–'} → ${a.last_report.to_version} ${a.last_report.outcome}` : ''}${a.last_report?.error ? `: ${a.last_report.error}` : ''}`]));
}

// The active rollouts' ids last rendered, to see one end.
let shownActive = '';
function renderRollouts(rollouts, fetchEtas = true) {
  state.rollouts = rollouts;
  if (fetchEtas) refreshEtas(rollouts);
  renderBanner(rollouts);
  const box = $('active-rollouts');
  keepingFocus(box, () => renderRolloutCards(box, rollouts));
  window.drover.renders.rollouts += 1;
  // A rollout that ended moves to "Past rollouts" now, not at the next visit to the tab.
  const active = rollouts.map((r) => r.rollout_id).sort().join(' ');
  if (active !== shownActive) {
    shownActive = active;
    refreshChannels();
    if (!$('rollouts').hidden) refreshPastRollouts();
  }
}

// A group's health verdict: per signal, its change on the updated agents with anytime-valid
// bounds, the tolerance, how many agents it rests on and who moved most.
function verdictBlock(g) {
  const v = g.verdict;
  if (!v) return null;
  const unit = (signal) => ({ rss: ' %', probe_failures: ' %', cpu: ' pts', probe_latency: ' ms', restarts: '×' })[signal] ?? '';
  const num = (x, signal) => (x === null || x === undefined ? '?' : signal === 'restarts' ? x.toFixed(2) : `${x >= 0 ? '+' : ''}${x.toFixed(1)}`);
  return el('div', { class: `verdict ${v.outcome}`, 'data-verdict': v.outcome },
    el('span', { class: `pill verdict-outcome ${v.outcome}`, title: v.outcome_explanation }, `health verdict: ${words(v.outcome)}`),
    el('div', { class: 'table-scroll', tabindex: '0' },
      el('table', { class: 'verdict-signals', tabindex: '0', 'aria-label': `health verdict of group ${g.name}` },
        el('thead', {}, el('tr', {}, ...['signal', 'verdict', 'change', 'bounds', 'tolerance', 'agents', 'moved most'].map((h) => el('th', { scope: 'col' }, h)))),
        el('tbody', {}, ...v.signals.map((s) => el('tr', { 'data-signal': s.signal, 'data-outcome': s.outcome, title: s.text },
          el('td', { title: explain('health_signals', s.signal) }, words(s.signal)),
          el('td', { title: explain('verdict_outcomes', s.outcome) }, words(s.outcome)),
          el('td', {}, `${num(s.effect, s.signal)}${unit(s.signal)}`),
          el('td', {}, `${num(s.low, s.signal)} … ${num(s.high, s.signal)}`),
          el('td', {}, `${num(s.tolerance, s.signal)}${unit(s.signal)}`),
          el('td', {}, s.compared ? `${s.updated} vs ${s.compared}` : String(s.updated)),
          el('td', {}, s.worst.join(', ') || '–')))))));
}

// Who has heard the rollout's latest stop (halt, pause, rollback, held stratum), and the
// strata a failure confined to them holds.
function stopBlock(r) {
  const a = r.stop_acks;
  const held = (r.held_strata ?? []).map((h) => el('div', { class: 'cause', 'data-held-stratum': h.stratum },
    `Stratum ${h.stratum} held: ${h.note} (the other strata go on; \`droverctl rollout release-stratum\` lets it update again)`));
  if (!a) return held.length ? el('div', { class: 'stop' }, ...held) : null;
  const late = a.not_yet + a.unreachable;
  const more = late - a.stragglers.length;
  return el('div', { class: `stop${late ? ' late' : ''}`, 'data-stop-epoch': String(a.epoch), 'data-acknowledged': String(a.acknowledged), 'data-not-yet': String(a.not_yet), 'data-unreachable': String(a.unreachable) },
    ...held,
    el('div', { title: explain('ack_states', 'acknowledged') },
      `Stop ${a.epoch} (${time(a.stopped_at)}): ${a.acknowledged} acknowledged · ${a.not_yet} not yet · ${a.unreachable} unreachable`),
    a.stragglers.length ? el('div', { class: 'muted' }, 'Stragglers: ',
      ...a.stragglers.flatMap((s, i) => [i ? ', ' : '',
        el('button', { class: 'link', 'data-agent': s.agent_id, title: explain('ack_states', s.state), onclick: () => { show('agents'); showAgent(s.agent_id); } }, s.agent_id),
        ` (${words(s.state)})`]),
      more > 0 ? ` and ${more} more` : '') : null);
}

function renderRolloutCards(box, rollouts) {
  if (!rollouts.length) {
    box.replaceChildren(el('p', { class: 'muted' }, 'No active rollouts. Past ones are listed below.'));
  } else {
    box.replaceChildren(...rollouts.map((r) => {
      const actions = isOperator() ? el('div', { class: 'actions' },
        r.paused
          ? el('button', { class: 'action', 'data-action': 'resume', onclick: () => act('Resume', 'resume', { channel: r.channel }) }, 'Resume')
          : el('button', { class: 'action', 'data-action': 'pause', onclick: () => act('Pause', 'pause', { channel: r.channel }) }, 'Pause'),
        el('button', { class: 'action danger', 'data-action': 'rollback', onclick: () => act('Roll back every group', 'rollback', { channel: r.channel }) }, 'Roll back')) : null;
      const status = r.paused ? 'paused' : r.status;
      return el('article', { class: 'rollout', 'data-channel': r.channel, 'data-status': r.status, 'data-paused': String(r.paused) },
        el('div', { class: 'rollout-head' },
          el('h3', {}, `${r.channel}: ${r.start_version} → ${r.target_version}`),
          el('span', { class: `pill status ${status}`, title: explain('rollout_statuses', r.status) }, words(status)),
          el('span', { class: 'muted', 'data-eta': 'rollout' }, `${words(r.strategy)} · started ${time(r.created_at)} · ${r.rollout_id}${rolloutEta(r)}`),
          actions),
        el('p', { class: 'muted' }, r.status_explanation),
        stopBlock(r),
        ...r.groups.map((g, i) => el('div', { class: 'group', 'data-group': g.name },
          el('strong', {}, g.name),
          el('span', { class: `state ${g.state}`, title: g.state_explanation }, words(g.state)),
          el('div', {}, progress(g), reasonCounts(state.reasons[r.channel]?.[g.name])),
          isOperator() ? el('div', { class: 'actions' },
            el('button', { class: 'action', 'data-action': 'start-group', onclick: () => act(`Start group ${g.name}`, 'start-group', { channel: r.channel, group: g.name }) }, 'Start'),
            el('button', { class: 'action', 'data-action': 'mark-done', onclick: () => act(`Mark ${g.name} done`, 'mark-done', { channel: r.channel, group: g.name }) }, 'Mark done'),
            el('button', { class: 'action', 'data-action': 'rollback-group', onclick: () => act(`Roll back ${g.name}`, 'rollback', { channel: r.channel, group: g.name }) }, 'Roll back')) : el('span'),
          haltCause(r, g),
          verdictBlock(g),
          el('div', { class: 'note' },
            // A halted group's note is in its cause line above.
            g.state === 'halted' ? words(g.state) : g.note || unstartedNote(r, i) || g.state_explanation,
            g.canaries.length ? ` · canaries: ${g.canaries.join(', ')}` : '',
            g.started_at ? ` · started ${time(g.started_at)}` : '',
            g.done_at ? ` · done ${time(g.done_at)}` : '',
            ['done', 'rolledback'].includes(g.state) ? '' : groupEta(r, g.name)))));
    }));
  }
}

// Rollouts that ended; the active ones have their cards above.
async function refreshPastRollouts() {
  try {
    const page = await api('/api/v1/history/rollouts?limit=20');
    const active = new Set((state.rollouts ?? []).map((r) => r.rollout_id));
    const past = page.rollouts.filter((r) => !active.has(r.rollout_id));
    $('past-rollouts').tBodies[0].replaceChildren(...past.map((r) => el('tr', { 'data-rollout': r.rollout_id },
      el('td', {}, r.rollout_id), el('td', {}, r.channel), el('td', {}, `${r.start_version} → ${r.target_version}`),
      el('td', {}, r.status), el('td', {}, time(r.created_at)))));
    if (!past.length) {
      $('past-rollouts').tBodies[0].replaceChildren(el('tr', {}, el('td', { colspan: '5', class: 'muted' }, 'No rollout has ended yet.')));
    }
    window.drover.renders.past += 1;
  } catch (err) { toast(`Past rollouts: ${err.message}`); }
}

// ---- actions: a dry run first, its effect confirmed, then the real call ----
async function act(title, verb, body, path = `/api/v1/rollouts/${verb}`) {
  let preview;
  try {
    preview = await api(path, { method: 'POST', body: JSON.stringify({ ...body, dry_run: true }) });
  } catch (err) { toast(`${title}: ${err.message}`); return; }
  $('confirm-title').textContent = `${title}?`;
  $('confirm-summary').textContent = `${preview.effect?.summary ?? ''} (${preview.effect?.agents_affected ?? 0} agents affected)`;
  $('confirm-groups').replaceChildren(...(preview.groups ?? []).filter((g) => g.agents_affected)
    .map((g) => el('li', {}, `${g.name}: ${g.agents_affected} agents`)));
  const dialog = $('confirm');
  dialog.returnValue = '';
  dialog.showModal();
  await new Promise((resolve) => dialog.addEventListener('close', resolve, { once: true }));
  if (dialog.returnValue !== 'ok') return;
  try {
    const done = await api(path, { method: 'POST', body: JSON.stringify({ ...body, dry_run: false }) });
    toast(done.effect?.summary ?? 'Done');
  } catch (err) { toast(`${title}: ${err.message}`); }
}

function setChannelVersion(channel) {
  const version = prompt(`New version for channel ${channel.name}`, channel.version || '');
  if (version) act(`Set ${channel.name} to ${version}`, 'version', { name: channel.name, version: version.trim() }, '/api/v1/channels/version');
}

// ---- agents ----
// The codes in words, and every reason and condition to filter by, from the coordinator.
async function loadCodes() {
  try { state.codes = await api('/api/v1/codes'); } catch (err) { toast(`Codes: ${err.message}`); }
  fillSelect($('f-reason'), Object.keys(state.codes.reasons), 'any reason', words);
  fillSelect($('f-condition'), conditionOrder, 'any condition', words);
}

// While the table shows, it follows the fleet: redrawn at most once a second.
let agentsTimer = null;
function agentsLive() {
  if (state.view !== 'agents' || agentsTimer) return;
  agentsTimer = setTimeout(() => { agentsTimer = null; if (state.view === 'agents') loadAgents(); }, 1000);
}

function agentQuery() {
  const params = new URLSearchParams({ limit: state.agents.limit, offset: state.agents.offset,
    sort: $('f-sort').value, order: $('f-order').value });
  for (const [key, id] of [['q', 'f-q'], ['version', 'f-version'], ['group', 'f-group'], ['health', 'f-health'], ['reason', 'f-reason'], ['condition', 'f-condition']]) {
    const value = $(id).value.trim();
    if (value) params.set(key, value);
  }
  return params;
}

async function loadAgents() {
  const started = performance.now();
  const seq = ++state.agents.seq;
  try {
    const page = await api(`/api/v1/agents?${agentQuery()}`);
    if (seq !== state.agents.seq) return; // a newer filter won
    state.agents.total = page.total_matching;
    const body = $('agent-table').tBodies[0];
    keepingFocus(body, () => body.replaceChildren(...page.agents.map((a) => el('tr', {
      'data-agent': a.agent_id, class: a.agent_id === state.agents.selected ? 'selected' : '', tabindex: '0',
      onclick: () => showAgent(a.agent_id),
      onkeydown: (event) => { if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); showAgent(a.agent_id); } },
    },
    el('td', {}, a.agent_id), el('td', {}, a.hostname), el('td', {}, a.group), el('td', {}, a.channel),
    el('td', {}, a.agent_version || '–'), el('td', {}, a.health), el('td', { title: a.directive?.reason_explanation ?? '' }, a.directive?.reason ?? '–'),
    el('td', {}, a.connected ? 'connected' : time(a.last_seen))))));
    const first = page.agents.length ? state.agents.offset + 1 : 0;
    $('page-info').textContent = `${first}–${state.agents.offset + page.agents.length} of ${page.total_matching}`;
    $('prev').disabled = state.agents.offset === 0;
    $('next').disabled = page.next_offset == null;
    window.drover.timings.agents = performance.now() - started;
    window.drover.renders.agents += 1;
    $('agent-table').dataset.rendered = String(window.drover.renders.agents);
  } catch (err) { toast(`Agents: ${err.message}`); }
}

let searchTimer;
$('agent-filters').addEventListener('input', (event) => {
  state.agents.offset = 0;
  clearTimeout(searchTimer);
  // Typing waits a moment; a select applies at once.
  searchTimer = setTimeout(loadAgents, event.target.id === 'f-q' ? 250 : 0);
});
$('agent-filters').addEventListener('submit', (event) => event.preventDefault());
$('prev').addEventListener('click', () => { state.agents.offset = Math.max(0, state.agents.offset - state.agents.limit); loadAgents(); });
$('next').addEventListener('click', () => { state.agents.offset += state.agents.limit; loadAgents(); });

async function showAgent(id) {
  state.agents.selected = id;
  for (const row of $('agent-table').tBodies[0].rows) row.classList.toggle('selected', row.dataset.agent === id);
  const box = $('agent-detail');
  box.hidden = false;
  box.replaceChildren(el('p', { class: 'muted' }, `Loading ${id}…`));
  try {
    const enc = encodeURIComponent(id);
    const [agent, why, history] = await Promise.all([
      api(`/api/v1/agents/${enc}`), api(`/api/v1/agents/${enc}/explanation`), api(`/api/v1/agents/${enc}/history?limit=50`)]);
    const facts = [['hostname', agent.hostname], ['group', agent.group], ['channel', agent.channel], ['version', agent.agent_version || '–'],
      ['target', agent.directive?.target_version || '–'], ['health', agent.health], ['updater', `${agent.updater_state} (${agent.updater_version})`],
      ['connected', agent.connected ? 'yes' : 'no'], ['pinned', agent.pinned ? 'yes' : 'no'], ['last seen', time(agent.last_seen)]];
    box.replaceChildren(
      el('h3', {}, agent.agent_id),
      el('dl', {}, ...facts.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)])),
      el('h4', {}, 'Last decision'),
      el('p', { class: 'why' }, el('strong', {}, why.reason), ` — ${why.reason_explanation}`),
      el('p', { class: 'why-text' }, why.explanation),
      el('h4', {}, 'Update attempts'),
      history.reports.length
        ? el('table', { class: 'compact', tabindex: '0' }, el('tbody', {}, ...history.reports.map((r) => el('tr', {},
          el('td', {}, time(r.finished_at || r.started_at)), el('td', {}, `${r.from_version} → ${r.to_version}`), el('td', {}, r.outcome), el('td', {}, r.error)))))
        : el('p', { class: 'muted' }, 'None yet.'),
      el('h4', {}, 'Events'),
      el('ol', { class: 'feed' }, ...history.events.map((e) => el('li', {}, el('span', {}, time(e.at)), el('span', {}, e.kind), el('span', {}, e.text)))));
  } catch (err) { box.replaceChildren(el('p', { class: 'error' }, err.message)); }
  // The panel sits at the top of its column; a row far down the table would open it out of view.
  box.scrollIntoView({ block: 'nearest' });
}

// ---- events ----
let eventsLoaded = false;
async function loadEvents() {
  if (eventsLoaded) return;
  eventsLoaded = true;
  try {
    const events = await api('/api/v1/events?limit=100');
    for (const e of events) addEvent(e, false);
  } catch (err) { toast(`Events: ${err.message}`); eventsLoaded = false; }
}

// What an event is about: its rollout, group and agent (the agent opens its panel).
function eventSubject(e) {
  const parts = [];
  if (e.rollout_id) parts.push(el('span', { class: 'tag' }, `rollout ${e.rollout_id}`));
  if (e.group) parts.push(el('span', { class: 'tag' }, `group ${e.group}`));
  if (e.agent_id) {
    parts.push(el('button', { class: 'link', 'data-agent': e.agent_id, onclick: () => { show('agents'); showAgent(e.agent_id); } },
      `agent ${e.agent_id}`));
  }
  return parts.length ? el('span', { class: 'subject' }, ...parts) : null;
}

// The feed's filter: words that must all appear in an event's row (kind, text, rollout, group, agent).
function matchesEventFilter(li) {
  const words = $('event-filter').value.toLowerCase().split(/\s+/).filter(Boolean);
  const text = li.textContent.toLowerCase();
  return words.every((w) => text.includes(w));
}
$('event-filter').addEventListener('input', () => {
  for (const li of $('event-feed').children) li.hidden = !matchesEventFilter(li);
});

// Newest first, by event id: the history and the live stream overlap and arrive in either order.
function addEvent(e, live) {
  const feed = $('event-feed');
  const id = Number(e.event_id);
  if (feed.querySelector(`[data-event="${id}"]`)) return;
  const item = el('li', { class: live ? 'new' : '', 'data-event': String(id), 'data-kind': e.kind },
    el('span', { class: 'muted' }, time(e.at)), el('span', {}, e.kind),
    el('span', {}, e.text, e.actor ? ` (${e.actor})` : '', eventSubject(e)));
  item.hidden = !matchesEventFilter(item);
  const older = [...feed.children].find((li) => Number(li.dataset.event) < id);
  feed.insertBefore(item, older ?? null);
  while (feed.children.length > 500) feed.lastChild.remove();
  window.drover.renders.events += 1;
}

// ---- start ----
if (state.token) {
  signIn(state.token).catch(() => { sessionStorage.removeItem('drover-token'); state.token = ''; });
}
