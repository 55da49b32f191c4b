// Sign in: an admin token, or a customer token with its customer's ID. The
// role is found by asking the API: an admin may list customers, a customer
// token is refused that (403) but may read its own customer.
import { h, field, input, formError, clearErrors, showError, val, page } from '../dom.js';
import { api, get } from '../api.js';
import { store } from '../session.js';

export async function pageLogin() {
  const flash = store.getItem('cm.flash');
  store.removeItem('cm.flash');
  const form = h('form', { class: 'card', id: 'login-form', novalidate: true },
    formError(),
    field('API token', input('login-token', 'token', { type: 'password', autocomplete: 'current-password' }),
      'An admin token from --admin-tokens, or a customer token issued by an admin.'),
    field('Customer ID', input('login-customer', 'customer'), 'Only for a customer token: the customer it was issued for.'),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Sign in')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const tok = val('login-token');
    const cust = val('login-customer');
    if (!tok) return showError(form, { field: 'token', message: 'Enter a token.' });
    store.setItem('cm.token', tok);
    try {
      await api('GET', '/customers');
      store.setItem('cm.role', 'admin');
      location.hash = '#/plans';
    } catch (e) {
      if (e.status !== 403) { store.removeItem('cm.token'); return showError(form, { field: e.status === 401 ? 'token' : '', message: e.message }); }
      if (!cust) { store.removeItem('cm.token'); return showError(form, { field: 'customer', message: 'This is a customer token: enter the customer ID it was issued for.' }); }
      try {
        await get('/customers/' + encodeURIComponent(cust));
        store.setItem('cm.role', 'customer'); store.setItem('cm.customer', cust);
        location.hash = '#/my';
      } catch (e2) {
        store.removeItem('cm.token');
        showError(form, { field: 'customer', message: e2.status === 403 ? 'This token does not belong to customer ' + cust + '.' : e2.message });
      }
    }
  });
  page('Sign in', null, flash ? h('div', { class: 'banner warn', role: 'status' }, flash) : null, form);
}
