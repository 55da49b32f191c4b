// Dead letters (admin): the events the engine could not charge, read from
// the dead-letter topic by GET /v1/dead-letters. Counts by reason, then the
// newest entries page by page (the API's opaque cursor), optionally of one
// reason and since a time.
import { h, field, input, select, banner, page } from '../dom.js';
import { when, isoOrRaw } from '../format.js';
import { get } from '../api.js';

// The documented reasons; a reason the API counts that is not listed here
// is offered too.
const REASONS = ['malformed', 'invalid', 'unknown_customer', 'no_active_subscription', 'unratable', 'no_balance_account'];
const LIMITS = ['10', '50', '200'];

export const positionText = (p) => !p ? '—' : p.topic + '/' + p.partition + '@' + (p.offset < 0 ? '?' : p.offset);

export async function pageDeadLetters() {
  const state = { reason: '', since: '', limit: '50', cursors: [''] }; // cursors[i] opens page i
  const reasonSel = select('dl-reason', 'reason', [['', 'All reasons'], ...REASONS.map((r) => [r, r])], '');
  const limitSel = select('dl-limit', 'limit', LIMITS.map((n) => [n, n + ' a page']), state.limit);
  const sinceIn = input('dl-since', 'since', { type: 'datetime-local' });
  const counts = h('ul', { class: 'counts', id: 'dl-counts', 'aria-label': 'Dead letters by reason' });
  const total = h('p', { id: 'dl-total', role: 'status' });
  const body = h('tbody');
  const shown = h('span', { id: 'dl-shown', class: 'muted' });
  const prev = h('button', { type: 'button', class: 'secondary', id: 'dl-prev', disabled: true }, '‹ Newer');
  const next = h('button', { type: 'button', class: 'secondary', id: 'dl-next', disabled: true }, 'Older ›');
  const err = banner('error', 'dl-error');

  let latest = 0; // a slower answer to an older query must not replace a newer one
  async function load() {
    const seq = ++latest;
    const i = state.cursors.length - 1;
    const q = new URLSearchParams({ limit: state.limit });
    if (state.reason) q.set('reason', state.reason);
    if (state.since) q.set('since', state.since);
    if (state.cursors[i]) q.set('cursor', state.cursors[i]);
    let r;
    try { r = await get('/dead-letters?' + q); } catch (e) { if (seq === latest) err.textContent = 'Dead letters: ' + e.message; return; }
    if (seq !== latest) return;
    err.textContent = '';
    renderCounts(r.counts || {});
    const n = r.total || 0;
    total.textContent = n + ' dead letter' + (n === 1 ? '' : 's') + (state.reason ? ' with reason ' + state.reason : '') + (state.since ? ' since ' + when(state.since) : '') + '.';
    const entries = r.entries || [];
    body.replaceChildren(...entries.map(row));
    if (!entries.length) body.append(h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'No dead letters.')));
    const first = i * parseInt(state.limit, 10);
    shown.textContent = entries.length ? (first + 1) + '–' + (first + entries.length) + ' of ' + n : '';
    next.disabled = !r.next_cursor; next.dataset.cursor = r.next_cursor || '';
    prev.disabled = i === 0;
  }
  function renderCounts(c) {
    const reasons = Object.keys(c).sort();
    counts.replaceChildren(...reasons.map((r) => h('li', { 'data-reason': r },
      h('button', { type: 'button', class: 'link', onclick: () => { reasonSel.value = r; reasonSel.dispatchEvent(new Event('change')); } }, r),
      ' ', h('span', { class: 'badge' }, String(c[r])))));
    if (!reasons.length) counts.append(h('li', { class: 'muted' }, 'None.'));
    // Offer a reason the API counts but this page does not know.
    for (const r of reasons) if (![...reasonSel.options].some((o) => o.value === r)) reasonSel.append(h('option', { value: r }, r));
  }
  const restart = () => { state.cursors = ['']; load(); };
  reasonSel.addEventListener('change', () => { state.reason = reasonSel.value; restart(); });
  limitSel.addEventListener('change', () => { state.limit = limitSel.value; restart(); });
  sinceIn.addEventListener('change', () => { state.since = isoOrRaw(sinceIn.value); restart(); });
  next.addEventListener('click', () => { if (next.dataset.cursor) { state.cursors.push(next.dataset.cursor); load(); } });
  prev.addEventListener('click', () => { if (state.cursors.length > 1) { state.cursors.pop(); load(); } });

  page('Dead letters', null,
    h('div', { class: 'card' },
      h('p', { class: 'hint' }, 'Usage events the engine could not charge, newest first. After fixing the catalog, ', h('code', {}, 'creditmeter dlq replay [--reason R]'), ' re-submits them once.'),
      err, counts, total,
      h('div', { class: 'row' }, field('Reason', reasonSel), field('Since', sinceIn, 'In your local time; counts and entries from then on. Blank: all the topic keeps.'), field('Page size', limitSel),
        h('div', { class: 'field' }, h('span', { class: 'label' }, ' '), h('button', { type: 'button', class: 'secondary', id: 'dl-refresh', onclick: restart }, 'Refresh')))),
    h('div', { class: 'card' },
      h('table', { id: 'dead-letters' },
        h('thead', {}, h('tr', {}, ['Dead-lettered', 'Reason', 'Field', 'Detail', 'Event', 'Original position', 'Replay'].map((t) => h('th', {}, t)))), body),
      h('div', { class: 'pager' }, prev, next, shown)));
  await load();
}

function row(d) {
  const replay = [];
  if (d.replayed_at) replay.push('replayed ' + when(d.replayed_at));
  if (d.replay_of) replay.push('replay of ' + d.replay_of);
  if (d.truncated_from) replay.push('truncated from ' + d.truncated_from + ' bytes (not replayable)');
  return h('tr', { 'data-reason': d.reason },
    h('td', {}, when(d.dead_lettered_at)), h('td', {}, d.reason), h('td', { class: 'mono' }, d.field || '—'), h('td', {}, d.detail),
    h('td', {}, d.event_id ? h('span', { class: 'mono' }, d.event_id) : '—', d.customer_id ? h('div', { class: 'muted' }, 'customer ' + d.customer_id) : null),
    h('td', { class: 'mono' }, positionText(d.original)), h('td', {}, replay.join(' · ') || '—'));
}
