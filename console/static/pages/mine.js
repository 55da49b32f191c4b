// My subscriptions: a customer's own subscriptions, and its tokens (list,
// revoke).
import { h, page } from '../dom.js';
import { when } from '../format.js';
import { get } from '../api.js';
import { store } from '../session.js';
import { tokenList } from './tokens.js';

export async function pageMine() {
  const cust = store.getItem('cm.customer');
  const subs = (await get('/customers/' + encodeURIComponent(cust) + '/subscriptions')).data;
  page('My subscriptions', null, h('div', { class: 'card' },
    subs.length ? h('table', { id: 'my-subscriptions' },
      h('thead', {}, h('tr', {}, ['Subscription', 'Plan', 'Currency', 'Started'].map((t) => h('th', {}, t)))),
      h('tbody', {}, subs.map((sub) => h('tr', {}, h('td', {}, h('a', { href: '#/my/subscriptions/' + encodeURIComponent(sub.id) }, sub.id)),
        h('td', {}, sub.plan_id), h('td', {}, sub.currency), h('td', {}, when(sub.start_at))))))
      : h('p', { class: 'muted' }, 'No subscriptions.')),
    tokensCard(encodeURIComponent(cust)));
}

function tokensCard(enc) {
  const out = h('div', { id: 'token-out', role: 'status' });
  return h('div', { class: 'card' }, h('h2', {}, 'Access tokens'),
    h('p', { class: 'hint' }, 'The tokens that can sign in as your account. Revoke one you no longer use or that may have leaked; new tokens are issued by your administrator.'),
    out, tokenList(enc, out).table);
}

