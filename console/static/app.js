// creditmeter console: a small single-page app over the JSON API under /v1.
// The API is the only path to the data; the token lives in sessionStorage.
// Amounts stay the API's decimal strings: they are only displayed, compared
// and summed with BigInt (never with floating point); numbers are used only
// for chart geometry.
'use strict';
(function () {
  const store = window.sessionStorage;
  const base = (location.pathname.match(/^(.*?)\/console(\/|$)/) || [null, ''])[1];
  const API = base + '/v1';

  // ---------- DOM helpers ----------
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    let value;
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else if (k === 'value') value = v;
      else if (k === 'checked') el.checked = !!v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const k of kids.flat(Infinity)) {
      if (k == null || k === false) continue;
      el.append(k instanceof Node ? k : String(k));
    }
    if (value !== undefined) el.value = value;
    return el;
  }
  const SVGNS = 'http://www.w3.org/2000/svg';
  function s(tag, attrs, ...kids) {
    const el = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v != null) el.setAttribute(k, String(v));
    for (const k of kids) if (k != null) el.append(k instanceof Node ? k : String(k));
    return el;
  }
  function options(list, selected) {
    return list.map(([v, label]) => h('option', { value: v, selected: v === selected }, label));
  }
  function errorP(id) {
    return h('p', { class: 'error', id: id + '-error', 'data-error-for': id, 'aria-live': 'polite' });
  }
  // field wraps a control with its label, an optional hint and its error slot.
  function field(label, control, hint) {
    const id = control.id;
    control.setAttribute('aria-describedby', (hint ? id + '-hint ' : '') + id + '-error');
    return h('div', { class: 'field' }, h('label', { for: id }, label), control,
      hint ? h('p', { class: 'hint', id: id + '-hint' }, hint) : null, errorP(id));
  }
  // cell is a table cell holding a control with a visually hidden label.
  function cell(label, control) {
    control.setAttribute('aria-describedby', control.id + '-error');
    return h('td', {}, h('label', { class: 'sr-only', for: control.id }, label), control, errorP(control.id));
  }
  function input(id, fieldPath, attrs) {
    return h('input', Object.assign({ type: 'text', id, name: id, 'data-field': fieldPath, autocomplete: 'off' }, attrs || {}));
  }
  function select(id, fieldPath, list, selected) {
    return h('select', { id, name: id, 'data-field': fieldPath }, options(list, selected));
  }
  function checkbox(id, label, checked, fieldPath) {
    return h('label', { class: 'inline', for: id }, h('input', { type: 'checkbox', id, checked, 'data-field': fieldPath }), label);
  }
  function radio(name, id, value, label, checked) {
    return h('label', { class: 'inline', for: id }, h('input', { type: 'radio', name, id, value, checked }), label);
  }
  const val = (id) => { const el = document.getElementById(id); return el ? el.value.trim() : ''; };
  const checked = (id) => { const el = document.getElementById(id); return !!(el && el.checked); };
  function banner(kind, id) { return h('div', { class: 'banner ' + kind, id, role: kind === 'error' ? 'alert' : 'status' }); }

  // ---------- decimals (strings in, strings out) ----------
  const SCALE = 9;
  function toBig(str) {
    const m = /^\s*([-+]?)(\d*)(?:\.(\d*))?\s*$/.exec(String(str));
    if (!m || (m[2] === '' && !m[3]) || (m[3] || '').length > SCALE) return null;
    const v = BigInt((m[2] || '0') + (m[3] || '').padEnd(SCALE, '0'));
    return m[1] === '-' ? -v : v;
  }
  function fromBig(v) {
    const neg = v < 0n;
    const str = (neg ? -v : v).toString().padStart(SCALE + 1, '0');
    const frac = str.slice(-SCALE).replace(/0+$/, '');
    return (neg ? '-' : '') + str.slice(0, -SCALE) + (frac ? '.' + frac : '');
  }
  // fmt groups the integer digits of a decimal string: "8000" -> "8,000".
  function fmt(str) {
    if (str == null || str === '') return '—';
    str = String(str);
    const neg = str.startsWith('-');
    const [i, f] = (neg ? str.slice(1) : str).split('.');
    return (neg ? '-' : '') + i.replace(/\B(?=(\d{3})+(?!\d))/g, ',') + (f ? '.' + f : '');
  }
  const ZERO_DECIMAL = new Set(['JPY', 'KRW', 'VND', 'CLP', 'ISK', 'HUF', 'TWD', 'UGX', 'XAF', 'XOF']);
  // money pads a decimal string to the currency's minor unit, for display.
  function money(str, cur) {
    if (str == null || str === '') return '—';
    str = String(str);
    const want = ZERO_DECIMAL.has(cur) ? 0 : 2;
    let [i, f = ''] = str.split('.');
    if (f.length < want) f = f.padEnd(want, '0');
    return fmt(i + (f ? '.' + f : '')) + (cur ? ' ' + cur : '');
  }
  function when(t) {
    if (!t) return '—';
    const d = new Date(t);
    if (isNaN(d)) return String(t);
    return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC').replace(/Z$/, ' UTC');
  }

  // ---------- API ----------
  class ApiError extends Error {
    constructor(status, code, message, field) { super(message); this.status = status; this.code = code; this.field = field || ''; }
  }
  async function api(method, path, body, headers) {
    const init = { method, headers: Object.assign({ Accept: 'application/json' }, headers || {}) };
    const tok = store.getItem('cm.token');
    if (tok) init.headers.Authorization = 'Bearer ' + tok;
    if (body !== undefined) { init.headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body); }
    let res;
    try { res = await fetch(API + path, init); } catch (e) {
      throw new ApiError(0, 'network', 'The API did not answer (' + e.message + '); try again.');
    }
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { /* not JSON */ }
    if (!res.ok) {
      const e = (data && data.error) || {};
      const err = new ApiError(res.status, e.code || 'http_' + res.status, e.message || res.status + ' ' + res.statusText, e.field);
      if (res.status === 401 && role()) signOut('Signed out: ' + err.message);
      throw err;
    }
    return data;
  }
  const get = (path) => api('GET', path);
  const key = () => (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random().toString(16).slice(2));

  // ---------- form errors ----------
  function clearErrors(form) {
    form.querySelectorAll('[data-error-for]').forEach((p) => { p.textContent = ''; });
    form.querySelectorAll('[aria-invalid]').forEach((el) => el.removeAttribute('aria-invalid'));
    form.querySelectorAll('.form-error').forEach((b) => { b.textContent = ''; });
  }
  // parentPath: "prepaid.consumption[0].feature_id" -> "prepaid.consumption[0]" -> "prepaid.consumption" -> "prepaid".
  function parentPath(p) { const m = /^(.*)(\.[^.[\]]+|\[\d+\])$/.exec(p); return m ? m[1] : ''; }
  // showError puts an API error next to the control its field path names
  // (or the nearest enclosing one), else at the top of the form.
  function showError(form, err) {
    clearErrors(form);
    for (let p = err.field; p; p = parentPath(p)) {
      const el = form.querySelector('[data-field="' + CSS.escape(p) + '"]');
      if (!el) continue;
      const slot = document.getElementById(el.id + '-error');
      if (!slot) continue;
      slot.textContent = err.message;
      el.setAttribute('aria-invalid', 'true');
      if (el.focus) el.focus();
      return;
    }
    const b = form.querySelector('.form-error');
    if (b) b.textContent = err.message + (err.field ? ' (' + err.field + ')' : '');
  }
  function formError() { return h('div', { class: 'banner error form-error', role: 'alert' }); }

  // ---------- session and routing ----------
  function role() { return store.getItem('cm.role'); }
  function signOut(message) {
    store.removeItem('cm.token'); store.removeItem('cm.role'); store.removeItem('cm.customer');
    if (message) store.setItem('cm.flash', message);
    if (location.hash === '#/login') route(); else location.hash = '#/login';
  }
  let stopPage = null;
  const app = () => document.getElementById('app');
  function navLinks() {
    const nav = document.getElementById('nav');
    const who = document.getElementById('who');
    nav.replaceChildren(); who.replaceChildren();
    const r = role();
    const here = location.hash;
    const link = (href, label) => h('a', { href, 'aria-current': here.startsWith(href) ? 'page' : null }, label);
    if (r === 'admin') {
      nav.append(link('#/plans', 'Product Catalog › Plans'), link('#/features', 'Features'), link('#/currencies', 'Credit currencies'), link('#/customers', 'Customers'));
      who.append(h('span', {}, 'Admin'));
    } else if (r === 'customer') {
      nav.append(link('#/my', 'My subscriptions'));
      who.append(h('span', {}, 'Customer ' + store.getItem('cm.customer')));
    }
    if (r) who.append(h('button', { type: 'button', class: 'secondary', onclick: () => signOut() }, 'Sign out'));
  }
  const routes = [
    [/^#\/login$/, pageLogin, null],
    [/^#\/plans$/, pagePlans, 'admin'],
    [/^#\/plans\/new$/, () => pagePlanForm(null), 'admin'],
    [/^#\/plans\/([^/]+)$/, (id) => pagePlanForm(id), 'admin'],
    [/^#\/features$/, pageFeatures, 'admin'],
    [/^#\/currencies$/, pageCurrencies, 'admin'],
    [/^#\/customers$/, pageCustomers, 'admin'],
    [/^#\/customers\/([^/]+)$/, pageCustomer, 'admin'],
    [/^#\/customers\/([^/]+)\/subscribe$/, pageSubscribe, 'admin'],
    [/^#\/subscriptions\/([^/]+)$/, (id) => pageSubscription(id, true), 'admin'],
    [/^#\/my$/, pageMine, 'customer'],
    [/^#\/my\/subscriptions\/([^/]+)$/, (id) => pageSubscription(id, false), 'customer'],
  ];
  // route renders the page of the hash; calls while one renders are folded
  // into one more run afterwards, so the last hash wins.
  let routing = false, again = false;
  async function route() {
    if (routing) { again = true; return; }
    routing = true;
    try { await render(); } finally {
      routing = false;
      if (again) { again = false; route(); }
    }
  }
  async function render() {
    if (stopPage) { stopPage(); stopPage = null; }
    const r = role();
    let hash = location.hash || '#/';
    if (!r && hash !== '#/login') { location.hash = '#/login'; return; }
    if (hash === '#/' || hash === '#') { location.hash = r === 'customer' ? '#/my' : '#/plans'; return; }
    navLinks();
    for (const [re, page, need] of routes) {
      const m = re.exec(hash);
      if (!m) continue;
      if (need && need !== r) break;
      const root = app();
      root.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
      try {
        const out = await page(...m.slice(1).map(decodeURIComponent));
        if (typeof out === 'function') stopPage = out;
      } catch (e) {
        root.replaceChildren(h('h1', {}, 'Something went wrong'), h('div', { class: 'banner error', role: 'alert' }, e.message));
      }
      root.focus({ preventScroll: true });
      return;
    }
    app().replaceChildren(h('h1', {}, 'Not found'), h('p', {}, 'No page at ' + hash + '. ', h('a', { href: '#/' }, 'Start page')));
  }
  function page(title, crumbs, ...kids) {
    document.title = title + ' · creditmeter';
    app().replaceChildren(...[crumbs ? h('div', { class: 'crumbs' }, crumbs) : null, h('h1', {}, title), ...kids].filter(Boolean));
  }

  // ---------- login ----------
  async function pageLogin() {
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

  // ---------- catalog: currencies and features ----------
  async function pageCurrencies() {
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
      try { await api('POST', '/currencies', body); route(); } catch (e) { showError(form, e); }
    });
    page('Credit currencies', 'Product Catalog',
      h('div', { class: 'card' }, h('table', { id: 'currencies' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Code'), h('th', {}, 'Name'), h('th', {}, 'Symbol'))),
        h('tbody', {}, list.map((c) => h('tr', {}, h('td', {}, c.code), h('td', {}, c.name), h('td', {}, c.symbol || '')))))),
      form);
  }

  async function pageFeatures() {
    const list = (await get('/features')).data;
    const kind = select('feat-kind', 'meter.kind', [['event_based', 'Event-based'], ['pre_aggregated', 'Pre-aggregated totals']], 'event_based');
    const form = h('form', { class: 'card', id: 'feature-form', novalidate: true }, h('h2', {}, 'New feature'), formError(),
      h('div', { class: 'row' }, field('Feature ID', input('feat-id', 'id', { placeholder: 'ai-agent-email' })), field('Name', input('feat-name', 'name', { placeholder: 'AI Agent Email' }))),
      h('fieldset', { id: 'feat-meter', 'data-field': 'meter' }, h('legend', {}, 'Meter'), errorP('feat-meter'),
        h('div', { class: 'row' }, field('Meter kind', kind), field('Event name', input('feat-event', 'meter.event_name', { placeholder: 'email.sent' })),
          field('Aggregation', select('feat-agg', 'meter.aggregation', [['COUNT', 'COUNT (each event is 1 unit)'], ['SUM', 'SUM of a dimension']], 'COUNT')),
          field('Dimension (SUM only)', input('feat-dim', 'meter.dimension', { placeholder: 'tokens' })))),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create feature')));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault(); clearErrors(form);
      const meter = { kind: val('feat-kind') };
      if (meter.kind === 'event_based') {
        meter.event_name = val('feat-event'); meter.aggregation = val('feat-agg');
        if (val('feat-dim')) meter.dimension = val('feat-dim');
      }
      try { await api('POST', '/features', { id: val('feat-id'), name: val('feat-name'), meter }); route(); } catch (e) { showError(form, e); }
    });
    page('Features', 'Product Catalog',
      h('div', { class: 'card' }, h('table', { id: 'features' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Feature'), h('th', {}, 'ID'), h('th', {}, 'Meter'))),
        h('tbody', {}, list.map((f) => h('tr', {}, h('td', {}, f.name), h('td', {}, f.id), h('td', {}, meterText(f.meter))))))),
      form);
  }
  function meterText(m) {
    if (!m) return '';
    if (m.kind !== 'event_based') return 'pre-aggregated (cannot map to credits)';
    return 'event "' + m.event_name + '" · ' + (m.aggregation === 'SUM' ? 'SUM(' + m.dimension + ')' : 'COUNT');
  }

  // ---------- plans ----------
  async function pagePlans() {
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
  function limitsText(min, max, cur) {
    if (!min && !max) return 'none';
    if (min && max) return fmt(min) + ' – ' + fmt(max) + ' ' + cur;
    return min ? 'at least ' + fmt(min) + ' ' + cur : 'at most ' + fmt(max) + ' ' + cur;
  }

  async function pagePlanForm(id) {
    const [currencies, features, plan] = await Promise.all([
      get('/currencies').then((r) => r.data), get('/features').then((r) => r.data),
      id ? get('/plans/' + encodeURIComponent(id)) : Promise.resolve(null)]);
    const pp = (plan && plan.prepaid) || {};
    const prices = (pp.currency_values || [{ currency: 'USD', value: '' }]).map((cv) => ({ currency: cv.currency, value: cv.value }));
    const rows = (pp.consumption || [{ feature_id: '', credits_per_unit: '1' }]).map((r) => ({ feature_id: r.feature_id, rate: r.credits_per_unit }));
    const curOpts = currencies.map((c) => [c.code, c.name + ' (' + c.code + ')']);
    const featOpts = [['', 'Select a feature…']].concat(features.map((f) => [f.id, f.name + (f.meter && f.meter.kind !== 'event_based' ? ' (pre-aggregated meter)' : '')]));
    const creditCode = () => val('plan-credit-currency') || 'credit';

    const priceBody = h('tbody');
    function renderPrices() {
      priceBody.replaceChildren(...prices.map((p, i) => h('tr', {},
        h('td', { class: 'conv' }, '1 ', h('span', { class: 'credit-code' }, creditCode()), ' ='),
        cell('Currency value ' + (i + 1), input('plan-cv-' + i + '-value', 'prepaid.currency_values[' + i + '].value', { value: p.value, inputmode: 'decimal', placeholder: '1.00', oninput: (e) => { p.value = e.target.value; } })),
        cell('Price currency ' + (i + 1), input('plan-cv-' + i + '-currency', 'prepaid.currency_values[' + i + '].currency', { value: p.currency, placeholder: 'USD', maxlength: 3, oninput: (e) => { p.currency = e.target.value; } })),
        h('td', {}, prices.length > 1 ? h('button', { type: 'button', class: 'link', onclick: () => { prices.splice(i, 1); renderPrices(); } }, 'Remove') : null))));
    }
    const rowBody = h('tbody');
    function renderRows() {
      rowBody.replaceChildren(...rows.map((r, i) => h('tr', {},
        cell('Metered feature ' + (i + 1), h('select', { id: 'plan-cons-' + i + '-feature', 'data-field': 'prepaid.consumption[' + i + '].feature_id', value: r.feature_id, onchange: (e) => { r.feature_id = e.target.value; } }, options(featOpts, r.feature_id))),
        h('td', { class: 'conv' }, '1 unit ='),
        cell('Credits per unit ' + (i + 1), input('plan-cons-' + i + '-rate', 'prepaid.consumption[' + i + '].credits_per_unit', { value: r.rate, inputmode: 'decimal', oninput: (e) => { r.rate = e.target.value; } })),
        h('td', {}, h('span', { class: 'credit-code' }, creditCode())),
        h('td', {}, rows.length > 1 ? h('button', { type: 'button', class: 'link', onclick: () => { rows.splice(i, 1); renderRows(); } }, 'Remove') : null))));
    }
    renderPrices(); renderRows();
    const minmaxOn = !!(pp.min_purchase || pp.max_purchase);
    const low = pp.low_balance || {};
    const prepaidBox = h('div', { id: 'plan-prepaid-section' },
      h('fieldset', { id: 'plan-prepaid', 'data-field': 'prepaid' }, h('legend', {}, 'Prepaid configuration'), errorP('plan-prepaid'),
        h('div', { class: 'row' },
          field('Currency', select('plan-credit-currency', 'prepaid.credit_currency', [['', 'Select a credit currency…']].concat(curOpts), pp.credit_currency || (curOpts[0] || [''])[0])),
          field('Top-up model', select('plan-topup-model', 'prepaid.top_up_model.type', [['flat_rate', 'Flat rate']], 'flat_rate'), 'Every credit costs the currency value.')),
        h('div', { class: 'field', id: 'plan-cv', 'data-field': 'prepaid.currency_values' }, h('span', { class: 'label' }, 'Currency value'),
          h('table', {}, priceBody), errorP('plan-cv'),
          h('button', { type: 'button', class: 'secondary', id: 'plan-cv-add', onclick: () => { prices.push({ currency: '', value: '' }); renderPrices(); } }, 'Add price localization')),
        h('div', { class: 'field' }, checkbox('plan-minmax', 'Min, Max rules: limit the credits of one purchase', minmaxOn)),
        h('div', { class: 'row', id: 'plan-minmax-fields', hidden: !minmaxOn },
          field('Minimum purchase (credits)', input('plan-min', 'prepaid.min_purchase', { value: pp.min_purchase || '', inputmode: 'decimal', placeholder: '250' })),
          field('Maximum purchase (credits)', input('plan-max', 'prepaid.max_purchase', { value: pp.max_purchase || '', inputmode: 'decimal', placeholder: '8000' }))),
        h('div', { class: 'row' },
          field('Low-balance alert below (credits)', input('plan-low-credits', 'prepaid.low_balance.credits', { value: low.credits || '', inputmode: 'decimal' })),
          field('… or below (% of the last grant)', input('plan-low-percent', 'prepaid.low_balance.percent', { value: low.percent || '', inputmode: 'decimal' })),
          field('When credits run out', select('plan-overage', 'prepaid.overage_policy', [['unfunded', 'Record the shortfall as unfunded usage'], ['overage', 'Let the balance go negative (overage)']], pp.overage_policy || 'unfunded')))),
      h('fieldset', { id: 'plan-consumption', 'data-field': 'prepaid.consumption' }, h('legend', {}, 'Credit consumption'), errorP('plan-consumption'),
        h('p', { class: 'hint' }, 'Map each metered feature to the credits one unit consumes. Only event-based meters are currently supported for credit consumption mapping.'),
        h('table', {}, rowBody),
        h('button', { type: 'button', class: 'secondary', id: 'plan-cons-add', onclick: () => { rows.push({ feature_id: '', rate: '1' }); renderRows(); } }, 'Add')));

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
      if (body.billing_model === 'prepaid') {
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
        body.prepaid = p;
      }
      try {
        const saved = id ? await api('PUT', '/plans/' + encodeURIComponent(id), body) : await api('POST', '/plans', body);
        if (!id) { location.hash = '#/plans/' + encodeURIComponent(saved.id); return; }
        document.getElementById('plan-saved').textContent = 'Saved plan ' + saved.name + '.';
      } catch (e) { showError(form, e); }
    });
    page(id ? 'Plan ' + (plan.name || id) : 'New plan', h('span', {}, 'Product Catalog › ', h('a', { href: '#/plans' }, 'Plans')), form);
  }

  // ---------- customers ----------
  function addressFields(prefix, fieldPrefix, a) {
    a = a || {};
    return h('div', { class: 'row' },
      field('Address line 1', input(prefix + '-line1', fieldPrefix + '.line1', { value: a.line1 || '' })),
      field('Address line 2', input(prefix + '-line2', fieldPrefix + '.line2', { value: a.line2 || '' })),
      field('City', input(prefix + '-city', fieldPrefix + '.city', { value: a.city || '' })),
      field('Region', input(prefix + '-region', fieldPrefix + '.region', { value: a.region || '' })),
      field('Postal code', input(prefix + '-postal', fieldPrefix + '.postal_code', { value: a.postal_code || '' })),
      field('Country (2 letters)', input(prefix + '-country', fieldPrefix + '.country', { value: a.country || '', maxlength: 2 })));
  }
  function readAddress(prefix) {
    const a = { line1: val(prefix + '-line1'), line2: val(prefix + '-line2'), city: val(prefix + '-city'), region: val(prefix + '-region'), postal_code: val(prefix + '-postal'), country: val(prefix + '-country').toUpperCase() };
    if (!Object.values(a).some(Boolean)) return undefined;
    for (const k of ['line2', 'region', 'postal_code']) if (!a[k]) delete a[k];
    return a;
  }
  function addressText(a) {
    if (!a) return '—';
    return [a.line1, a.line2, a.city, a.region, a.postal_code, a.country].filter(Boolean).join(', ');
  }
  async function pageCustomers() {
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

  async function pageCustomer(id) {
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

  // ---------- create subscription ----------
  async function pageSubscribe(customerID) {
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
    const incOn = h('input', { type: 'checkbox', id: 'sub-included-enabled', 'data-field': 'included_credits.enabled' });
    const incBox = h('div', { id: 'sub-included-fields', hidden: true },
      h('fieldset', { id: 'sub-grant-type', 'data-field': 'included_credits.grant_type' }, h('legend', {}, 'Initial grant amount'),
        radio('sub-grant', 'sub-grant-purchased', 'purchased', 'Purchase credits', true), radio('sub-grant', 'sub-grant-promotional', 'promotional', 'Promo grants', false), errorP('sub-grant-type')),
      h('div', { class: 'row' },
        field('Credit amount', input('sub-included-amount', 'included_credits.amount', { inputmode: 'decimal', placeholder: '100' })),
        field('Expiration rule', select('sub-expiration', 'included_credits.expiration.rule', [['never', 'Never'], ['duration', 'After a duration'], ['date', 'At a date'], ['end_of_billing_period', 'End of the billing period']], 'never')),
        h('div', { id: 'sub-exp-duration-box', hidden: true }, field('Expires after', input('sub-exp-duration', 'included_credits.expiration.duration', { placeholder: 'P30D' }), 'ISO 8601: P30D, P2W, P1M, P1Y')),
        h('div', { id: 'sub-exp-date-box', hidden: true }, field('Expires at', input('sub-exp-date', 'included_credits.expiration.date', { type: 'datetime-local' })))));
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
      h('div', { class: 'card' }, h('fieldset', { id: 'sub-schedule', 'data-field': 'schedule' }, h('legend', {}, 'Schedule'), errorP('sub-schedule'),
        radio('sub-start', 'sub-start-now', 'now', 'Immediately', true), radio('sub-start', 'sub-start-at', 'at', 'At a later time', false),
        h('div', { id: 'sub-start-at-box', hidden: true }, field('Starts at', input('sub-start-time', 'schedule.at', { type: 'datetime-local' }))))),
      h('div', { class: 'card' }, h('h2', {}, 'Billing'),
        h('div', { class: 'row' },
          field('Billing provider', input('sub-provider', 'billing.provider', { value: c.billing_provider || '' })),
          field('Payment method', input('sub-payment', 'billing.payment_method', { value: c.payment_method || '' }), 'Charged automatically using the payment method on file.'),
          field('Billing period', select('sub-period', 'billing.period', [['month', 'Monthly'], ['year', 'Yearly']], 'month'))),
        h('h3', {}, 'Billing address'), addressFields('sub-addr', 'billing.address', c.address)),
      h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'sub-preview-btn' }, 'Preview subscription'), h('a', { href: '#/customers/' + enc }, 'Cancel')));

    function invalidate() { previewed = null; previewBox.hidden = true; }
    function body() {
      const b = { customer_id: customerID, product: productSel.value, plan_id: planSel.value, currency: locSel.value };
      if (editValue && valueInput.value.trim()) b.credit_value = valueInput.value.trim();
      if (incOn.checked) {
        const exp = { rule: val('sub-expiration') };
        if (exp.rule === 'duration') exp.duration = val('sub-exp-duration');
        if (exp.rule === 'date') exp.date = isoOrRaw(val('sub-exp-date'));
        b.included_credits = { enabled: true, grant_type: checked('sub-grant-promotional') ? 'promotional' : 'purchased', amount: val('sub-included-amount'), expiration: exp };
      }
      const over = rows.filter((r) => r.plan == null || r.rate.trim() !== r.plan).map((r) => ({ feature_id: r.feature_id, credits_per_unit: r.rate.trim() }));
      if (over.length) b.consumption = over;
      b.schedule = checked('sub-start-at') ? { start: 'at', at: isoOrRaw(val('sub-start-time')) } : { start: 'now' };
      const bill = { period: val('sub-period') };
      if (val('sub-provider')) bill.provider = val('sub-provider');
      if (val('sub-payment')) bill.payment_method = val('sub-payment');
      const a = readAddress('sub-addr'); if (a) bill.address = a;
      b.billing = bill;
      return b;
    }
    // consumption rows in the body are the overrides only; map their error
    // paths back to the row on screen.
    function mapField(f) {
      const m = /^consumption\[(\d+)\](.*)$/.exec(f || '');
      if (!m) return f;
      const over = rows.map((r, i) => [r, i]).filter(([r]) => r.plan == null || r.rate.trim() !== r.plan);
      const hit = over[Number(m[1])];
      return hit ? 'consumption[' + hit[1] + ']' + m[2] : f;
    }
    form.addEventListener('change', (e) => {
      const t = e.target;
      if (t === productSel) fillPlans();
      else if (t === planSel) pickPlan();
      else if (t === locSel) pickCurrency();
      if (t === incOn) incBox.hidden = !incOn.checked;
      if (t.id === 'sub-expiration') { document.getElementById('sub-exp-duration-box').hidden = t.value !== 'duration'; document.getElementById('sub-exp-date-box').hidden = t.value !== 'date'; }
      if (t.name === 'sub-start') document.getElementById('sub-start-at-box').hidden = !checked('sub-start-at');
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
      } catch (e) { e.field = mapField(e.field); showError(form, e); }
    });
    function renderPreview(pv) {
      const inc = pv.included_credits;
      const createErr = h('div', { class: 'banner error', id: 'sub-create-error', role: 'alert' });
      const rowsT = h('table', { id: 'preview-consumption' },
        h('thead', {}, h('tr', {}, ['Feature', 'Meter', 'Credits per unit', 'Source'].map((t) => h('th', {}, t)))),
        h('tbody', {}, pv.consumption.map((r) => h('tr', {}, h('td', {}, r.feature_name || featName(r.feature_id)),
          h('td', {}, 'event "' + r.event_name + '" · ' + (r.aggregation === 'SUM' ? 'SUM(' + r.dimension + ')' : 'COUNT')),
          h('td', { class: 'num' }, fmt(r.credits_per_unit) + ' ' + pv.credit_currency), h('td', {}, r.source)))));
      const bill = pv.billing || {};
      previewBox.replaceChildren(h('h2', {}, 'Subscription preview'),
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
        h('div', { class: 'actions' }, h('button', { type: 'button', id: 'sub-create', onclick: create }, 'Create subscription')));
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
        if (e.field) { e.field = mapField(e.field); showError(form, e); }
      }
    }
    page('Create subscription', h('span', {}, h('a', { href: '#/customers' }, 'Customers'), ' › ', h('a', { href: '#/customers/' + enc }, c.name)), form, previewBox);
    if (!products.length) form.querySelector('.form-error').textContent = 'No prepaid plan yet: create one under Product Catalog › Plans.';
    fillPlans();
  }
  function isoOrRaw(v) {
    if (!v) return v;
    const d = new Date(v);
    return isNaN(d) ? v : d.toISOString();
  }

  // ---------- customer: own subscriptions ----------
  async function pageMine() {
    const cust = store.getItem('cm.customer');
    const subs = (await get('/customers/' + encodeURIComponent(cust) + '/subscriptions')).data;
    page('My subscriptions', null, h('div', { class: 'card' },
      subs.length ? h('table', { id: 'my-subscriptions' },
        h('thead', {}, h('tr', {}, ['Subscription', 'Plan', 'Currency', 'Started'].map((t) => h('th', {}, t)))),
        h('tbody', {}, subs.map((sub) => h('tr', {}, h('td', {}, h('a', { href: '#/my/subscriptions/' + encodeURIComponent(sub.id) }, sub.id)),
          h('td', {}, sub.plan_id), h('td', {}, sub.currency), h('td', {}, when(sub.start_at))))))
        : h('p', { class: 'muted' }, 'No subscriptions.')));
  }

  // ---------- subscription: balance, grants, usage, ledger, top-up, adjustment ----------
  async function pageSubscription(id, admin) {
    const enc = encodeURIComponent(id);
    const sub = await get('/subscriptions/' + enc);
    const plan = await get('/plans/' + encodeURIComponent(sub.plan_id));
    const pp = plan.prepaid || {};
    const code = pp.credit_currency || '';
    const cv = sub.credit_value || ((pp.currency_values || []).find((x) => x.currency === sub.currency) || {}).value;
    let stopped = false, timer = null, lastSeq = 0, usageSource = null;
    const ledger = [];

    const stats = h('div', { class: 'stats', id: 'balance-stats' });
    const updated = h('p', { class: 'hint', id: 'balance-updated', 'aria-live': 'off' });
    const balErr = banner('error', 'balance-error');
    const grantsBody = h('tbody', { id: 'grants-body' });
    const ledgerBody = h('tbody', { id: 'ledger-body' });
    const chart = h('div', { class: 'chart', id: 'usage-chart' });
    const byFeature = h('div', { id: 'usage-by-feature' });
    const features = await get('/features').then((r) => r.data).catch(() => []);
    const featureName = (fid) => { const f = features.find((x) => x.id === fid); return f ? f.name : fid; };

    // The invoice of a month, when the API serves invoices.
    const months = [];
    for (let i = 0, d = new Date(); i < 3; i++) {
      months.push(new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - i, 1)).toISOString().slice(0, 7));
    }
    const periodSel = h('select', { id: 'invoice-period' }, options(months.map((m) => [m, m]), months[0]));
    const invoiceBody = h('div', { id: 'invoice-body' });
    const csvStatus = h('span', { class: 'hint', id: 'invoice-csv-status', role: 'status' });
    const invoiceCard = h('section', { class: 'card', id: 'invoice', hidden: true, 'aria-labelledby': 'invoice-h' },
      h('div', { class: 'bar' }, h('h2', { id: 'invoice-h' }, 'Invoice'),
        h('div', { class: 'actions' }, csvStatus, h('button', { type: 'button', class: 'secondary', id: 'invoice-csv', onclick: downloadCSV }, 'Download CSV'),
          h('label', { class: 'sr-only', for: 'invoice-period' }, 'Invoice period'), periodSel)), invoiceBody);
    // downloadCSV fetches the CSV with the token (a plain link cannot send
    // it) and saves it.
    async function downloadCSV() {
      csvStatus.textContent = '';
      const name = 'invoice-' + sub.id + '-' + periodSel.value + '.csv';
      try {
        const res = await fetch(API + '/subscriptions/' + enc + '/invoices?period=' + periodSel.value + '&format=csv', { headers: { Authorization: 'Bearer ' + store.getItem('cm.token') } });
        if (!res.ok) throw new Error(res.status + ' ' + res.statusText);
        const url = URL.createObjectURL(await res.blob());
        const a = h('a', { href: url, download: name, hidden: true });
        document.body.append(a); a.click(); a.remove();
        setTimeout(() => URL.revokeObjectURL(url), 10000);
        csvStatus.textContent = 'Saved ' + name;
      } catch (e) { csvStatus.textContent = 'Download failed: ' + e.message; }
    }
    let invoiceDue = true;
    periodSel.addEventListener('change', () => loadInvoice());
    async function loadInvoice() {
      let r;
      try {
        r = await get('/subscriptions/' + enc + '/invoices?period=' + periodSel.value);
      } catch (e) {
        if (e.status === 404 || e.status === 405 || e.status === 501) { invoiceCard.hidden = true; return; }
        invoiceCard.hidden = false;
        invoiceBody.replaceChildren(h('div', { class: 'banner error', role: 'alert' }, e.message));
        return;
      }
      const inv = r && (r.lines ? r : ((r.invoices || r.data || [])[0]));
      invoiceCard.hidden = false;
      if (!inv) { invoiceBody.replaceChildren(h('p', { class: 'muted' }, 'No invoice for ' + periodSel.value + '.')); return; }
      const cur = inv.currency || sub.currency;
      invoiceBody.replaceChildren(
        h('table', { id: 'invoice-lines' },
          h('thead', {}, h('tr', {}, ['Line', 'Credits', 'Price per credit', 'Amount', ''].map((t, i) => h('th', { class: i && i < 4 ? 'num' : null }, t)))),
          h('tbody', {}, (inv.lines || []).map((l) => h('tr', {}, h('td', {}, l.description || l.kind),
            h('td', { class: 'num' }, fmt(l.credits) + ' ' + (inv.credit_currency || code)), h('td', { class: 'num' }, money(l.unit_price, cur)),
            h('td', { class: 'num' }, money(l.money, cur)), h('td', { class: 'muted' }, l.billable ? '' : 'not billed'))))),
        h('dl', { class: 'kv', id: 'invoice-totals' },
          h('dt', {}, 'Opening balance'), h('dd', {}, fmt(inv.opening_balance) + ' ' + code),
          h('dt', {}, 'Closing balance'), h('dd', {}, fmt(inv.closing_balance) + ' ' + code),
          h('dt', {}, 'Total due'), h('dd', { id: 'invoice-total' }, money(inv.total_due, cur))));
    }

    function stat(k, v, id2) { return h('div', { class: 'stat' }, h('div', { class: 'k' }, k), h('div', { class: 'v', id: id2 }, v)); }
    function renderBalance(b) {
      stats.replaceChildren(
        stat('Available', fmt(b.available) + ' ' + code, 'bal-available'), stat('Total', fmt(b.total) + ' ' + code, 'bal-total'),
        stat('Debt', fmt(b.debt) + ' ' + code, 'bal-debt'), stat('Unfunded usage', fmt(b.unfunded) + ' ' + code, 'bal-unfunded'),
        h('div', { class: 'stat' }, h('div', { class: 'k' }, 'Status'), h('div', { class: 'v' },
          b.low ? h('span', { class: 'badge low', id: 'bal-low' }, 'Low balance') : h('span', { class: 'badge okb', id: 'bal-low' }, 'OK')),
          h('div', { class: 'hint' }, b.policy === 'overage' ? 'overage allowed' : 'shortfall unfunded')));
      grantsBody.replaceChildren(...(b.grants || []).map((g) => h('tr', {}, h('td', {}, g.id), h('td', {}, g.type),
        h('td', { class: 'num' }, fmt(g.amount)), h('td', { class: 'num' }, fmt(g.remaining)), h('td', {}, when(g.effective_at)), h('td', {}, g.expires_at ? when(g.expires_at) : 'never'))));
      if (!(b.grants || []).length) grantsBody.append(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No live grants.')));
      updated.textContent = 'Live · updated ' + new Date().toLocaleTimeString();
    }
    function entryDetails(e) {
      const parts = [];
      if (e.reason) parts.push('reason: ' + e.reason);
      if (e.actor) parts.push('by ' + e.actor);
      if (e.charge) parts.push('charged ' + money(e.charge, e.currency || sub.currency));
      if (e.events) parts.push(e.events + ' event' + (e.events === 1 ? '' : 's'));
      if (e.unfunded && toBig(e.unfunded) !== 0n) parts.push('unfunded ' + fmt(e.unfunded));
      if (e.grant_id) parts.push('grant ' + e.grant_id);
      return parts.join(' · ');
    }
    const kindName = { grant: 'Grant', topup: 'Top-up', adjustment: 'Adjustment', adjust: 'Adjustment', usage: 'Usage', expiry: 'Expiry' };
    function renderLedger() {
      const shown = ledger.slice(-200).reverse();
      ledgerBody.replaceChildren(...shown.map((e) => h('tr', { 'data-seq': e.seq, 'data-kind': e.kind },
        h('td', { class: 'num' }, e.seq), h('td', {}, when(e.time)), h('td', {}, kindName[e.kind] || e.kind),
        h('td', { class: 'num' }, (toBig(e.amount) > 0n ? '+' : '') + fmt(e.amount)), h('td', { class: 'num' }, fmt(e.balance_after)), h('td', {}, entryDetails(e)))));
      if (!shown.length) ledgerBody.append(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No entries.')));
    }
    async function loadLedger() {
      for (let i = 0; i < 50; i++) {
        const r = await get('/subscriptions/' + enc + '/ledger?from_seq=' + (lastSeq + 1) + '&limit=500');
        const got = (r && r.entries) || [];
        for (const e of got) { if (e.seq > lastSeq) { ledger.push(e); lastSeq = e.seq; } }
        if (got.length < 500) break;
      }
      if (ledger.length > 5000) ledger.splice(0, ledger.length - 5000);
    }
    // usageDays is credits consumed per UTC day over the last 14 days, and
    // per feature when the API serves the usage report; where it does not
    // (yet), the days are summed (exactly) from the ledger's usage entries.
    let usageNote = '';
    async function usageDays() {
      usageNote = '';
      const days = [];
      const today = new Date(); today.setUTCHours(0, 0, 0, 0);
      for (let i = 13; i >= 0; i--) days.push(new Date(today.getTime() - i * 86400000).toISOString().slice(0, 10));
      const sums = new Map(days.map((d) => [d, 0n]));
      if (usageSource !== 'ledger') {
        try {
          const q = '/subscriptions/' + enc + '/usage?from=' + days[0] + 'T00:00:00Z&to=' +
            new Date(today.getTime() + 86400000).toISOString().replace(/\.\d+Z$/, 'Z') + '&group_by=';
          const [byDay, byFeature] = await Promise.all([get(q + 'day'), get(q + 'feature')]);
          usageSource = 'usage';
          for (const row of (byDay && byDay.rows) || []) {
            const d = String(row.day || '').slice(0, 10);
            if (sums.has(d)) sums.set(d, sums.get(d) + (toBig(row.credits) || 0n));
          }
          return { days, sums, features: (byFeature && byFeature.rows) || [] };
        } catch (e) {
          // No such route: use the ledger from now on; the report failing
          // (archive down or not configured): use the ledger this time.
          if (e.status === 404 || e.status === 405 || e.status === 501) usageSource = 'ledger';
          else usageNote = ' (from the ledger; the usage report answered: ' + e.message + ')';
        }
      }
      for (const e of ledger) {
        if (e.kind !== 'usage') continue;
        const d = String(e.time || '').slice(0, 10);
        if (!sums.has(d)) continue;
        let a = toBig(e.amount) || 0n; if (a < 0n) a = -a;
        sums.set(d, sums.get(d) + a + (toBig(e.unfunded || '0') || 0n));
      }
      return { days, sums, features: null };
    }
    function renderFeatures(rows) {
      if (!rows) { byFeature.replaceChildren(); return; }
      byFeature.replaceChildren(h('h3', {}, 'By feature, last 14 days'), h('table', { id: 'usage-features' },
        h('thead', {}, h('tr', {}, ['Feature', 'Quantity', 'Events', 'Credits', 'Money value'].map((t, i) => h('th', { class: i ? 'num' : null }, t)))),
        h('tbody', {}, rows.length ? rows.map((r) => h('tr', {}, h('td', {}, featureName(r.feature)), h('td', { class: 'num' }, r.quantity != null ? fmt(r.quantity) : '—'),
          h('td', { class: 'num' }, r.events != null ? fmt(String(r.events)) : '—'), h('td', { class: 'num' }, fmt(r.credits) + ' ' + code),
          h('td', { class: 'num' }, r.money_value != null ? money(r.money_value, r.money_currency || sub.currency) : (r.money != null ? money(r.money, sub.currency) : '—'))))
          : h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No usage.')))));
    }
    function renderChart(u) {
      const W = 700, H = 220, L = 56, B = 28, T = 12;
      const vals = u.days.map((d) => u.sums.get(d));
      let max = vals.reduce((m, v) => (v > m ? v : m), 0n);
      const total = vals.reduce((a, v) => a + v, 0n);
      const maxN = Number(fromBig(max)) || 1; // geometry only
      const bw = (W - L - 8) / u.days.length;
      const svg = s('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-labelledby': 'usage-title usage-desc' },
        s('title', { id: 'usage-title' }, 'Credits used per day'),
        s('desc', { id: 'usage-desc' }, fmt(fromBig(total)) + ' ' + code + ' in the last 14 days'),
        s('line', { x1: L, y1: H - B, x2: W - 4, y2: H - B, class: 'axis' }),
        s('line', { x1: L, y1: T, x2: L, y2: H - B, class: 'axis' }),
        s('text', { x: L - 6, y: T + 4, 'text-anchor': 'end', 'font-size': 11, fill: '#5b6475' }, fmt(fromBig(max))),
        s('text', { x: L - 6, y: H - B, 'text-anchor': 'end', 'font-size': 11, fill: '#5b6475' }, '0'));
      u.days.forEach((d, i) => {
        const v = vals[i];
        const hgt = v === 0n ? 0 : Math.max(2, (Number(fromBig(v)) / maxN) * (H - B - T));
        const x = L + 4 + i * bw;
        svg.append(s('rect', { x: x, y: H - B - hgt, width: Math.max(2, bw - 6), height: hgt, fill: '#2656c9', 'data-day': d, 'data-credits': fromBig(v), class: 'bar' },
          s('title', {}, d + ': ' + fmt(fromBig(v)) + ' ' + code)));
        if (i % 2 === 1 || u.days.length <= 7) svg.append(s('text', { x: x + (bw - 6) / 2, y: H - 10, 'text-anchor': 'middle', 'font-size': 10, fill: '#5b6475' }, d.slice(5)));
      });
      chart.replaceChildren(svg, h('p', { class: 'hint', id: 'usage-total' }, 'Last 14 days: ' + fmt(fromBig(total)) + ' ' + code + ' used' + (usageSource === 'ledger' ? ' (from the ledger)' : usageNote) + '.'));
    }
    // The usage report is archived a moment after the balance changes: it is
    // asked again for a few polls after the ledger grows, and every 30 s.
    let usageDue = 1, polls = 0;
    async function refresh() {
      try {
        const before = lastSeq;
        const [b] = await Promise.all([get('/subscriptions/' + enc + '/balance'), loadLedger()]);
        if (stopped) return;
        balErr.textContent = '';
        renderBalance(b); renderLedger();
        if (lastSeq !== before) usageDue = 3;
        if (usageDue > 0 || polls++ % 15 === 0 || usageSource !== 'usage') {
          if (usageDue > 0 && !invoiceCard.hidden) invoiceDue = true;
          usageDue = Math.max(0, usageDue - 1);
          const u = await usageDays();
          if (stopped) return;
          renderChart(u); renderFeatures(u.features);
        }
        if (invoiceDue) { invoiceDue = false; loadInvoice(); }
      } catch (e) {
        if (!stopped) balErr.textContent = 'Could not refresh: ' + e.message;
      }
    }
    async function poll() {
      if (stopped) return;
      if (!document.hidden) await refresh();
      if (!stopped) timer = setTimeout(poll, 2000);
    }

    // Credit top-up (customer self-service; an admin may do it for them).
    const topForm = h('form', { class: 'card', id: 'topup-form', novalidate: true }, h('h2', {}, 'Credit top-up'), formError(),
      field('Credits to buy', input('topup-amount', 'amount', { inputmode: 'decimal', placeholder: pp.min_purchase || '500' }),
        'Limits: ' + limitsText(pp.min_purchase, pp.max_purchase, code) + '. Price: 1 ' + code + ' = ' + money(cv, sub.currency) + '.'),
      h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'topup-submit' }, 'Buy credits')),
      banner('ok', 'topup-result'));
    let topKey = key();
    topForm.addEventListener('submit', async (ev) => {
      ev.preventDefault(); clearErrors(topForm);
      const out = document.getElementById('topup-result'); out.textContent = '';
      const amount = val('topup-amount');
      if (!amount) return showError(topForm, { field: 'amount', message: 'Enter the number of credits to buy.' });
      const btn = document.getElementById('topup-submit'); btn.disabled = true;
      try {
        const r = await api('POST', '/subscriptions/' + enc + '/topups', { amount }, { 'Idempotency-Key': topKey });
        topKey = key();
        out.textContent = 'Added ' + fmt(r.amount) + ' ' + code + ' · charged ' + money(r.charge, r.currency) + ' · balance ' + fmt(r.balance) + ' ' + code + (r.replayed ? ' (already done)' : '') + '.';
        document.getElementById('topup-amount').value = '';
        refresh();
      } catch (e) {
        if (e.status !== 0) topKey = key();
        // The plan's limits, stated plainly (the API's code says which one).
        if (e.code === 'below_minimum' && pp.min_purchase) e.message = 'The minimum top-up is ' + fmt(pp.min_purchase) + ' ' + code + '; you asked for ' + fmt(amount) + ' ' + code + '.';
        if (e.code === 'above_maximum' && pp.max_purchase) e.message = 'The maximum top-up is ' + fmt(pp.max_purchase) + ' ' + code + '; you asked for ' + fmt(amount) + ' ' + code + '.';
        showError(topForm, e);
      } finally { btn.disabled = false; }
    });

    // Credit adjustment (admin).
    // Spend check (admin): what a product backend asks before expensive work.
    let checkForm = null;
    if (admin) {
      checkForm = h('form', { class: 'card', id: 'check-form', novalidate: true }, h('h2', {}, 'Spend check'), formError(),
        field('Credits about to be spent', input('check-amount', 'amount', { inputmode: 'decimal', placeholder: '12.5' }), 'Asks POST /v1/subscriptions/{id}/check, as a product backend does.'),
        h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'check-submit' }, 'Check')),
        h('div', { class: 'banner', id: 'check-result', role: 'status' }));
      checkForm.addEventListener('submit', async (ev) => {
        ev.preventDefault(); clearErrors(checkForm);
        const out = document.getElementById('check-result'); out.textContent = ''; out.className = 'banner';
        try {
          const r = await api('POST', '/subscriptions/' + enc + '/check', { amount: val('check-amount') });
          out.className = 'banner ' + (r.allowed ? 'ok' : 'warn');
          out.textContent = (r.allowed ? 'Allowed' : 'Not allowed') + ' · available ' + fmt(r.available) + ' ' + code + ' · ' + (r.policy === 'overage' ? 'overage allowed' : 'shortfall unfunded') + '.';
        } catch (e) { showError(checkForm, e); }
      });
    }

    let adjForm = null;
    if (admin) {
      adjForm = h('form', { class: 'card', id: 'adjust-form', novalidate: true }, h('h2', {}, 'Credit adjustment'), formError(),
        h('div', { class: 'row' },
          field('Credits (+ to add, - to deduct)', input('adj-amount', 'amount', { inputmode: 'decimal', placeholder: '-20' })),
          field('Acting admin', input('adj-actor', 'actor', { value: store.getItem('cm.actor') || '', placeholder: 'alice@example.com' }))),
        field('Reason', input('adj-reason', 'reason', { placeholder: 'Goodwill credit for the outage of 3 Nov' }), 'Recorded in the ledger with the acting admin.'),
        h('div', { class: 'field' }, checkbox('adj-force', 'Allow a deduction beyond the available balance (negative balance)', false, 'force'), errorP('adj-force')),
        h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'adj-submit' }, 'Apply adjustment')),
        banner('ok', 'adj-result'));
      let adjKey = key();
      adjForm.addEventListener('submit', async (ev) => {
        ev.preventDefault(); clearErrors(adjForm);
        const out = document.getElementById('adj-result'); out.textContent = '';
        const body = { amount: val('adj-amount'), reason: val('adj-reason'), actor: val('adj-actor'), force: checked('adj-force') };
        if (body.actor) store.setItem('cm.actor', body.actor);
        const btn = document.getElementById('adj-submit'); btn.disabled = true;
        try {
          const r = await api('POST', '/subscriptions/' + enc + '/adjustments', body, { 'Idempotency-Key': adjKey });
          adjKey = key();
          out.textContent = 'Adjusted by ' + (toBig(r.amount) > 0n ? '+' : '') + fmt(r.amount) + ' ' + code + ' · balance ' + fmt(r.balance) + ' ' + code + '.';
          document.getElementById('adj-amount').value = ''; document.getElementById('adj-reason').value = '';
          refresh();
        } catch (e) {
          if (e.status !== 0) adjKey = key();
          if (e.code === 'insufficient_balance') e.message = 'Not enough credits for this deduction (' + e.message.replace(/^balance: /, '') + '). Tick "Allow a deduction beyond the available balance" to let the balance go negative.';
          showError(adjForm, e);
        } finally { btn.disabled = false; }
      });
    }

    const crumbs = admin
      ? h('span', {}, h('a', { href: '#/customers' }, 'Customers'), ' › ', h('a', { href: '#/customers/' + encodeURIComponent(sub.customer_id) }, sub.customer_id), ' › Subscription')
      : h('span', {}, h('a', { href: '#/my' }, 'My subscriptions'));
    page('Subscription ' + sub.id, crumbs,
      h('div', { class: 'card' }, h('dl', { class: 'kv', id: 'subscription-summary' },
        h('dt', {}, 'Plan'), h('dd', {}, plan.name + ' (' + plan.id + ')'), h('dt', {}, 'Product'), h('dd', {}, sub.product || plan.product),
        h('dt', {}, 'Credit value'), h('dd', { id: 'sub-value' }, '1 ' + code + ' = ' + money(cv, sub.currency)),
        h('dt', {}, 'Started'), h('dd', {}, when(sub.start_at)))),
      h('section', { class: 'card', 'aria-labelledby': 'balance-h' }, h('h2', { id: 'balance-h' }, 'Balance'), balErr, stats, updated),
      h('div', { class: 'row' }, topForm, adjForm, checkForm),
      h('section', { class: 'card', 'aria-labelledby': 'usage-h' }, h('h2', { id: 'usage-h' }, 'Usage'), chart, byFeature),
      invoiceCard,
      h('section', { class: 'card', 'aria-labelledby': 'grants-h' }, h('h2', { id: 'grants-h' }, 'Grants (in burn-down order)'),
        h('table', { id: 'grants' }, h('thead', {}, h('tr', {}, ['Grant', 'Type', 'Amount', 'Remaining', 'Effective', 'Expires'].map((t, i) => h('th', { class: i === 2 || i === 3 ? 'num' : null }, t)))), grantsBody)),
      h('section', { class: 'card', 'aria-labelledby': 'ledger-h' }, h('h2', { id: 'ledger-h' }, 'Ledger (newest first)'),
        h('table', { id: 'ledger' }, h('thead', {}, h('tr', {}, ['Seq', 'Time', 'Kind', 'Amount', 'Balance after', 'Details'].map((t, i) => h('th', { class: i === 0 || i === 3 || i === 4 ? 'num' : null }, t)))), ledgerBody)));
    poll();
    return () => { stopped = true; clearTimeout(timer); };
  }

  // A script error or a content-security-policy block is shown, not hidden
  // in the developer tools.
  function problem(msg) {
    let b = document.getElementById('console-problem');
    if (!b) { b = h('div', { class: 'banner error', id: 'console-problem', role: 'alert' }); document.body.prepend(b); }
    b.textContent = 'Console problem: ' + msg;
  }
  window.addEventListener('error', (e) => problem(e.message));
  window.addEventListener('unhandledrejection', (e) => problem(String((e.reason && e.reason.message) || e.reason)));
  document.addEventListener('securitypolicyviolation', (e) => problem('blocked by the content security policy: ' + e.violatedDirective + ' ' + (e.blockedURI || 'inline')));

  // The pure helpers, for the browser test's checks of decimal handling.
  window.creditmeterConsole = Object.freeze({ toBig, fromBig, fmt, money, parentPath, isoOrRaw });

  window.addEventListener('hashchange', route);
  route();
})();
