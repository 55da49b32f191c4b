// Metered features: the list and a form for a new one with its meter.
import { h, field, input, select, errorP, formError, clearErrors, showError, val, page } from '../dom.js';
import { api, get } from '../api.js';
import { rerender } from '../session.js';
import { meterText } from '../format.js';

// The meter aggregations: COUNT, SUM and UNIQUE_COUNT are billable; MAX,
// LATEST and AVG report only (a plan cannot map them to credits).
const AGGREGATIONS = [['COUNT', 'COUNT (each event is 1 unit)'], ['SUM', 'SUM of a dimension'], ['UNIQUE_COUNT', 'UNIQUE_COUNT of a dimension (1 per new value a period)'],
  ['MAX', 'MAX of a dimension (reporting)'], ['LATEST', 'LATEST of a dimension (reporting)'], ['AVG', 'AVG of a dimension (reporting)']];

export async function pageFeatures() {
  const list = (await get('/features')).data;
  const kind = select('feat-kind', 'meter.kind', [['event_based', 'Event-based'], ['pre_aggregated', 'Pre-aggregated totals']], 'event_based');
  const form = h('form', { class: 'card', id: 'feature-form', novalidate: true }, h('h2', {}, 'New feature'), formError(),
    h('div', { class: 'row' }, field('Feature ID', input('feat-id', 'id', { placeholder: 'ai-agent-email' })), field('Name', input('feat-name', 'name', { placeholder: 'AI Agent Email' }))),
    h('fieldset', { id: 'feat-meter', 'data-field': 'meter' }, h('legend', {}, 'Meter'), errorP('feat-meter'),
      h('div', { class: 'row' }, field('Meter kind', kind), field('Event name', input('feat-event', 'meter.event_name', { placeholder: 'email.sent' })),
        field('Aggregation', select('feat-agg', 'meter.aggregation', AGGREGATIONS, 'COUNT')),
        field('Dimension (all but COUNT)', input('feat-dim', 'meter.dimension', { placeholder: 'tokens' })))),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create feature')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault(); clearErrors(form);
    const meter = { kind: val('feat-kind') };
    if (meter.kind === 'event_based') {
      meter.event_name = val('feat-event'); meter.aggregation = val('feat-agg');
      if (val('feat-dim')) meter.dimension = val('feat-dim');
    }
    try { await api('POST', '/features', { id: val('feat-id'), name: val('feat-name'), meter }); rerender(); } catch (e) { showError(form, e); }
  });
  page('Features', 'Product Catalog',
    h('div', { class: 'card' }, h('table', { id: 'features' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Feature'), h('th', {}, 'ID'), h('th', {}, 'Meter'))),
      h('tbody', {}, list.map((f) => h('tr', {}, h('td', {}, f.name), h('td', {}, f.id), h('td', {}, featureMeterText(f.meter))))))),
    form);
}
function featureMeterText(m) {
  if (!m) return '';
  if (m.kind !== 'event_based') return 'pre-aggregated (cannot map to credits)';
  return meterText(m);
}
