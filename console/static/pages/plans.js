// Product Catalog › Plans: the list of plans.
import { h, page } from '../dom.js';
import { money } from '../decimal.js';
import { limitsText } from '../format.js';
import { get } from '../api.js';

export async function pagePlans() {
  const plans = (await get('/plans')).data;
  page('Plans', 'Product Catalog',
    h('div', { class: 'bar' }, h('span', { class: 'muted' }, plans.length + ' plan' + (plans.length === 1 ? '' : 's')),
      h('a', { class: 'button', href: '#/plans/new', id: 'new-plan' }, '+ New plan')),
    h('div', { class: 'card' }, h('table', { id: 'plans' },
      h('thead', {}, h('tr', {}, ['Plan', 'ID', 'Product', 'Type', 'Billing model', 'Credits', 'Currency value', 'Top-up limits'].map((t) => h('th', {}, t)))),
      h('tbody', {}, plans.map((p) => {
        const pp = p.prepaid || {};
        return h('tr', {},
          h('td', {}, h('a', { href: '#/plans/' + encodeURIComponent(p.id) }, p.name || p.id)), h('td', {}, p.id), h('td', {}, p.product),
          h('td', {}, p.type), h('td', {}, p.billing_model), h('td', {}, pp.credit_currency || ''),
          h('td', {}, (pp.currency_values || []).map((cv) => '1 ' + pp.credit_currency + ' = ' + money(cv.value, cv.currency)).join(', ')),
          h('td', {}, limitsText(pp.min_purchase, pp.max_purchase, pp.credit_currency)));
      })))));
}
