// A plan's form: + New plan, or a stored plan with Save changes.
import { h, field, cell, input, select, options, checkbox, errorP, banner, formError, clearErrors, showError, val, checked, page } from '../dom.js';
import { api, get } from '../api.js';

export async function pagePlanForm(id) {
  const [currencies, features, plan] = await Promise.all([
    get('/currencies').then((r) => r.data), get('/features').then((r) => r.data),
    id ? get('/plans/' + encodeURIComponent(id)) : Promise.resolve(null)]);
  const pp = (plan && plan.prepaid) || {};
  const prices = (pp.currency_values || [{ currency: 'USD', value: '' }]).map((cv) => ({ currency: cv.currency, value: cv.value }));
  const rows = (pp.consumption || [{ feature_id: '', credits_per_unit: '1' }]).map((r) => ({ feature_id: r.feature_id, rate: r.credits_per_unit }));
  const curOpts = currencies.map((c) => [c.code, c.name + ' (' + c.code + ')']);
  const featOpts = [['', 'Select a feature…']].concat(features.map((f) => [f.id, f.name + (f.meter && f.meter.kind !== 'event_based' ? ' (pre-aggregated meter)' : '')]));
  const prepaidBox = prepaidSection(pp, curOpts, priceTable(prices), consumptionTable(rows, featOpts));

  const form = h('form', { class: 'card', id: 'plan-form', novalidate: true }, formError(),
    h('div', { class: 'row' },
      field('Plan ID', input('plan-id', 'id', { value: id || '', readonly: !!id, placeholder: 'ai-prepaid' })),
      field('Product', input('plan-product', 'product', { value: plan ? plan.product : '', placeholder: 'ai-agents' })),
      field('Plan name', input('plan-name', 'name', { value: plan ? plan.name : '', placeholder: 'AI Agents Prepaid' }))),
    h('div', { class: 'row' },
      field('Plan type', select('plan-type', 'type', [['paid', 'Paid'], ['free', 'Free']], plan ? plan.type : 'paid')),
      field('Billing model', select('plan-billing-model', 'billing_model', [['prepaid', 'Prepaid'], ['postpaid', 'Postpaid']], plan ? plan.billing_model : 'prepaid'))),
    prepaidBox,
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'plan-save' }, 'Save changes'), h('a', { href: '#/plans' }, 'Cancel')),
    banner('ok', 'plan-saved'));
  form.addEventListener('change', (e) => {
    if (e.target.id === 'plan-minmax') document.getElementById('plan-minmax-fields').hidden = !e.target.checked;
    if (e.target.id === 'plan-billing-model') prepaidBox.hidden = e.target.value !== 'prepaid';
    if (e.target.id === 'plan-credit-currency') form.querySelectorAll('.credit-code').forEach((s) => { s.textContent = creditCode(); });
  });
  prepaidBox.hidden = plan ? plan.billing_model !== 'prepaid' : false;
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault(); clearErrors(form);
    document.getElementById('plan-saved').textContent = '';
    const body = { id: val('plan-id'), product: val('plan-product'), name: val('plan-name'), type: val('plan-type'), billing_model: val('plan-billing-model') };
    if (body.billing_model === 'prepaid') body.prepaid = readPrepaid(prices, rows);
    // ticked with nothing typed would save a plan without limits, silently
    if (body.prepaid && checked('plan-minmax') && !val('plan-min') && !val('plan-max')) {
      showError(form, { field: 'prepaid.min_purchase', message: 'Enter a minimum or a maximum purchase, or untick Min, Max rules.' });
      return;
    }
    try {
      const saved = id ? await api('PUT', '/plans/' + encodeURIComponent(id), body) : await api('POST', '/plans', body);
      if (!id) { location.hash = '#/plans/' + encodeURIComponent(saved.id); return; }
      document.getElementById('plan-saved').textContent = 'Saved plan ' + saved.name + '.';
    } catch (e) { showError(form, e); }
  });
  page(id ? 'Plan ' + (plan.name || id) : 'New plan', h('span', {}, 'Product Catalog › ', h('a', { href: '#/plans' }, 'Plans')), form);
}

// creditCode is the plan's credit currency as chosen so far.
const creditCode = () => val('plan-credit-currency') || 'credit';

// priceTable is the Currency value rows (one per price localization) and
// the button adding one; it edits prices in place.
function priceTable(prices) {
  const priceBody = h('tbody');
  function renderPrices() {
    priceBody.replaceChildren(...prices.map((p, i) => h('tr', {},
      h('td', { class: 'conv' }, '1 ', h('span', { class: 'credit-code' }, creditCode()), ' ='),
      cell('Currency value ' + (i + 1), input('plan-cv-' + i + '-value', 'prepaid.currency_values[' + i + '].value', { value: p.value, inputmode: 'decimal', placeholder: '1.00', oninput: (e) => { p.value = e.target.value; } })),
      cell('Price currency ' + (i + 1), input('plan-cv-' + i + '-currency', 'prepaid.currency_values[' + i + '].currency', { value: p.currency, placeholder: 'USD', maxlength: 3, oninput: (e) => { p.currency = e.target.value; } })),
      h('td', {}, prices.length > 1 ? h('button', { type: 'button', class: 'link', onclick: () => { prices.splice(i, 1); renderPrices(); } }, 'Remove') : null))));
  }
  renderPrices();
  return h('div', { class: 'field', id: 'plan-cv', 'data-field': 'prepaid.currency_values' }, h('span', { class: 'label' }, 'Currency value'),
    h('table', {}, priceBody), errorP('plan-cv'),
    h('button', { type: 'button', class: 'secondary', id: 'plan-cv-add', onclick: () => { prices.push({ currency: '', value: '' }); renderPrices(); } }, 'Add price localization'));
}

// consumptionTable is the Credit consumption rows (a metered feature and
// the credits one unit consumes) and the button adding one; it edits rows
// in place.
function consumptionTable(rows, featOpts) {
  const rowBody = h('tbody');
  function renderRows() {
    rowBody.replaceChildren(...rows.map((r, i) => h('tr', {},
      cell('Metered feature ' + (i + 1), h('select', { id: 'plan-cons-' + i + '-feature', 'data-field': 'prepaid.consumption[' + i + '].feature_id', value: r.feature_id, onchange: (e) => { r.feature_id = e.target.value; } }, options(featOpts, r.feature_id))),
      h('td', { class: 'conv' }, '1 unit ='),
      cell('Credits per unit ' + (i + 1), input('plan-cons-' + i + '-rate', 'prepaid.consumption[' + i + '].credits_per_unit', { value: r.rate, inputmode: 'decimal', oninput: (e) => { r.rate = e.target.value; } })),
      h('td', {}, h('span', { class: 'credit-code' }, creditCode())),
      h('td', {}, rows.length > 1 ? h('button', { type: 'button', class: 'link', onclick: () => { rows.splice(i, 1); renderRows(); } }, 'Remove') : null))));
  }
  renderRows();
  return h('fieldset', { id: 'plan-consumption', 'data-field': 'prepaid.consumption' }, h('legend', {}, 'Credit consumption'), errorP('plan-consumption'),
    h('p', { class: 'hint' }, 'Map each metered feature to the credits one unit consumes. Only event-based meters are currently supported for credit consumption mapping.'),
    h('table', {}, rowBody),
    h('button', { type: 'button', class: 'secondary', id: 'plan-cons-add', onclick: () => { rows.push({ feature_id: '', rate: '1' }); renderRows(); } }, 'Add'));
}

// prepaidSection is the prepaid configuration, shown for a prepaid plan.
function prepaidSection(pp, curOpts, priceTbl, consumptionTbl) {
  const minmaxOn = !!(pp.min_purchase || pp.max_purchase);
  const low = pp.low_balance || {};
  return h('div', { id: 'plan-prepaid-section' },
    h('fieldset', { id: 'plan-prepaid', 'data-field': 'prepaid' }, h('legend', {}, 'Prepaid configuration'), errorP('plan-prepaid'),
      h('div', { class: 'row' },
        field('Currency', select('plan-credit-currency', 'prepaid.credit_currency', [['', 'Select a credit currency…']].concat(curOpts), pp.credit_currency || (curOpts[0] || [''])[0])),
        field('Top-up model', select('plan-topup-model', 'prepaid.top_up_model.type', [['flat_rate', 'Flat rate']], 'flat_rate'), 'Every credit costs the currency value.')),
      priceTbl,
      h('div', { class: 'field' }, checkbox('plan-minmax', 'Min, Max rules: limit the credits of one purchase', minmaxOn)),
      h('div', { class: 'row', id: 'plan-minmax-fields', hidden: !minmaxOn },
        field('Minimum purchase (credits)', input('plan-min', 'prepaid.min_purchase', { value: pp.min_purchase || '', inputmode: 'decimal', placeholder: '250' })),
        field('Maximum purchase (credits)', input('plan-max', 'prepaid.max_purchase', { value: pp.max_purchase || '', inputmode: 'decimal', placeholder: '8000' }))),
      h('div', { class: 'row' },
        field('Low-balance alert below (credits)', input('plan-low-credits', 'prepaid.low_balance.credits', { value: low.credits || '', inputmode: 'decimal' })),
        field('… or below (% of the last grant)', input('plan-low-percent', 'prepaid.low_balance.percent', { value: low.percent || '', inputmode: 'decimal' })),
        field('When credits run out', select('plan-overage', 'prepaid.overage_policy', [['unfunded', 'Record the shortfall as unfunded usage'], ['overage', 'Let the balance go negative (overage)']], pp.overage_policy || 'unfunded')),
        field('Debt limit (credits, overage only)', input('plan-debt-limit', 'prepaid.debt_limit', { value: pp.debt_limit || '', inputmode: 'decimal', placeholder: 'none' }), 'Usage beyond it is recorded unfunded.'))),
    termsSection(pp),
    consumptionTbl);
}

// termsSection is the plan's purchase limit, payment confirmation,
// auto-recharge and end rule: shown so that Save changes (a PUT of the
// whole plan) keeps them.
function termsSection(pp) {
  const lim = pp.purchase_limit || {}, pay = pp.payment || {}, ar = pp.auto_recharge || {}, end = pp.on_end || {};
  return h('fieldset', { id: 'plan-terms' }, h('legend', {}, 'Purchases, payment and end'),
    h('div', { class: 'row' },
      field('Purchase limit per month (credits)', input('plan-limit-credits', 'prepaid.purchase_limit.credits', { value: lim.credits || '', inputmode: 'decimal', placeholder: 'none' })),
      field('… and/or (money charged)', input('plan-limit-charge', 'prepaid.purchase_limit.charge', { value: lim.charge || '', inputmode: 'decimal', placeholder: 'none' }), 'Per subscription and calendar month (UTC), pending top-ups included.')),
    h('div', { class: 'row' },
      h('div', { class: 'field' }, checkbox('plan-payment', 'Top-ups wait for payment confirmation', !!pay.confirmation_required, 'prepaid.payment.confirmation_required')),
      field('Unpaid top-ups expire after', input('plan-payment-expires', 'prepaid.payment.expires_in', { value: pay.expires_in || '', placeholder: '24h' }), 'A duration: 30m, 2h, 24h.')),
    h('div', { class: 'row' },
      field('Auto-recharge when the available balance falls below (credits)', input('plan-ar-threshold', 'prepaid.auto_recharge.threshold', { value: ar.threshold || '', inputmode: 'decimal', placeholder: 'off' })),
      field('… buy (credits)', input('plan-ar-amount', 'prepaid.auto_recharge.amount', { value: ar.amount || '', inputmode: 'decimal', placeholder: 'off' }), 'Each subscription may override it.')),
    h('div', { class: 'row' },
      field('When a subscription ends', select('plan-on-end', 'prepaid.on_end.remaining_credits', [['carry_over', 'Carry remaining credits over to the next plan (else they expire)'], ['expire', 'Expire remaining credits (breakage)']], end.remaining_credits || 'carry_over')),
      h('div', { class: 'field' }, checkbox('plan-refund', 'Refund purchased credits that expire, at their cost', !!end.refund_purchased, 'prepaid.on_end.refund_purchased'))));
}

// readPrepaid is the prepaid configuration the form asks for.
function readPrepaid(prices, rows) {
  const p = {
    credit_currency: val('plan-credit-currency'), top_up_model: { type: val('plan-topup-model') },
    currency_values: prices.map((x) => ({ currency: x.currency.trim().toUpperCase(), value: x.value.trim() })),
    consumption: rows.map((r) => ({ feature_id: r.feature_id, credits_per_unit: r.rate.trim() })),
    low_balance: {}, overage_policy: val('plan-overage'),
  };
  if (checked('plan-minmax')) {
    if (val('plan-min')) p.min_purchase = val('plan-min');
    if (val('plan-max')) p.max_purchase = val('plan-max');
  }
  if (val('plan-low-credits')) p.low_balance.credits = val('plan-low-credits');
  if (val('plan-low-percent')) p.low_balance.percent = val('plan-low-percent');
  if (val('plan-debt-limit')) p.debt_limit = val('plan-debt-limit');
  const lc = val('plan-limit-credits'), lm = val('plan-limit-charge');
  if (lc || lm) {
    p.purchase_limit = {};
    if (lc) p.purchase_limit.credits = lc;
    if (lm) p.purchase_limit.charge = lm;
  }
  if (checked('plan-payment')) {
    p.payment = { confirmation_required: true };
    if (val('plan-payment-expires')) p.payment.expires_in = val('plan-payment-expires');
  }
  // both or neither: the API names the one missing
  if (val('plan-ar-threshold') || val('plan-ar-amount')) p.auto_recharge = { threshold: val('plan-ar-threshold'), amount: val('plan-ar-amount') };
  if (val('plan-on-end') !== 'carry_over' || checked('plan-refund')) {
    p.on_end = { remaining_credits: val('plan-on-end') };
    if (checked('plan-refund')) p.on_end.refund_purchased = true;
  }
  return p;
}
