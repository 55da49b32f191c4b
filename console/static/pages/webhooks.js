// Webhooks (admin): register an endpoint for some event types (its signing
// secret is shown once, in the answer to the registration), list and
// delete endpoints, and each endpoint's delivery log.
import { h, field, input, checkbox, errorP, formError, clearErrors, showError, val, select, banner, confirmButton, page } from '../dom.js';
import { when } from '../format.js';
import { api, get, API } from '../api.js';

// The types of the API this console was built with; eventTypes reads the
// served openapi.yaml's enum, so types added to the API are offered too.
const KNOWN = ['balance.low', 'balance.recovered', 'balance.exhausted', 'topup.created', 'grant.expired', 'subscription.created'];

async function eventTypes() {
  try {
    const res = await fetch(API + '/openapi.yaml');
    const m = /WebhookEventType:\s*\n\s*type: string\s*\n\s*enum: \[([^\]]*)\]/.exec(await res.text());
    const list = m ? m[1].split(',').map((t) => t.trim()).filter((t) => /^[a-z_.]+$/.test(t)) : [];
    return list.length ? list : KNOWN;
  } catch (e) { return KNOWN; }
}

const typeId = (t) => 'wh-ev-' + t.replace(/[^a-z0-9]+/g, '-');

export async function pageWebhooks() {
  const types = await eventTypes();
  const out = h('div', { id: 'wh-out', role: 'status' });
  const body = h('tbody');
  async function load() {
    const list = (await get('/webhooks')).data || [];
    body.replaceChildren(...list.map((ep) => h('tr', { 'data-endpoint': ep.id },
      h('td', {}, h('div', { class: 'mono' }, ep.url), ep.description ? h('div', { class: 'muted' }, ep.description) : null, h('div', { class: 'muted mono' }, ep.id)),
      h('td', {}, (ep.events || []).join(', ')), h('td', {}, when(ep.created_at)),
      h('td', {}, h('a', { class: 'deliveries', href: '#/webhooks/' + encodeURIComponent(ep.id) }, 'Deliveries'), ' ',
        confirmButton('Delete', 'Confirm delete', { class: 'delete' }, async () => {
          try {
            await api('DELETE', '/webhooks/' + encodeURIComponent(ep.id));
            out.replaceChildren(h('div', { class: 'banner ok' }, 'Deleted ' + ep.url + '; its pending deliveries fail.'));
          } catch (e) { out.replaceChildren(h('div', { class: 'banner error', role: 'alert' }, e.message)); }
          await load().catch(() => {});
        })))));
    if (!list.length) body.append(h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'No endpoints.')));
  }
  const form = h('form', { class: 'card', id: 'wh-form', novalidate: true }, h('h2', {}, 'Register an endpoint'), formError(),
    field('URL', input('wh-url', 'url', { inputmode: 'url', maxlength: 2000 }),
      'Receives a signed POST per event (header Creditmeter-Signature: HMAC-SHA256 over timestamp and body), retried with backoff for hours.'),
    field('Description', input('wh-description', 'description', { maxlength: 500 })),
    h('fieldset', { class: 'field' }, h('legend', {}, 'Event types'),
      h('div', { id: 'wh-events', 'data-field': 'events', tabindex: -1 }, types.map((t) => checkbox(typeId(t), t, false))),
      errorP('wh-events')),
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'wh-create' }, 'Register endpoint')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault(); clearErrors(form); out.replaceChildren();
    const body = { url: val('wh-url'), events: types.filter((t) => document.getElementById(typeId(t)).checked) };
    if (val('wh-description')) body.description = val('wh-description');
    try {
      const ep = await api('POST', '/webhooks', body);
      out.replaceChildren(h('div', { class: 'banner ok' }, 'Registered ' + ep.url + '. Its signing secret, shown this once (keep it to verify signatures):',
        h('p', { class: 'token', id: 'wh-secret' }, ep.secret)));
      form.reset();
      await load();
    } catch (e) { showError(form, e); }
  });
  page('Webhooks', null, out,
    h('div', { class: 'card' }, h('table', { id: 'webhooks' },
      h('thead', {}, h('tr', {}, ['Endpoint', 'Events', 'Created', ''].map((t) => h('th', {}, t)))), body)),
    form);
  await load();
}

// pageWebhookDeliveries is an endpoint's delivery log, newest first,
// refreshed every 2 s while the tab is visible; it returns the stop.
export async function pageWebhookDeliveries(id) {
  const enc = encodeURIComponent(id);
  const ep = await get('/webhooks/' + enc);
  const limitSel = select('whd-limit', 'limit', [['50', 'newest 50'], ['200', 'newest 200'], ['1000', 'newest 1000']], '50');
  const body = h('tbody');
  const err = banner('error', 'whd-error');
  async function load() {
    try {
      const list = (await get('/webhooks/' + enc + '/deliveries?limit=' + limitSel.value)).data || [];
      err.textContent = '';
      body.replaceChildren(...list.map(row));
      if (!list.length) body.append(h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'No deliveries yet.')));
    } catch (e) { err.textContent = 'Deliveries: ' + e.message; }
  }
  limitSel.addEventListener('change', load);
  page('Webhook deliveries', h('span', {}, h('a', { href: '#/webhooks' }, 'Webhooks'), ' › ' + ep.id),
    h('div', { class: 'card' }, h('dl', { class: 'kv' },
      h('dt', {}, 'URL'), h('dd', { class: 'mono' }, ep.url), h('dt', {}, 'Events'), h('dd', {}, (ep.events || []).join(', ')),
      h('dt', {}, 'Description'), h('dd', {}, ep.description || '—'), h('dt', {}, 'Created'), h('dd', {}, when(ep.created_at)))),
    h('div', { class: 'card' }, err, h('div', { class: 'row' }, field('Show', limitSel), h('div')),
      h('table', { id: 'wh-deliveries' },
        h('thead', {}, h('tr', {}, ['Created', 'Event', 'Status', 'Attempts', 'Status codes', 'Last error', 'Next / delivered'].map((t) => h('th', {}, t)))), body)));
  await load();
  const timer = setInterval(() => { if (document.visibilityState === 'visible') load(); }, 2000);
  return () => clearInterval(timer);
}

function row(d) {
  const log = (d.attempt_log || []).slice().sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
  const codes = log.map((a) => a.status_code ? String(a.status_code) : 'no answer').join(', ');
  const badge = { delivered: 'okb', failed: 'low' }[d.status] || '';
  return h('tr', { 'data-delivery': d.id, 'data-status': d.status },
    h('td', {}, when(d.created_at)),
    h('td', {}, d.event_type, h('div', { class: 'muted mono' }, d.event_id)),
    h('td', {}, h('span', { class: 'badge ' + badge }, d.status)),
    h('td', { class: 'num' }, String(d.attempts)),
    h('td', { title: log.map((a) => when(a.at) + ': ' + (a.status_code || a.error || '') + ' in ' + a.duration_ms + ' ms').join('\n') }, codes || '—'),
    h('td', {}, d.last_error || '—'),
    h('td', {}, d.status === 'delivered' ? when(d.delivered_at) : d.status === 'pending' ? 'next ' + when(d.next_attempt_at) : '—'));
}
