// A customer: details, subscriptions, and issuing a customer token.
import { h, page } from '../dom.js';
import { when, addressText } from '../format.js';
import { api, get } from '../api.js';

export async function pageCustomer(id) {
  const enc = encodeURIComponent(id);
  const [c, subs] = await Promise.all([get('/customers/' + enc), get('/customers/' + enc + '/subscriptions').then((r) => r.data)]);
  const tokenOut = h('div', { id: 'token-out', role: 'status' });
  page(c.name, h('span', {}, h('a', { href: '#/customers' }, 'Customers'), ' › ' + c.id),
    h('div', { class: 'card' }, h('dl', { class: 'kv' },
      h('dt', {}, 'Customer ID'), h('dd', {}, c.id), h('dt', {}, 'Email'), h('dd', {}, c.email || '—'),
      h('dt', {}, 'Billing provider'), h('dd', {}, c.billing_provider || '—'), h('dt', {}, 'Billing address'), h('dd', {}, addressText(c.address)),
      h('dt', {}, 'Payment method'), h('dd', {}, c.payment_method || '—'))),
    h('div', { class: 'card' },
      h('div', { class: 'bar' }, h('h2', {}, 'Subscriptions'), h('a', { class: 'button', id: 'create-subscription', href: '#/customers/' + enc + '/subscribe' }, 'Create subscription')),
      subs.length ? h('table', { id: 'customer-subscriptions' },
        h('thead', {}, h('tr', {}, ['Subscription', 'Plan', 'Price localization', 'Starts'].map((t) => h('th', {}, t)))),
        h('tbody', {}, subs.map((sub) => h('tr', {}, h('td', {}, h('a', { href: '#/subscriptions/' + encodeURIComponent(sub.id) }, sub.id)),
          h('td', {}, sub.plan_id), h('td', {}, sub.currency), h('td', {}, when(sub.start_at))))))
        : h('p', { class: 'muted' }, 'No subscriptions yet.')),
    h('div', { class: 'card' }, h('h2', {}, 'Self-service access'),
      h('p', { class: 'hint' }, 'A customer token lets ' + c.name + ' see its balance and ledger and top up credits in this console. It is shown once.'),
      h('button', { type: 'button', class: 'secondary', id: 'issue-token', onclick: async () => {
        try {
          const t = await api('POST', '/customers/' + enc + '/tokens');
          tokenOut.replaceChildren(h('p', {}, 'Customer token (sign in with it and customer ID ' + c.id + '):'), h('p', { class: 'token', id: 'customer-token' }, t.token));
        } catch (e) { tokenOut.replaceChildren(h('div', { class: 'banner error', role: 'alert' }, e.message)); }
      } }, 'Issue customer token'), tokenOut));
}

