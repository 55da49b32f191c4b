// Create subscription: configuration, credits, consumption overrides,
// schedule and billing, then the API's preview and the creation, sent with
// one Idempotency-Key per previewed body.
import { h, field, cell, input, select, options, radio, errorP, formError, clearErrors, showError, val, checked, page } from '../dom.js';
import { fmt, money } from '../decimal.js';
import { when, isoOrRaw, limitsText, addressText, meterText } from '../format.js';
import { api, get, key } from '../api.js';
import { addressFields, readAddress } from './address.js';

export async function pageSubscribe(customerID) {
  const enc = encodeURIComponent(customerID);
  const [c, plans, features, currencies] = await Promise.all([get('/customers/' + enc), get('/plans').then((r) => r.data),
    get('/features').then((r) => r.data), get('/currencies').then((r) => r.data)]);
  const prepaid = plans.filter((p) => p.billing_model === 'prepaid' && p.prepaid);
  const products = [...new Set(prepaid.map((p) => p.product))].sort();
  const curName = (code) => { const x = currencies.find((k) => k.code === code); return x ? x.name + ' (' + code + ')' : code; };
  const featOpts = [['', 'Select a feature…']].concat(features.map((f) => [f.id, f.name + (f.meter && f.meter.kind !== 'event_based' ? ' (pre-aggregated meter)' : '')]));
  const featName = (fid) => { const f = features.find((x) => x.id === fid); return f ? f.name : fid; };
  let plan = null, rows = [], editValue = false, previewed = null, idemKey = null;

  const productSel = select('sub-product', 'product', products.map((p) => [p, p]), products[0]);
  const planSel = h('select', { id: 'sub-plan', 'data-field': 'plan_id' });
  const locSel = h('select', { id: 'sub-currency', 'data-field': 'currency' });
  const valueText = h('span', { id: 'sub-credit-value-text' });
  const valueInput = input('sub-credit-value', 'credit_value', { inputmode: 'decimal' });
  const valueBox = h('div', { id: 'sub-credit-value-box', hidden: true }, field('Credit value (money per credit)', valueInput, 'Overrides the plan\'s value for this subscription.'));
  const rowBody = h('tbody');
  const previewBox = h('div', { id: 'sub-preview', class: 'card', hidden: true, 'aria-live': 'polite' });

  function fillPlans() {
    const list = prepaid.filter((p) => p.product === productSel.value);
    planSel.replaceChildren(...options(list.map((p) => [p.id, p.name + ' (' + p.id + ')']), list[0] && list[0].id));
    pickPlan();
  }
  function pickPlan() {
    plan = prepaid.find((p) => p.id === planSel.value) || null;
    const cvs = plan ? plan.prepaid.currency_values : [];
    locSel.replaceChildren(...options(cvs.map((cv) => [cv.currency, cv.currency]), cvs[0] && cvs[0].currency));
    rows = plan ? plan.prepaid.consumption.map((r) => ({ feature_id: r.feature_id, rate: r.credits_per_unit, plan: r.credits_per_unit })) : [];
    renderRows(); pickCurrency();
  }
  function planValue() {
    if (!plan) return '';
    const cv = plan.prepaid.currency_values.find((x) => x.currency === locSel.value);
    return cv ? cv.value : '';
  }
  function pickCurrency() {
    const code = plan ? plan.prepaid.credit_currency : '';
    valueText.textContent = '1 ' + curName(code) + ' = ' + (editValue ? '(edited below)' : money(planValue(), locSel.value));
    document.querySelector('label[for="sub-credit-value"]').textContent = 'Credit value (' + locSel.value + ' per ' + code + ')';
    if (!editValue) valueInput.value = planValue();
    document.querySelectorAll('.sub-credit-code').forEach((x) => { x.textContent = code; });
    const lim = plan ? limitsText(plan.prepaid.min_purchase, plan.prepaid.max_purchase, code) : '';
    document.getElementById('sub-limits').textContent = 'Top-up limits of the plan: ' + lim + '.';
    invalidate();
  }
  function renderRows() {
    const code = plan ? plan.prepaid.credit_currency : '';
    rowBody.replaceChildren(...rows.map((r, i) => h('tr', {},
      cell('Feature ' + (i + 1), h('select', { id: 'sub-cons-' + i + '-feature', 'data-field': 'consumption[' + i + '].feature_id', disabled: r.plan != null, onchange: (e) => { r.feature_id = e.target.value; invalidate(); } }, options(featOpts, r.feature_id))),
      h('td', { class: 'conv' }, '1 unit ='),
      cell('Rate ' + (i + 1), input('sub-cons-' + i + '-rate', 'consumption[' + i + '].credits_per_unit', { value: r.rate, inputmode: 'decimal', oninput: (e) => { r.rate = e.target.value; invalidate(); } })),
      h('td', {}, h('span', { class: 'sub-credit-code' }, code)),
      h('td', { class: 'muted' }, r.plan != null ? 'plan rate ' + fmt(r.plan) : h('button', { type: 'button', class: 'link', onclick: () => { rows.splice(i, 1); renderRows(); invalidate(); } }, 'Remove')))));
  }
  const { incOn, incBox } = includedCredits();
  const form = h('form', { id: 'subscribe-form', novalidate: true }, formError(),
    h('div', { class: 'card' }, h('h2', {}, 'Configuration'),
      h('div', { class: 'row' }, field('Product', productSel), field('Plan', planSel), field('Price localization', locSel))),
    h('div', { class: 'card' }, h('h2', {}, 'Credits'),
      h('p', {}, valueText, ' ', h('button', { type: 'button', class: 'link', id: 'sub-edit-value', 'aria-controls': 'sub-credit-value-box', onclick: () => {
        editValue = !editValue; valueBox.hidden = !editValue;
        document.getElementById('sub-edit-value').textContent = editValue ? 'Use the plan\'s value' : '✎ Edit credit value';
        if (!editValue) valueInput.value = planValue();
        pickCurrency(); if (editValue) valueInput.focus();
      } }, '✎ Edit credit value')), valueBox, h('p', { class: 'hint', id: 'sub-limits' }),
      h('h3', {}, 'Included credits'), h('div', { class: 'field' }, h('label', { class: 'inline', for: 'sub-included-enabled' }, incOn, 'Enable'), errorP('sub-included-enabled')), incBox),
    h('div', { class: 'card' }, h('fieldset', { id: 'sub-consumption', 'data-field': 'consumption' }, h('legend', {}, 'Credit consumption'), errorP('sub-consumption'),
      h('p', { class: 'hint' }, 'The plan\'s rates apply unless changed here; a changed or added row overrides it for this subscription only.'),
      h('table', {}, rowBody),
      h('button', { type: 'button', class: 'secondary', id: 'sub-cons-add', onclick: () => { rows.push({ feature_id: '', rate: '1', plan: null }); renderRows(); invalidate(); } }, 'Add'))),
    scheduleCard(), billingCard(c),
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'sub-preview-btn' }, 'Preview subscription'), h('a', { href: '#/customers/' + enc }, 'Cancel')));

  function invalidate() { previewed = null; previewBox.hidden = true; }
  function body() {
    const b = { customer_id: customerID, product: productSel.value, plan_id: planSel.value, currency: locSel.value };
    if (editValue && valueInput.value.trim()) b.credit_value = valueInput.value.trim();
    if (incOn.checked) b.included_credits = readIncluded();
    const over = overrides(rows).map(([r]) => ({ feature_id: r.feature_id, credits_per_unit: r.rate.trim() }));
    if (over.length) b.consumption = over;
    b.schedule = checked('sub-start-at') ? { start: 'at', at: isoOrRaw(val('sub-start-time')) } : { start: 'now' };
    b.billing = readBilling();
    return b;
  }
  form.addEventListener('change', (e) => {
    const t = e.target;
    if (t === productSel) fillPlans();
    else if (t === planSel) pickPlan();
    else if (t === locSel) pickCurrency();
    showChosen(t, incOn, incBox);
    invalidate();
  });
  form.addEventListener('input', invalidate);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault(); clearErrors(form);
    const b = body();
    try {
      const pv = await api('POST', '/subscriptions/preview', b);
      previewed = b; idemKey = key();
      renderPreview(pv);
    } catch (e) { e.field = mapField(e.field, rows); showError(form, e); }
  });
  function renderPreview(pv) {
    previewBox.replaceChildren(...previewContent(pv, c, featName, create));
    previewBox.hidden = false;
    previewBox.scrollIntoView({ block: 'start' });
  }
  async function create() {
    if (!previewed) return;
    const btn = document.getElementById('sub-create');
    btn.disabled = true;
    try {
      const sub = await api('POST', '/subscriptions', previewed, { 'Idempotency-Key': idemKey });
      location.hash = '#/subscriptions/' + encodeURIComponent(sub.id);
    } catch (e) {
      btn.disabled = false;
      document.getElementById('sub-create-error').textContent = e.message;
      if (e.field) { e.field = mapField(e.field, rows); showError(form, e); }
    }
  }
  page('Create subscription', h('span', {}, h('a', { href: '#/customers' }, 'Customers'), ' › ', h('a', { href: '#/customers/' + enc }, c.name)), form, previewBox);
  if (!products.length) form.querySelector('.form-error').textContent = 'No prepaid plan yet: create one under Product Catalog › Plans.';
  fillPlans();
}

// includedCredits is the Included credits box: its Enable box and fields.
function includedCredits() {
  const incOn = h('input', { type: 'checkbox', id: 'sub-included-enabled', 'data-field': 'included_credits.enabled' });
  const incBox = h('div', { id: 'sub-included-fields', hidden: true },
    h('fieldset', { id: 'sub-grant-type', 'data-field': 'included_credits.grant_type' }, h('legend', {}, 'Initial grant amount'),
      radio('sub-grant', 'sub-grant-purchased', 'purchased', 'Purchase credits', true), radio('sub-grant', 'sub-grant-promotional', 'promotional', 'Promo grants', false), errorP('sub-grant-type')),
    h('div', { class: 'row' },
      field('Credit amount', input('sub-included-amount', 'included_credits.amount', { inputmode: 'decimal', placeholder: '100' })),
      field('Expiration rule', select('sub-expiration', 'included_credits.expiration.rule', [['never', 'Never'], ['duration', 'After a duration'], ['date', 'At a date'], ['end_of_billing_period', 'End of the billing period']], 'never')),
      h('div', { id: 'sub-exp-duration-box', hidden: true }, field('Expires after', input('sub-exp-duration', 'included_credits.expiration.duration', { placeholder: 'P30D' }), 'ISO 8601: P30D, P2W, P1M, P1Y')),
      h('div', { id: 'sub-exp-date-box', hidden: true }, field('Expires at', input('sub-exp-date', 'included_credits.expiration.date', { type: 'datetime-local' })))));
  return { incOn, incBox };
}

// showChosen shows the fields a choice asks for: the included credits, the
// expiration's duration or date, the start time.
function showChosen(t, incOn, incBox) {
  if (t === incOn) incBox.hidden = !incOn.checked;
  if (t.id === 'sub-expiration') { document.getElementById('sub-exp-duration-box').hidden = t.value !== 'duration'; document.getElementById('sub-exp-date-box').hidden = t.value !== 'date'; }
  if (t.name === 'sub-start') document.getElementById('sub-start-at-box').hidden = !checked('sub-start-at');
}

// readIncluded is the included_credits the Included credits fields ask for.
function readIncluded() {
  const exp = { rule: val('sub-expiration') };
  if (exp.rule === 'duration') exp.duration = val('sub-exp-duration');
  if (exp.rule === 'date') exp.date = isoOrRaw(val('sub-exp-date'));
  return { enabled: true, grant_type: checked('sub-grant-promotional') ? 'promotional' : 'purchased', amount: val('sub-included-amount'), expiration: exp };
}

// scheduleCard is the Schedule card: now, or at a later time.
function scheduleCard() {
  return h('div', { class: 'card' }, h('fieldset', { id: 'sub-schedule', 'data-field': 'schedule' }, h('legend', {}, 'Schedule'), errorP('sub-schedule'),
    radio('sub-start', 'sub-start-now', 'now', 'Immediately', true), radio('sub-start', 'sub-start-at', 'at', 'At a later time', false),
    h('div', { id: 'sub-start-at-box', hidden: true }, field('Starts at', input('sub-start-time', 'schedule.at', { type: 'datetime-local' })))));
}

function billingCard(c) {
  return h('div', { class: 'card' }, h('h2', {}, 'Billing'),
    h('div', { class: 'row' },
      field('Billing provider', input('sub-provider', 'billing.provider', { value: c.billing_provider || '' })),
      field('Payment method', input('sub-payment', 'billing.payment_method', { value: c.payment_method || '' }), 'Charged automatically using the payment method on file.'),
      field('Billing period', select('sub-period', 'billing.period', [['month', 'Monthly'], ['year', 'Yearly']], 'month'))),
    h('h3', {}, 'Billing address'), addressFields('sub-addr', 'billing.address', c.address));
}

// readBilling is the billing the Billing card asks for.
function readBilling() {
  const bill = { period: val('sub-period') };
  if (val('sub-provider')) bill.provider = val('sub-provider');
  if (val('sub-payment')) bill.payment_method = val('sub-payment');
  const a = readAddress('sub-addr'); if (a) bill.address = a;
  return bill;
}

// overrides are the consumption rows that differ from the plan (changed or
// added), with their index on screen: the body sends only these.
function overrides(rows) {
  return rows.map((r, i) => [r, i]).filter(([r]) => r.plan == null || r.rate.trim() !== r.plan);
}

// consumption rows in the body are the overrides only; map their error
// paths back to the row on screen.
function mapField(f, rows) {
  const m = /^consumption\[(\d+)\](.*)$/.exec(f || '');
  if (!m) return f;
  const hit = overrides(rows)[Number(m[1])];
  return hit ? 'consumption[' + hit[1] + ']' + m[2] : f;
}

// previewContent shows the API's preview of the subscription, with the
// button that creates it.
function previewContent(pv, c, featName, create) {
  const inc = pv.included_credits;
  const createErr = h('div', { class: 'banner error', id: 'sub-create-error', role: 'alert' });
  const rowsT = h('table', { id: 'preview-consumption' },
    h('thead', {}, h('tr', {}, ['Feature', 'Meter', 'Credits per unit', 'Source'].map((t) => h('th', {}, t)))),
    h('tbody', {}, pv.consumption.map((r) => h('tr', {}, h('td', {}, r.feature_name || featName(r.feature_id)),
      h('td', {}, meterText(r)),
      h('td', { class: 'num' }, fmt(r.credits_per_unit) + ' ' + pv.credit_currency), h('td', {}, r.source)))));
  const bill = pv.billing || {};
  return [h('h2', {}, 'Subscription preview'),
    h('dl', { class: 'kv', id: 'preview-summary' },
      h('dt', {}, 'Customer'), h('dd', {}, c.name + ' (' + pv.customer_id + ')'),
      h('dt', {}, 'Product'), h('dd', {}, pv.product), h('dt', {}, 'Plan'), h('dd', {}, pv.plan_id),
      h('dt', {}, 'Price localization'), h('dd', {}, pv.currency),
      h('dt', {}, 'Credit value'), h('dd', { id: 'preview-credit-value' }, '1 ' + pv.credit_currency + ' = ' + money(pv.credit_value, pv.currency) + (pv.credit_value_source === 'subscription' ? ' (edited for this subscription)' : ' (plan)')),
      h('dt', {}, 'Included credits'), h('dd', { id: 'preview-included' }, inc ? fmt(inc.amount) + ' ' + pv.credit_currency + ' · ' + (inc.grant_type === 'promotional' ? 'promo grant' : 'purchased') + ' · ' + (inc.expires_at ? 'expires ' + when(inc.expires_at) : 'never expires') : 'none'),
      h('dt', {}, 'Charged now'), h('dd', { id: 'preview-charge' }, money(pv.charge_now.amount, pv.charge_now.currency)),
      h('dt', {}, 'Starts'), h('dd', { id: 'preview-start' }, when(pv.start_at)),
      h('dt', {}, 'Top-up limits'), h('dd', {}, limitsText(pv.min_purchase, pv.max_purchase, pv.credit_currency)),
      h('dt', {}, 'When credits run out'), h('dd', {}, pv.overage_policy === 'overage' ? 'the balance goes negative (overage)' : 'the shortfall is recorded as unfunded usage'),
      h('dt', {}, 'Billing'), h('dd', {}, [bill.provider, addressText(bill.address), bill.payment_method, bill.period === 'year' ? 'yearly' : 'monthly'].filter(Boolean).join(' · '))),
    h('h3', {}, 'Credit consumption'), rowsT, createErr,
    h('div', { class: 'actions' }, h('button', { type: 'button', id: 'sub-create', onclick: create }, 'Create subscription'))];
}
