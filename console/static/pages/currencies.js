// Credit currencies: the list and a form for a new one.
import { h, field, input, formError, clearErrors, showError, val, page } from '../dom.js';
import { api, get } from '../api.js';
import { rerender } from '../session.js';

export async function pageCurrencies() {
  const list = (await get('/currencies')).data;
  const form = h('form', { class: 'card', id: 'currency-form', novalidate: true }, h('h2', {}, 'New credit currency'), formError(),
    h('div', { class: 'row' },
      field('Code', input('cur-code', 'code', { placeholder: 'AIT' })),
      field('Name', input('cur-name', 'name', { placeholder: 'AI Tokens' })),
      field('Symbol', input('cur-symbol', 'symbol'))),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create currency')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault(); clearErrors(form);
    const body = { code: val('cur-code'), name: val('cur-name') };
    if (val('cur-symbol')) body.symbol = val('cur-symbol');
    try { await api('POST', '/currencies', body); rerender(); } catch (e) { showError(form, e); }
  });
  page('Credit currencies', 'Product Catalog',
    h('div', { class: 'card' }, h('table', { id: 'currencies' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Code'), h('th', {}, 'Name'), h('th', {}, 'Symbol'))),
      h('tbody', {}, list.map((c) => h('tr', {}, h('td', {}, c.code), h('td', {}, c.name), h('td', {}, c.symbol || '')))))),
    form);
}
