// A customer: details, subscriptions, and its tokens (issue with an
// optional expiry, list, revoke).
import { h, page, field, input, formError, clearErrors, showError, val } from '../dom.js';
import { tokenList } from './tokens.js';
import { when, addressText } from '../format.js';
import { api, get } from '../api.js';

export async function pageCustomer(id) {
  const enc = encodeURIComponent(id);
  const [c, subs] = await Promise.all([get('/customers/' + enc), get('/customers/' + enc + '/subscriptions').then((r) => r.data)]);
  page(c.name, h('span', {}, h('a', { href: '#/customers' }, 'Customers'), ' › ' + c.id),
    h('div', { class: 'card' }, h('dl', { class: 'kv' },
      h('dt', {}, 'Customer ID'), h('dd', {}, c.id), h('dt', {}, 'Email'), h('dd', {}, c.email || '—'),
      h('dt', {}, 'Billing provider'), h('dd', {}, c.billing_provider || '—'), h('dt', {}, 'Billing address'), h('dd', {}, addressText(c.address)),
      h('dt', {}, 'Payment method'), h('dd', {}, c.payment_method || '—'))),
    h('div', { class: 'card' },
      h('div', { class: 'bar' }, h('h2', {}, 'Subscriptions'), h('div', { class: 'actions' },
        h('a', { class: 'button secondary', id: 'customer-usage', href: '#/customers/' + enc + '/usage' }, 'Usage by dimension'),
        h('a', { class: 'button', id: 'create-subscription', href: '#/customers/' + enc + '/subscribe' }, 'Create subscription'))),
      subs.length ? h('table', { id: 'customer-subscriptions' },
        h('thead', {}, h('tr', {}, ['Subscription', 'Plan', 'Price localization', 'Starts'].map((t) => h('th', {}, t)))),
        h('tbody', {}, subs.map((sub) => h('tr', {}, h('td', {}, h('a', { href: '#/subscriptions/' + encodeURIComponent(sub.id) }, sub.id)),
          h('td', {}, sub.plan_id), h('td', {}, sub.currency), h('td', {}, when(sub.start_at))))))
        : h('p', { class: 'muted' }, 'No subscriptions yet.')),
    tokensCard(c, enc));
}

// tokensCard issues customer tokens (optionally expiring), lists them
// without their secrets, and revokes them.
function tokensCard(c, enc) {
  const out = h('div', { id: 'token-out', role: 'status' });
  const tokens = tokenList(enc, out);
  const form = h('form', { id: 'token-form', novalidate: true }, formError(),
    field('Expires after', input('token-expires-in', 'expires_in', { placeholder: 'P30D' }),
      'An ISO 8601 duration (PT12H, P30D, P1Y); blank: the token never expires. A revoked or expired token is refused within a second.'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'secondary', id: 'issue-token' }, 'Issue customer token')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault(); clearErrors(form); out.replaceChildren();
    const exp = val('token-expires-in');
    try {
      const t = await api('POST', '/customers/' + enc + '/tokens', exp ? { expires_in: exp } : undefined);
      out.replaceChildren(h('p', {}, 'Customer token (sign in with it and customer ID ' + c.id + '; shown this once' + (t.expires_at ? ', expires ' + when(t.expires_at) : '') + '):'),
        h('p', { class: 'token', id: 'customer-token' }, t.token));
      await tokens.load();
    } catch (e) { showError(form, e); }
  });
  return h('div', { class: 'card' }, h('h2', {}, 'Self-service access'),
    h('p', { class: 'hint' }, 'A customer token lets ' + c.name + ' see its balance and ledger and top up credits in this console. It is shown once.'),
    form, out, h('h3', {}, 'Tokens'), tokens.table);
}
