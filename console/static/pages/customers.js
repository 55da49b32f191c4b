// Customers: the list and a form for a new one.
import { h, field, input, formError, clearErrors, showError, val, page } from '../dom.js';
import { addressText } from '../format.js';
import { api, get } from '../api.js';
import { addressFields, readAddress } from './address.js';

export async function pageCustomers() {
  const list = (await get('/customers')).data;
  const form = h('form', { class: 'card', id: 'customer-form', novalidate: true }, h('h2', {}, 'New customer'), formError(),
    h('div', { class: 'row' }, field('Customer ID', input('cust-id', 'id')), field('Name', input('cust-name', 'name')), field('Email', input('cust-email', 'email', { type: 'email' }))),
    h('div', { class: 'row' }, field('Billing provider', input('cust-provider', 'billing_provider', { placeholder: 'Customers EMEA' })),
      field('Payment method on file', input('cust-pm', 'payment_method', { placeholder: 'card **** 4242 exp 12/2034' }))),
    addressFields('cust-addr', 'address'),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create customer')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault(); clearErrors(form);
    const body = { id: val('cust-id'), name: val('cust-name') };
    if (val('cust-email')) body.email = val('cust-email');
    if (val('cust-provider')) body.billing_provider = val('cust-provider');
    if (val('cust-pm')) body.payment_method = val('cust-pm');
    const a = readAddress('cust-addr'); if (a) body.address = a;
    try { const c = await api('POST', '/customers', body); location.hash = '#/customers/' + encodeURIComponent(c.id); } catch (e) { showError(form, e); }
  });
  page('Customers', null,
    h('div', { class: 'card' }, h('table', { id: 'customers' },
      h('thead', {}, h('tr', {}, ['Customer', 'ID', 'Billing provider', 'Address'].map((t) => h('th', {}, t)))),
      h('tbody', {}, list.map((c) => h('tr', {}, h('td', {}, h('a', { href: '#/customers/' + encodeURIComponent(c.id) }, c.name)), h('td', {}, c.id),
        h('td', {}, c.billing_provider || ''), h('td', {}, addressText(c.address))))))),
    form);
}

