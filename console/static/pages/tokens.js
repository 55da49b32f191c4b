// The list of a customer's tokens, without their secrets, each with a
// Revoke button: on the admin's customer page and on the customer's own
// page (the API lets a customer token list and revoke its customer's
// tokens, itself included).
import { h, confirmButton } from '../dom.js';
import { when } from '../format.js';
import { api, get } from '../api.js';
import { store, signOut } from '../session.js';

// tokenList returns the table and its load(); out shows what a revocation
// did. The session's own token is marked (its prefix is the secret's
// first 8 characters); revoking it signs out.
export function tokenList(enc, out) {
  const body = h('tbody');
  const table = h('table', { id: 'customer-tokens' },
    h('thead', {}, h('tr', {}, ['Token', 'Prefix', 'Created', 'Expires', 'Last used', ''].map((t) => h('th', {}, t)))), body);
  async function load() {
    const list = (await get('/customers/' + enc + '/tokens')).data || [];
    const mine = store.getItem('cm.role') === 'customer' ? (store.getItem('cm.token') || '').slice(0, 8) : '';
    body.replaceChildren(...list.map((t) => {
      const expired = t.expires_at && new Date(t.expires_at) < new Date();
      const self = mine !== '' && t.prefix === mine;
      return h('tr', { 'data-token': t.id, 'data-prefix': t.prefix },
        h('td', { class: 'mono' }, t.id, self ? ' ' : null, self ? h('span', { class: 'badge okb' }, 'this session') : null),
        h('td', { class: 'mono' }, t.prefix + '…'), h('td', {}, when(t.created_at)),
        h('td', {}, t.expires_at ? when(t.expires_at) : 'never', expired ? ' ' : null, expired ? h('span', { class: 'badge low' }, 'expired') : null),
        h('td', { class: 'last-used' }, when(t.last_used_at)),
        h('td', {}, confirmButton('Revoke', self ? 'Confirm: revoke and sign out' : 'Confirm revoke', { class: 'revoke' }, async () => {
          try {
            await api('DELETE', '/customers/' + enc + '/tokens/' + encodeURIComponent(t.id));
          } catch (e) { out.replaceChildren(h('div', { class: 'banner error', role: 'alert' }, e.message)); return; }
          if (self) { signOut('Signed out: this session\'s token was revoked.'); return; }
          out.replaceChildren(h('div', { class: 'banner ok' }, 'Revoked token ' + t.prefix + '… (' + t.id + ').'));
          await load().catch(() => {});
        })));
    }));
    if (!list.length) body.append(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No tokens.')));
  }
  load().catch((e) => body.replaceChildren(h('tr', {}, h('td', { colspan: 6, class: 'error' }, 'Tokens: ' + e.message))));
  return { table, load };
}
