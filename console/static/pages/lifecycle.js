// The subscription's lifecycle, payments and auto-recharge on its page: the
// status badge with the end and the plan-change links, the admin's Cancel,
// Withdraw cancellation and Change plan; the top-ups waiting for payment
// (an admin confirms them); the auto-recharge settings and latest attempt.
import { h, field, input, checkbox, errorP, banner, formError, clearErrors, showError, val, checked } from '../dom.js';
import { fmt, money } from '../decimal.js';
import { when, isoOrRaw } from '../format.js';
import { api, get, key } from '../api.js';
import { store, rerender } from '../session.js';

const subLink = (id, admin) => h('a', { href: (admin ? '#/subscriptions/' : '#/my/subscriptions/') + encodeURIComponent(id) }, id);

// statusBadge: scheduled, active or ended, as the API computed it when read.
export function statusBadge(sub) {
  const st = sub.status || 'active';
  return h('span', { class: 'badge status-' + st, id: 'sub-status' }, st);
}

// lifecycleRows are the summary's rows: status, end, and the plan-change links.
export function lifecycleRows(sub, admin) {
  return [
    h('dt', {}, 'Status'), h('dd', {}, statusBadge(sub)),
    h('dt', {}, 'Ends'), h('dd', { id: 'sub-end' }, sub.end_at ? when(sub.end_at) : 'not cancelled'),
    sub.replaces ? [h('dt', {}, 'Replaces'), h('dd', { id: 'sub-replaces' }, subLink(sub.replaces, admin))] : null,
    sub.replaced_by ? [h('dt', {}, 'Replaced by'), h('dd', { id: 'sub-replaced-by' }, subLink(sub.replaced_by, admin))] : null,
  ];
}

// lifecycleForms are the admin's Cancel / Withdraw and Change plan forms.
// The API's 409s (ended, replaced, overlap) are shown at the top of the
// form that asked; a success redraws the page from the API.
export function lifecycleForms({ enc, sub }) {
  const ended = sub.status === 'ended';
  const cancel = h('form', { class: 'card', id: 'cancel-form', novalidate: true }, h('h2', {}, 'End the subscription'), formError(),
    h('div', { class: 'field' }, checkbox('cancel-later', 'At a date (otherwise now)', false, null), errorP('cancel-later')),
    field('Ends at (UTC)', input('cancel-at', 'at', { type: 'datetime-local' }), 'The end is exclusive; it may not be in the past.'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'cancel-submit', class: 'secondary danger', disabled: ended }, 'Cancel subscription'),
      sub.end_at && !ended && !sub.replaced_by ? h('button', { type: 'button', id: 'withdraw-cancel', class: 'secondary' }, 'Withdraw cancellation') : null),
    banner('ok', 'cancel-result'));
  cancel.addEventListener('submit', async (ev) => {
    ev.preventDefault(); clearErrors(cancel);
    const body = checked('cancel-later') ? { at: isoOrRaw(val('cancel-at')) } : undefined;
    if (body && !body.at) return showError(cancel, { field: 'at', message: 'Pick the date and time it ends, or untick "At a date".' });
    try {
      await api('POST', '/subscriptions/' + enc + '/cancel', body);
      rerender();
    } catch (e) { showError(cancel, e); }
  });
  const withdraw = cancel.querySelector('#withdraw-cancel');
  if (withdraw) {
    withdraw.addEventListener('click', async () => {
      clearErrors(cancel);
      try {
        await api('PATCH', '/subscriptions/' + enc, { end_at: null });
        rerender();
      } catch (e) { showError(cancel, e); }
    });
  }

  const change = h('form', { class: 'card', id: 'change-form', novalidate: true }, h('h2', {}, 'Change plan'), formError(),
    field('New plan', h('select', { id: 'change-plan', name: 'change-plan', 'data-field': 'plan_id' }, h('option', { value: '' }, '— pick a plan —'))),
    field('Takes effect at (UTC)', input('change-at', 'at', { type: 'datetime-local' }), 'Blank: now. The subscription ends then and its successor starts.'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'change-submit', disabled: ended }, 'Change plan')),
    banner('ok', 'change-result'));
  get('/plans').then((r) => {
    const sel = change.querySelector('#change-plan');
    for (const p of (r && r.data) || []) if (p.id !== sub.plan_id) sel.append(h('option', { value: p.id }, p.name + ' (' + p.id + ')'));
  }).catch(() => {});
  let changeKey = key();
  change.addEventListener('submit', async (ev) => {
    ev.preventDefault(); clearErrors(change);
    const body = { plan_id: val('change-plan') };
    if (!body.plan_id) return showError(change, { field: 'plan_id', message: 'Pick the plan to change to.' });
    if (val('change-at')) body.at = isoOrRaw(val('change-at'));
    try {
      const r = await api('POST', '/subscriptions/' + enc + '/change-plan', body, { 'Idempotency-Key': changeKey });
      changeKey = key();
      change.querySelector('#change-result').textContent = 'Changed: the successor is ' + r.subscription.id + '.';
      rerender();
    } catch (e) {
      if (e.status !== 0) changeKey = key();
      showError(change, e);
    }
  });
  return [cancel, change];
}

// ---------- top-ups waiting for payment ----------

// The API lists no pending top-ups, so the page remembers the ones it made
// (the 202 answers) in the tab's session, and reads each one's status again.
const pendingKey = (id) => 'cm.pending.' + id;
function remembered(id) { try { return JSON.parse(store.getItem(pendingKey(id)) || '[]'); } catch (e) { return []; } }

export function pendingView({ enc, sub, code, admin }, refresh) {
  const body = h('tbody', { id: 'pending-body' });
  const card = h('section', { class: 'card', id: 'pending-card', 'aria-labelledby': 'pending-h', hidden: true },
    h('h2', { id: 'pending-h' }, 'Pending top-ups'),
    h('p', { class: 'hint' }, 'Top-ups waiting for their payment: no credits until confirmed; unpaid ones expire.'),
    banner('error', 'pending-error'),
    h('table', { id: 'pending' }, h('thead', {}, h('tr', {}, ['Top-up', 'Credits', 'Charge', 'Status', 'Expires (or ended)', ''].map((t, i) => h('th', { class: i === 1 || i === 2 ? 'num' : null }, t)))), body));
  let list = remembered(sub.id);
  const save = () => store.setItem(pendingKey(sub.id), JSON.stringify(list));
  function put(t) {
    const i = list.findIndex((x) => x.id === t.id);
    if (i >= 0) list[i] = t; else list.push(t);
    save(); render();
  }
  function render() {
    card.hidden = !list.length;
    body.replaceChildren(...list.map((t) => h('tr', { 'data-topup': t.id, 'data-status': t.status },
      h('td', {}, t.id), h('td', { class: 'num' }, fmt(t.amount) + ' ' + code), h('td', { class: 'num' }, money(t.charge, t.currency || sub.currency)),
      h('td', {}, h('span', { class: 'badge topup-' + t.status }, t.status), t.reason ? ' (' + t.reason + ')' : ''),
      h('td', {}, t.status === 'pending' ? when(t.expires_at) : (t.ended_at ? t.status + ' ' + when(t.ended_at) : '—')),
      h('td', {}, admin && t.status === 'pending' ? h('button', { type: 'button', class: 'secondary confirm-topup', 'data-id': t.id, onclick: () => confirm(t) }, 'Confirm payment') : ''))));
  }
  async function confirm(t) {
    const err = card.querySelector('#pending-error'); err.textContent = '';
    try {
      put(await api('POST', '/subscriptions/' + enc + '/topups/' + encodeURIComponent(t.id) + '/confirm'));
      refresh();
    } catch (e) {
      err.textContent = e.message;
      if (e.status === 409) reload();
    }
  }
  // reload lists the subscription's pending top-ups (made anywhere: another
  // tab, the API, auto-recharge) and asks again for the ones remembered as
  // pending (expired on read).
  async function reload() {
    try {
      const r = await get('/subscriptions/' + enc + '/topups?status=pending&limit=1000');
      for (const t of r.data) if (!list.some((x) => x.id === t.id)) put(t);
    } catch (e) { /* shown as remembered */ }
    for (const t of list.filter((x) => x.status === 'pending')) {
      try { put(await get('/subscriptions/' + enc + '/topups/' + encodeURIComponent(t.id))); } catch (e) { /* shown as it was */ }
    }
  }
  render(); reload();
  return { card, add: put };
}

// ---------- automatic recharge ----------

export function autoRechargeView({ enc, pp, code, admin }) {
  const info = h('dl', { class: 'kv', id: 'ar-info' });
  const error = banner('error', 'ar-error');
  const form = admin ? h('form', { id: 'ar-form', novalidate: true }, formError(),
    h('div', { class: 'field' }, checkbox('ar-enabled', 'Recharge automatically', false, 'enabled'), errorP('ar-enabled')),
    h('div', { class: 'row' },
      field('When the available balance falls below', input('ar-threshold', 'threshold', { inputmode: 'decimal', placeholder: '50' })),
      field('Buy (credits)', input('ar-amount', 'amount', { inputmode: 'decimal', placeholder: pp.min_purchase || '300' }), 'Within the plan\'s minimum and maximum purchase.')),
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'ar-save' }, 'Save auto-recharge'),
      h('button', { type: 'button', id: 'ar-reset', class: 'secondary' }, 'Use the plan\'s setting')),
    banner('ok', 'ar-result')) : null;
  const card = h('section', { class: 'card', id: 'ar-card', 'aria-labelledby': 'ar-h' }, h('h2', { id: 'ar-h' }, 'Automatic recharge'), error, info, form);
  // render fills the form only when asked (first read, save, reset), so a
  // refresh does not overwrite what an admin is typing.
  // view.showPending (Pending top-ups' add) is given the auto-recharge's
  // pending top-up, so an admin can confirm it there.
  const view = { card, load, showPending: null, attach };
  let latest = null;
  const shown = new Set();
  function offerPending() {
    const last = latest && latest.last;
    if (!view.showPending || !last || last.status !== 'pending' || !last.topup_id || shown.has(last.topup_id)) return;
    shown.add(last.topup_id);
    get('/subscriptions/' + enc + '/topups/' + encodeURIComponent(last.topup_id)).then(view.showPending, () => shown.delete(last.topup_id));
  }
  function attach(fn) { view.showPending = fn; offerPending(); }
  function render(a, fill) {
    const last = a.last;
    latest = a;
    offerPending();
    info.replaceChildren(...[
      h('dt', {}, 'Status'), h('dd', { id: 'ar-status' }, a.enabled ? 'on: below ' + fmt(a.threshold) + ' ' + code + ', buy ' + fmt(a.amount) + ' ' + code : 'off'),
      h('dt', {}, 'Setting from'), h('dd', { id: 'ar-source' }, a.source === 'subscription' ? 'this subscription' : 'the plan'),
      h('dt', {}, 'Last attempt'), h('dd', { id: 'ar-last' }, !last ? 'none yet'
        : last.status + ' · ' + last.attempts + ' attempt' + (last.attempts === 1 ? '' : 's') + ' · ' + when(last.updated_at) +
          (last.topup_seq ? ' · top-up ledger #' + last.topup_seq : '') +
          (last.topup_id ? ' · top-up ' + last.topup_id + (last.status === 'pending' ? ' waits for its payment' : '') : '') +
          (last.next_attempt_at ? ' · next attempt ' + when(last.next_attempt_at) : '')),
      last && last.last_error ? [h('dt', {}, 'Last error'), h('dd', { id: 'ar-last-error', class: 'error' }, last.last_error)] : null,
    ].flat().filter(Boolean));
    if (form && fill) {
      form.querySelector('#ar-enabled').checked = !!a.enabled;
      form.querySelector('#ar-threshold').value = a.threshold || '';
      form.querySelector('#ar-amount').value = a.amount || '';
    }
  }
  let first = true;
  async function load() {
    try {
      error.textContent = '';
      render(await get('/subscriptions/' + enc + '/auto-recharge'), first);
      first = false;
    } catch (e) {
      if (e.status === 404 || e.status === 503) card.hidden = true; else error.textContent = 'Could not read the auto-recharge: ' + e.message;
    }
  }
  if (form) {
    const done = (msg) => (a) => { render(a, true); form.querySelector('#ar-result').textContent = msg; };
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault(); clearErrors(form); form.querySelector('#ar-result').textContent = '';
      const body = { enabled: checked('ar-enabled') };
      // Blank is left out, so the API's "required" names the field.
      if (body.enabled && val('ar-threshold')) body.threshold = val('ar-threshold');
      if (body.enabled && val('ar-amount')) body.amount = val('ar-amount');
      try { done('Saved.')(await api('PUT', '/subscriptions/' + enc + '/auto-recharge', body)); } catch (e) { showError(form, e); }
    });
    form.querySelector('#ar-reset').addEventListener('click', async () => {
      clearErrors(form); form.querySelector('#ar-result').textContent = '';
      try { done('Back to the plan\'s setting.')(await api('DELETE', '/subscriptions/' + enc + '/auto-recharge')); } catch (e) { showError(form, e); }
    });
  }
  load();
  return view;
}
