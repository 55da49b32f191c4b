// Usage reports from the archive: an admin across customers (GET /v1/usage)
// or of one customer (GET /v1/customers/{id}/usage), a customer of itself.
// Grouped by a time bucket, feature and event dimensions (dim:<key>),
// filtered by feature, paged by the API's opaque next_cursor, and
// downloadable as CSV (format=csv).
import { h, field, input, select, checkbox, formError, clearErrors, showError, page } from '../dom.js';
import { fmt, money } from '../decimal.js';
import { API, get } from '../api.js';
import { store } from '../session.js';

const day = (d) => d.toISOString().slice(0, 10);

// groupBy is the API's group_by from the form: the time bucket, feature,
// customer (admin, all customers), then the dimension keys typed as
// "model" or "dim:model", comma-separated, in the order given.
export function groupBy(bucket, byFeature, byCustomer, dims) {
  const g = [];
  if (bucket) g.push(bucket);
  if (byFeature) g.push('feature');
  if (byCustomer) g.push('customer');
  for (let k of String(dims || '').split(',')) {
    k = k.trim();
    if (!k) continue;
    g.push(k.startsWith('dim:') ? k : 'dim:' + k);
  }
  return g.join(',');
}

// cellText is a row's value of one grouping ("(none)" for an event
// without the dimension).
export function cellText(r, g) {
  if (g.startsWith('dim:')) { const v = (r.dimensions || {})[g.slice(4)]; return v ? v : '(none)'; }
  const f = { customer: 'customer_id', subscription: 'subscription_id' }[g] || g;
  return r[f] == null ? '—' : String(r[f]);
}

// pageUsage: customer is the customer whose usage is shown, or null for an
// admin's view across customers; mine marks the customer's own page.
export async function pageUsage(customer, mine) {
  const path = customer ? '/customers/' + encodeURIComponent(customer) + '/usage' : '/usage';
  const now = new Date();
  const state = { query: null, cursors: [''] }; // cursors[i] opens page i
  const fromIn = input('usage-from', 'from', { type: 'date', value: day(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1))) });
  const toIn = input('usage-to', 'to', { type: 'date', value: day(new Date(now.getTime() + 86400000)) });
  const bucketSel = select('usage-bucket', 'bucket', [['day', 'Day'], ['hour', 'Hour'], ['month', 'Month'], ['', 'No time bucket']], 'day');
  const dimIn = input('usage-dims', 'group_by', { placeholder: 'dim:model' });
  const featIn = input('usage-feature', 'feature', { placeholder: 'all features' });
  const limitSel = select('usage-limit', 'limit', [['10', '10 a page'], ['100', '100 a page'], ['1000', '1,000 a page']], '100');
  const form = h('form', { class: 'card', id: 'usage-form', novalidate: true }, formError(),
    h('div', { class: 'row' },
      field('From', fromIn, 'UTC day, inclusive'), field('To', toIn, 'UTC day, exclusive; at most 366 days after From'),
      field('Group by time', bucketSel),
      field('Dimensions', dimIn, 'Event dimension keys, comma-separated: dim:model, dim:region'),
      field('Feature', featIn, 'Only these feature IDs, comma-separated; blank: all'), field('Page size', limitSel)),
    h('div', { class: 'row' }, checkbox('usage-by-feature', 'Group by feature', true),
      customer ? null : checkbox('usage-by-customer', 'Group by customer', false)),
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'usage-show' }, 'Show usage')));
  const head = h('thead');
  const body = h('tbody');
  const shown = h('span', { id: 'usage-shown', class: 'muted', role: 'status' });
  const prev = h('button', { type: 'button', class: 'secondary', id: 'usage-prev', disabled: true }, '‹ Previous');
  const next = h('button', { type: 'button', class: 'secondary', id: 'usage-next', disabled: true }, 'Next ›');
  const csvStatus = h('span', { class: 'hint', id: 'usage-csv-status', role: 'status' });
  const csv = h('button', { type: 'button', class: 'secondary', id: 'usage-csv', disabled: true }, 'Download CSV');

  function query() {
    const q = new URLSearchParams({ from: fromIn.value, to: toIn.value, limit: limitSel.value,
      group_by: groupBy(bucketSel.value, document.getElementById('usage-by-feature').checked,
        !customer && document.getElementById('usage-by-customer').checked, dimIn.value) });
    const f = featIn.value.trim();
    if (f) q.set('feature', f);
    return q;
  }
  let latest = 0; // a slower answer to an older query must not replace a newer one
  async function load() {
    const seq = ++latest;
    const i = state.cursors.length - 1;
    const q = new URLSearchParams(state.query);
    if (state.cursors[i]) q.set('cursor', state.cursors[i]);
    let r;
    try { r = await get(path + '?' + q); } catch (e) { if (seq === latest) showError(form, e); return; }
    if (seq !== latest) return;
    clearErrors(form);
    const groups = r.group_by ? r.group_by.split(',') : [];
    const rows = r.rows || [];
    const qty = rows.some((x) => x.quantity != null);
    head.replaceChildren(h('tr', {}, groups.map((g) => h('th', { 'data-group': g }, g)),
      qty ? h('th', { class: 'num' }, 'Quantity') : null,
      ['Credits', 'Unfunded', 'Money value', 'Events'].map((t) => h('th', { class: 'num' }, t))));
    body.replaceChildren(...rows.map((x) => h('tr', {}, groups.map((g) => h('td', { 'data-group': g }, cellText(x, g))),
      qty ? h('td', { class: 'num' }, fmt(x.quantity)) : null,
      h('td', { class: 'num credits' }, fmt(x.credits) + ' ' + (x.credit_currency || '')),
      h('td', { class: 'num' }, fmt(x.unfunded_credits)),
      h('td', { class: 'num' }, money(x.money_value, x.money_currency)),
      h('td', { class: 'num' }, String(x.events)))));
    if (!rows.length) body.append(h('tr', {}, h('td', { colspan: groups.length + 5, class: 'muted' }, 'No usage in this range.')));
    shown.textContent = 'Page ' + (i + 1) + ': ' + rows.length + ' row' + (rows.length === 1 ? '' : 's') + (r.next_cursor ? '; more on the next page' : '');
    next.disabled = !r.next_cursor; next.dataset.cursor = r.next_cursor || '';
    prev.disabled = i === 0;
  }
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.query = query().toString(); state.cursors = [''];
    const q = new URLSearchParams(state.query); q.set('format', 'csv'); q.delete('limit');
    csv.dataset.url = API + path + '?' + q; csv.disabled = false; csvStatus.textContent = '';
    load();
  });
  next.addEventListener('click', () => { if (next.dataset.cursor) { state.cursors.push(next.dataset.cursor); load(); } });
  prev.addEventListener('click', () => { if (state.cursors.length > 1) { state.cursors.pop(); load(); } });
  // The CSV is fetched with the token (a plain link cannot send it) and
  // saved from a blob: the query shown, from its first row, one API page
  // (1,000 rows; the next page's cursor is in a header).
  csv.addEventListener('click', async () => {
    csvStatus.textContent = '';
    const name = 'usage-' + (customer || 'all') + '-' + fromIn.value + '-' + toIn.value + '.csv';
    try {
      const res = await fetch(csv.dataset.url, { headers: { Authorization: 'Bearer ' + store.getItem('cm.token') } });
      if (!res.ok) throw new Error('HTTP ' + res.status);
      const more = res.headers.get('Creditmeter-Next-Cursor');
      const url = URL.createObjectURL(await res.blob());
      const a = h('a', { href: url, download: name, hidden: true });
      document.body.append(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      csvStatus.textContent = 'Saved ' + name + (more ? ' (the first page; the API pages the rest)' : '');
    } catch (e) { csvStatus.textContent = 'Download failed: ' + e.message; }
  });

  const crumbs = mine ? h('span', {}, h('a', { href: '#/my' }, 'My subscriptions'), ' › Usage')
    : customer ? h('span', {}, h('a', { href: '#/customers' }, 'Customers'), ' › ', h('a', { href: '#/customers/' + encodeURIComponent(customer) }, customer), ' › Usage')
      : null;
  page(customer && !mine ? 'Usage of ' + customer : 'Usage', crumbs, form,
    h('div', { class: 'card' },
      h('div', { class: 'bar' }, h('h2', {}, 'Usage by group'), h('div', { class: 'actions' }, csvStatus, csv)),
      h('table', { id: 'usage-table' }, head, body),
      h('div', { class: 'pager' }, prev, next, shown)));
  form.requestSubmit();
}
