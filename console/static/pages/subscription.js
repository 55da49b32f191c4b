// A subscription, for an admin or its customer: live balance and grants,
// usage (chart and by feature), the invoice (+CSV), the ledger, and the
// forms Credit top-up (both), Credit adjustment and Spend check (admin); the
// lifecycle, pending top-ups and auto-recharge are lifecycle.js's.
// The page polls every 2 s while the tab is visible; pageSubscription
// returns the function that stops it.
import { h, s, field, input, options, checkbox, errorP, banner, formError, clearErrors, showError, val, checked, page } from '../dom.js';
import { toBig, fromBig, fmt, money } from '../decimal.js';
import { when, limitsText } from '../format.js';
import { API, api, get, key } from '../api.js';
import { store } from '../session.js';
import { lifecycleRows, lifecycleForms, pendingView, autoRechargeView } from './lifecycle.js';

export async function pageSubscription(id, admin) {
  const ctx = await load(id, admin);
  const views = {
    balance: balanceView(ctx),
    ledger: ledgerView(ctx),
    invoice: invoiceView(ctx),
  };
  views.usage = usageView(ctx, views.ledger.entries);
  views.autoRecharge = autoRechargeView(ctx);
  const live = poller(ctx, views);
  views.pending = pendingView(ctx, live.refresh);
  views.autoRecharge.attach(views.pending.add);
  const forms = [topUpForm(ctx, live.refresh, views.pending.add)];
  if (admin) forms.push(adjustmentForm(ctx, live.refresh), checkForm(ctx));
  layout(ctx, views, forms, admin ? lifecycleForms(ctx) : []);
  live.poll();
  return live.stop;
}

// load reads what the page is about: the subscription, its plan (credit
// currency, value, limits) and the features (names for the usage report).
async function load(id, admin) {
  const enc = encodeURIComponent(id);
  const sub = await get('/subscriptions/' + enc);
  const plan = await get('/plans/' + encodeURIComponent(sub.plan_id));
  const pp = plan.prepaid || {};
  const code = pp.credit_currency || '';
  const cv = sub.credit_value || ((pp.currency_values || []).find((x) => x.currency === sub.currency) || {}).value;
  const features = await get('/features').then((r) => r.data).catch(() => []);
  const featureName = (fid) => { const f = features.find((x) => x.id === fid); return f ? f.name : fid; };
  return { enc, admin, sub, plan, pp, code, cv, featureName };
}

function layout({ admin, sub, plan, code, cv }, views, forms, lifecycle) {
  const crumbs = admin
    ? h('span', {}, h('a', { href: '#/customers' }, 'Customers'), ' › ', h('a', { href: '#/customers/' + encodeURIComponent(sub.customer_id) }, sub.customer_id), ' › Subscription')
    : h('span', {}, h('a', { href: '#/my' }, 'My subscriptions'));
  const headings = (list, num) => h('thead', {}, h('tr', {}, list.map((t, i) => h('th', { class: num.includes(i) ? 'num' : null }, t))));
  page('Subscription ' + sub.id, crumbs,
    h('div', { class: 'card' }, h('dl', { class: 'kv', id: 'subscription-summary' },
      h('dt', {}, 'Plan'), h('dd', {}, plan.name + ' (' + plan.id + ')'), h('dt', {}, 'Product'), h('dd', {}, sub.product || plan.product),
      h('dt', {}, 'Credit value'), h('dd', { id: 'sub-value' }, '1 ' + code + ' = ' + money(cv, sub.currency)),
      h('dt', {}, 'Started'), h('dd', {}, when(sub.start_at)), lifecycleRows(sub, admin))),
    h('section', { class: 'card', 'aria-labelledby': 'balance-h' }, h('h2', { id: 'balance-h' }, 'Balance'), views.balance.error, views.balance.stats, views.balance.updated),
    h('div', { class: 'row' }, forms),
    views.pending.card, views.autoRecharge.card,
    lifecycle.length ? h('div', { class: 'row' }, lifecycle) : null,
    h('section', { class: 'card', 'aria-labelledby': 'usage-h' }, h('h2', { id: 'usage-h' }, 'Usage'), views.usage.chart, views.usage.byFeature),
    views.invoice.card,
    h('section', { class: 'card', 'aria-labelledby': 'grants-h' }, h('h2', { id: 'grants-h' }, 'Grants (in burn-down order)'),
      h('table', { id: 'grants' }, headings(['Grant', 'Type', 'Amount', 'Remaining', 'Effective', 'Expires'], [2, 3]), views.balance.grantsBody)),
    h('section', { class: 'card', 'aria-labelledby': 'ledger-h' }, h('h2', { id: 'ledger-h' }, 'Ledger (newest first)'),
      h('table', { id: 'ledger' }, headings(['Seq', 'Time', 'Kind', 'Amount', 'Balance after', 'Details'], [0, 3, 4]), views.ledger.body)));
}

// ---------- live refresh ----------

// poller refreshes the balance and the ledger every 2 s while the tab is
// visible. The usage report is archived a moment after the balance changes:
// it is asked again for a few polls after the ledger grows, and every 30 s;
// the invoice too when the ledger grows; the auto-recharge when the ledger
// grows and every 10 s (a failed attempt adds no entry).
function poller({ enc }, { balance, ledger, usage, invoice, autoRecharge }) {
  let stopped = false, timer = null, usageDue = 1, polls = 0, invoiceDue = true, arPolls = 0;
  async function refresh() {
    try {
      const before = ledger.lastSeq();
      const [b] = await Promise.all([get('/subscriptions/' + enc + '/balance'), ledger.load()]);
      if (stopped) return;
      balance.error.textContent = '';
      balance.render(b); ledger.render();
      if (ledger.lastSeq() !== before) usageDue = 3;
      if (ledger.lastSeq() !== before || ++arPolls % 5 === 0) autoRecharge.load();
      if (usageDue > 0 || polls++ % 15 === 0 || usage.source() !== 'usage') {
        if (usageDue > 0 && !invoice.card.hidden) invoiceDue = true;
        usageDue = Math.max(0, usageDue - 1);
        const u = await usage.load();
        if (stopped) return;
        usage.render(u);
      }
      if (invoiceDue) { invoiceDue = false; invoice.load(); }
    } catch (e) {
      if (!stopped) balance.error.textContent = 'Could not refresh: ' + e.message;
    }
  }
  async function poll() {
    if (stopped) return;
    if (!document.hidden) await refresh();
    if (!stopped) timer = setTimeout(poll, 2000);
  }
  return { refresh, poll, stop: () => { stopped = true; clearTimeout(timer); } };
}

// ---------- balance and grants ----------

function stat(k, v, id) { return h('div', { class: 'stat' }, h('div', { class: 'k' }, k), h('div', { class: 'v', id }, v)); }

function balanceView({ code }) {
  const stats = h('div', { class: 'stats', id: 'balance-stats' });
  const updated = h('p', { class: 'hint', id: 'balance-updated', 'aria-live': 'off' });
  const error = banner('error', 'balance-error');
  const grantsBody = h('tbody', { id: 'grants-body' });
  function render(b) {
    stats.replaceChildren(
      stat('Available', fmt(b.available) + ' ' + code, 'bal-available'), stat('Total', fmt(b.total) + ' ' + code, 'bal-total'),
      stat('Debt', fmt(b.debt) + ' ' + code, 'bal-debt'), stat('Unfunded usage', fmt(b.unfunded) + ' ' + code, 'bal-unfunded'),
      h('div', { class: 'stat' }, h('div', { class: 'k' }, 'Status'), h('div', { class: 'v' },
        b.low ? h('span', { class: 'badge low', id: 'bal-low' }, 'Low balance') : h('span', { class: 'badge okb', id: 'bal-low' }, 'OK')),
        h('div', { class: 'hint' }, b.policy === 'overage' ? 'overage allowed' : 'shortfall unfunded')));
    grantsBody.replaceChildren(...(b.grants || []).map((g) => h('tr', {}, h('td', {}, g.id), h('td', {}, g.type),
      h('td', { class: 'num' }, fmt(g.amount)), h('td', { class: 'num' }, fmt(g.remaining)), h('td', {}, when(g.effective_at)), h('td', {}, g.expires_at ? when(g.expires_at) : 'never'))));
    if (!(b.grants || []).length) grantsBody.append(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No live grants.')));
    updated.textContent = 'Live · updated ' + new Date().toLocaleTimeString();
  }
  return { stats, updated, error, grantsBody, render };
}

// ---------- ledger ----------

const kindName = { grant: 'Grant', topup: 'Top-up', adjustment: 'Adjustment', adjust: 'Adjustment', usage: 'Usage', expiry: 'Expiry' };

// entryDetails: an admin sees an adjustment's actor, note and whether its
// reason is shown to the customer; a customer's ledger carries none of
// them (the API sends the generic reason when it is not public).
function entryDetails(e, sub, admin) {
  const parts = [];
  if (e.reason) parts.push('reason: ' + e.reason);
  if (e.actor) parts.push('by ' + e.actor);
  if (e.note) parts.push('note: ' + e.note);
  if (admin && e.kind === 'adjustment') parts.push(e.public ? 'reason shown to the customer' : 'reason hidden from the customer');
  if (e.charge) parts.push('charged ' + money(e.charge, e.currency || sub.currency));
  if (e.events) parts.push(e.events + ' event' + (e.events === 1 ? '' : 's'));
  if (e.unfunded && toBig(e.unfunded) !== 0n) parts.push('unfunded ' + fmt(e.unfunded));
  if (e.grant_id) parts.push('grant ' + e.grant_id);
  return parts.join(' · ');
}

// ledgerView reads the ledger incrementally (from_seq after the last entry
// seen) and keeps the last 5,000 entries; it shows the newest 200.
function ledgerView({ enc, sub, admin }) {
  const entries = [];
  let lastSeq = 0;
  const body = h('tbody', { id: 'ledger-body' });
  function render() {
    const shown = entries.slice(-200).reverse();
    body.replaceChildren(...shown.map((e) => h('tr', { 'data-seq': e.seq, 'data-kind': e.kind },
      h('td', { class: 'num' }, e.seq), h('td', {}, when(e.time)), h('td', {}, kindName[e.kind] || e.kind),
      h('td', { class: 'num' }, (toBig(e.amount) > 0n ? '+' : '') + fmt(e.amount)), h('td', { class: 'num' }, fmt(e.balance_after)), h('td', {}, entryDetails(e, sub, admin)))));
    if (!shown.length) body.append(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No entries.')));
  }
  async function load() {
    for (let i = 0; i < 50; i++) {
      const r = await get('/subscriptions/' + enc + '/ledger?from_seq=' + (lastSeq + 1) + '&limit=500');
      const got = (r && r.entries) || [];
      for (const e of got) { if (e.seq > lastSeq) { entries.push(e); lastSeq = e.seq; } }
      if (got.length < 500) break;
    }
    if (entries.length > 5000) entries.splice(0, entries.length - 5000);
  }
  return { entries, body, render, load, lastSeq: () => lastSeq };
}

// ---------- usage ----------

// lastDays are the 14 UTC days up to today, as YYYY-MM-DD.
function lastDays() {
  const days = [];
  const today = new Date(); today.setUTCHours(0, 0, 0, 0);
  for (let i = 13; i >= 0; i--) days.push(new Date(today.getTime() - i * 86400000).toISOString().slice(0, 10));
  return { days, today };
}

// sumLedger adds the ledger's usage entries (drawn plus unfunded) to sums,
// by UTC day, exactly.
function sumLedger(entries, sums) {
  for (const e of entries) {
    if (e.kind !== 'usage') continue;
    const d = String(e.time || '').slice(0, 10);
    if (!sums.has(d)) continue;
    let a = toBig(e.amount) || 0n; if (a < 0n) a = -a;
    sums.set(d, sums.get(d) + a + (toBig(e.unfunded || '0') || 0n));
  }
}

// usageView shows credits consumed per UTC day over the last 14 days, and
// per feature when the API serves the usage report; where it does not
// (yet), the days are summed from the ledger's usage entries.
function usageView({ enc, sub, code, featureName }, entries) {
  const chart = h('div', { class: 'chart', id: 'usage-chart' });
  const byFeature = h('div', { id: 'usage-by-feature' });
  let source = null, note = '';
  async function load() {
    note = '';
    const { days, today } = lastDays();
    const sums = new Map(days.map((d) => [d, 0n]));
    if (source !== 'ledger') {
      try {
        const q = '/subscriptions/' + enc + '/usage?from=' + days[0] + 'T00:00:00Z&to=' +
          new Date(today.getTime() + 86400000).toISOString().replace(/\.\d+Z$/, 'Z') + '&group_by=';
        const [perDay, perFeature] = await Promise.all([get(q + 'day'), get(q + 'feature')]);
        source = 'usage';
        for (const row of (perDay && perDay.rows) || []) {
          const d = String(row.day || '').slice(0, 10);
          if (sums.has(d)) sums.set(d, sums.get(d) + (toBig(row.credits) || 0n));
        }
        return { days, sums, features: (perFeature && perFeature.rows) || [] };
      } catch (e) {
        // No such route: use the ledger from now on; the report failing
        // (archive down or not configured): use the ledger this time.
        if (e.status === 404 || e.status === 405 || e.status === 501) source = 'ledger';
        else note = ' (from the ledger; the usage report answered: ' + e.message + ')';
      }
    }
    sumLedger(entries, sums);
    return { days, sums, features: null };
  }
  function renderFeatures(rows) {
    if (!rows) { byFeature.replaceChildren(); return; }
    byFeature.replaceChildren(h('h3', {}, 'By feature, last 14 days'), h('table', { id: 'usage-features' },
      h('thead', {}, h('tr', {}, ['Feature', 'Quantity', 'Events', 'Credits', 'Money value'].map((t, i) => h('th', { class: i ? 'num' : null }, t)))),
      h('tbody', {}, rows.length ? rows.map((r) => h('tr', {}, h('td', {}, featureName(r.feature)), h('td', { class: 'num' }, r.quantity != null ? fmt(r.quantity) : '—'),
        h('td', { class: 'num' }, r.events != null ? fmt(String(r.events)) : '—'), h('td', { class: 'num' }, fmt(r.credits) + ' ' + code),
        h('td', { class: 'num' }, r.money_value != null ? money(r.money_value, r.money_currency || sub.currency) : (r.money != null ? money(r.money, sub.currency) : '—'))))
        : h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No usage.')))));
  }
  function render(u) {
    const { svg, total } = usageChart(u, code);
    chart.replaceChildren(svg, h('p', { class: 'hint', id: 'usage-total' }, 'Last 14 days: ' + fmt(fromBig(total)) + ' ' + code + ' used' + (source === 'ledger' ? ' (from the ledger)' : note) + '.'));
    renderFeatures(u.features);
  }
  return { chart, byFeature, load, render, source: () => source };
}

// usageChart draws the days' sums as bars; numbers only for the geometry,
// the labels stay exact decimals.
function usageChart(u, code) {
  const W = 700, H = 220, L = 56, B = 28, T = 12;
  const vals = u.days.map((d) => u.sums.get(d));
  const max = vals.reduce((m, v) => (v > m ? v : m), 0n);
  const total = vals.reduce((a, v) => a + v, 0n);
  const maxN = Number(fromBig(max)) || 1; // geometry only
  const bw = (W - L - 8) / u.days.length;
  const svg = s('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-labelledby': 'usage-title usage-desc' },
    s('title', { id: 'usage-title' }, 'Credits used per day'),
    s('desc', { id: 'usage-desc' }, fmt(fromBig(total)) + ' ' + code + ' in the last 14 days'),
    s('line', { x1: L, y1: H - B, x2: W - 4, y2: H - B, class: 'axis' }),
    s('line', { x1: L, y1: T, x2: L, y2: H - B, class: 'axis' }),
    s('text', { x: L - 6, y: T + 4, 'text-anchor': 'end', 'font-size': 11, fill: '#5b6475' }, fmt(fromBig(max))),
    s('text', { x: L - 6, y: H - B, 'text-anchor': 'end', 'font-size': 11, fill: '#5b6475' }, '0'));
  u.days.forEach((d, i) => {
    const v = vals[i];
    const hgt = v === 0n ? 0 : Math.max(2, (Number(fromBig(v)) / maxN) * (H - B - T));
    const x = L + 4 + i * bw;
    svg.append(s('rect', { x: x, y: H - B - hgt, width: Math.max(2, bw - 6), height: hgt, fill: '#2656c9', 'data-day': d, 'data-credits': fromBig(v), class: 'bar' },
      s('title', {}, d + ': ' + fmt(fromBig(v)) + ' ' + code)));
    if (i % 2 === 1 || u.days.length <= 7) svg.append(s('text', { x: x + (bw - 6) / 2, y: H - 10, 'text-anchor': 'middle', 'font-size': 10, fill: '#5b6475' }, d.slice(5)));
  });
  return { svg, total };
}

// ---------- invoice ----------

// invoiceView is the invoice of one of the last three months; the card
// stays hidden where the API does not serve invoices.
function invoiceView({ enc, sub, code }) {
  const months = [];
  for (let i = 0, d = new Date(); i < 3; i++) {
    months.push(new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - i, 1)).toISOString().slice(0, 7));
  }
  const periodSel = h('select', { id: 'invoice-period' }, options(months.map((m) => [m, m]), months[0]));
  const body = h('div', { id: 'invoice-body' });
  const csvStatus = h('span', { class: 'hint', id: 'invoice-csv-status', role: 'status' });
  const card = h('section', { class: 'card', id: 'invoice', hidden: true, 'aria-labelledby': 'invoice-h' },
    h('div', { class: 'bar' }, h('h2', { id: 'invoice-h' }, 'Invoice'),
      h('div', { class: 'actions' }, csvStatus, h('button', { type: 'button', class: 'secondary', id: 'invoice-csv', onclick: downloadCSV }, 'Download CSV'),
        h('label', { class: 'sr-only', for: 'invoice-period' }, 'Invoice period'), periodSel)), body);
  // downloadCSV fetches the CSV with the token (a plain link cannot send
  // it) and saves it.
  async function downloadCSV() {
    csvStatus.textContent = '';
    const name = 'invoice-' + sub.id + '-' + periodSel.value + '.csv';
    try {
      const res = await fetch(API + '/subscriptions/' + enc + '/invoices?period=' + periodSel.value + '&format=csv', { headers: { Authorization: 'Bearer ' + store.getItem('cm.token') } });
      if (!res.ok) throw new Error(res.status + ' ' + res.statusText);
      const url = URL.createObjectURL(await res.blob());
      const a = h('a', { href: url, download: name, hidden: true });
      document.body.append(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      csvStatus.textContent = 'Saved ' + name;
    } catch (e) { csvStatus.textContent = 'Download failed: ' + e.message; }
  }
  async function load() {
    let r;
    try {
      r = await get('/subscriptions/' + enc + '/invoices?period=' + periodSel.value);
    } catch (e) {
      if (e.status === 404 || e.status === 405 || e.status === 501) { card.hidden = true; return; }
      card.hidden = false;
      body.replaceChildren(h('div', { class: 'banner error', role: 'alert' }, e.message));
      return;
    }
    const inv = r && (r.lines ? r : ((r.invoices || r.data || [])[0]));
    card.hidden = false;
    if (!inv) { body.replaceChildren(h('p', { class: 'muted' }, 'No invoice for ' + periodSel.value + '.')); return; }
    body.replaceChildren(...invoiceContent(inv, inv.currency || sub.currency, code));
  }
  periodSel.addEventListener('change', () => load());
  return { card, load };
}

function invoiceContent(inv, cur, code) {
  return [
    h('table', { id: 'invoice-lines' },
      h('thead', {}, h('tr', {}, ['Line', 'Credits', 'Price per credit', 'Amount', ''].map((t, i) => h('th', { class: i && i < 4 ? 'num' : null }, t)))),
      h('tbody', {}, (inv.lines || []).map((l) => h('tr', {}, h('td', {}, l.description || l.kind),
        h('td', { class: 'num' }, fmt(l.credits) + ' ' + (inv.credit_currency || code)), h('td', { class: 'num' }, money(l.unit_price, cur)),
        h('td', { class: 'num' }, money(l.money, cur)), h('td', { class: 'muted' }, l.billable ? '' : 'not billed'))))),
    h('dl', { class: 'kv', id: 'invoice-totals' },
      h('dt', {}, 'Opening balance'), h('dd', {}, fmt(inv.opening_balance) + ' ' + code),
      h('dt', {}, 'Closing balance'), h('dd', {}, fmt(inv.closing_balance) + ' ' + code),
      h('dt', {}, 'Total due'), h('dd', { id: 'invoice-total' }, money(inv.total_due, cur)))];
}

// ---------- forms ----------

// topUpForm is the customer's self-service Credit top-up (an admin may do it
// for them). The Idempotency-Key is kept when the request did not reach the
// API, so a retry after a network failure counts once.
function topUpForm({ enc, sub, pp, code, cv }, refresh, onPending) {
  const form = h('form', { class: 'card', id: 'topup-form', novalidate: true }, h('h2', {}, 'Credit top-up'), formError(),
    field('Credits to buy', input('topup-amount', 'amount', { inputmode: 'decimal', placeholder: pp.min_purchase || '500' }),
      'Limits: ' + limitsText(pp.min_purchase, pp.max_purchase, code) + '. Price: 1 ' + code + ' = ' + money(cv, sub.currency) + '.'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'topup-submit' }, 'Buy credits')),
    banner('ok', 'topup-result'));
  let topKey = key();
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault(); clearErrors(form);
    const out = document.getElementById('topup-result'); out.textContent = '';
    const amount = val('topup-amount');
    if (!amount) return showError(form, { field: 'amount', message: 'Enter the number of credits to buy.' });
    const btn = document.getElementById('topup-submit'); btn.disabled = true;
    try {
      const r = await api('POST', '/subscriptions/' + enc + '/topups', { amount }, { 'Idempotency-Key': topKey });
      topKey = key();
      document.getElementById('topup-amount').value = '';
      if (r.status === 'pending') {
        // 202: the plan wants the payment confirmed first.
        onPending(r);
        out.textContent = 'Waiting for payment: ' + fmt(r.amount) + ' ' + code + ' for ' + money(r.charge, r.currency) + ', until ' + when(r.expires_at) + '.';
        return;
      }
      out.textContent = 'Added ' + fmt(r.amount) + ' ' + code + ' · charged ' + money(r.charge, r.currency) + ' · balance ' + fmt(r.balance) + ' ' + code + (r.replayed ? ' (already done)' : '') + '.';
      document.getElementById('topup-amount').value = '';
      refresh();
    } catch (e) {
      if (e.status !== 0) topKey = key();
      // The plan's limits, stated plainly (the API's code says which one).
      if (e.code === 'below_minimum' && pp.min_purchase) e.message = 'The minimum top-up is ' + fmt(pp.min_purchase) + ' ' + code + '; you asked for ' + fmt(amount) + ' ' + code + '.';
      if (e.code === 'above_maximum' && pp.max_purchase) e.message = 'The maximum top-up is ' + fmt(pp.max_purchase) + ' ' + code + '; you asked for ' + fmt(amount) + ' ' + code + '.';
      showError(form, e);
    } finally { btn.disabled = false; }
  });
  return form;
}

// adjustmentForm is the admin's Credit adjustment: a reason is required, and
// a deduction beyond the balance needs the force box.
function adjustmentForm({ enc, code }, refresh) {
  const form = h('form', { class: 'card', id: 'adjust-form', novalidate: true }, h('h2', {}, 'Credit adjustment'), formError(),
    h('div', { class: 'row' },
      field('Credits (+ to add, - to deduct)', input('adj-amount', 'amount', { inputmode: 'decimal', placeholder: '-20' })),
      field('Note', input('adj-note', 'note', { placeholder: 'ticket 4711', maxlength: 1000 }), 'For admins only; the ledger records your admin token\'s name as the actor.')),
    field('Reason', input('adj-reason', 'reason', { placeholder: 'Goodwill credit for the outage of 3 Nov' }), 'Recorded in the ledger. The customer sees it only when shown; otherwise "balance adjustment".'),
    h('div', { class: 'field' }, checkbox('adj-public', 'Show reason to customer', false, 'public'), errorP('adj-public')),
    h('div', { class: 'field' }, checkbox('adj-force', 'Allow a deduction beyond the available balance (negative balance)', false, 'force'), errorP('adj-force')),
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'adj-submit' }, 'Apply adjustment')),
    banner('ok', 'adj-result'));
  let adjKey = key();
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault(); clearErrors(form);
    const out = document.getElementById('adj-result'); out.textContent = '';
    const body = { amount: val('adj-amount'), reason: val('adj-reason'), public: checked('adj-public'), force: checked('adj-force') };
    if (val('adj-note')) body.note = val('adj-note');
    const btn = document.getElementById('adj-submit'); btn.disabled = true;
    try {
      const r = await api('POST', '/subscriptions/' + enc + '/adjustments', body, { 'Idempotency-Key': adjKey });
      adjKey = key();
      out.textContent = 'Adjusted by ' + (toBig(r.amount) > 0n ? '+' : '') + fmt(r.amount) + ' ' + code + ' · balance ' + fmt(r.balance) + ' ' + code + '.';
      for (const f of ['adj-amount', 'adj-reason', 'adj-note']) document.getElementById(f).value = '';
      document.getElementById('adj-public').checked = false;
      refresh();
    } catch (e) {
      if (e.status !== 0) adjKey = key();
      if (e.code === 'insufficient_balance') e.message = 'Not enough credits for this deduction (' + e.message.replace(/^balance: /, '') + '). Tick "Allow a deduction beyond the available balance" to let the balance go negative.';
      showError(form, e);
    } finally { btn.disabled = false; }
  });
  return form;
}

// checkForm is the admin's Spend check: what a product backend asks before
// expensive work.
function checkForm({ enc, code }) {
  const form = h('form', { class: 'card', id: 'check-form', novalidate: true }, h('h2', {}, 'Spend check'), formError(),
    field('Credits about to be spent', input('check-amount', 'amount', { inputmode: 'decimal', placeholder: '12.5' }), 'Asks POST /v1/subscriptions/{id}/check, as a product backend does.'),
    h('div', { class: 'row' },
      field('… or a feature', input('check-feature', 'feature', { placeholder: 'ai-agent-email' }), 'Priced with this subscription\'s conversion table.'),
      field('Quantity', input('check-quantity', 'quantity', { inputmode: 'decimal', placeholder: '3' }))),
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'check-submit' }, 'Check')),
    h('div', { class: 'banner', id: 'check-result', role: 'status' }));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault(); clearErrors(form);
    const out = document.getElementById('check-result'); out.textContent = ''; out.className = 'banner';
    try {
      const body = val('check-feature') ? { feature: val('check-feature'), quantity: val('check-quantity') || '1' } : { amount: val('check-amount') };
      const r = await api('POST', '/subscriptions/' + enc + '/check', body);
      out.className = 'banner ' + (r.allowed ? 'ok' : 'warn');
      const cost = r.cost ? fmt(r.credits) + ' ' + code + ' (' + r.cost.amount + ' ' + r.cost.currency + ') · ' : '';
      const limit = r.debt_limit !== undefined ? ' · spendable ' + fmt(r.spendable) + ' ' + code + ' with the debt limit of ' + fmt(r.debt_limit) : '';
      out.textContent = cost + (r.allowed ? 'Allowed' : 'Not allowed') + ' · available ' + fmt(r.available) + ' ' + code + ' · ' + (r.policy === 'overage' ? 'overage allowed' : 'shortfall unfunded') + limit + '.';
    } catch (e) { showError(form, e); }
  });
  return form;
}
