// A billing address's fields, shared by the customer and subscription forms.
import { h, field, input, val } from '../dom.js';

export function addressFields(prefix, fieldPrefix, a) {
  a = a || {};
  return h('div', { class: 'row' },
    field('Address line 1', input(prefix + '-line1', fieldPrefix + '.line1', { value: a.line1 || '' })),
    field('Address line 2', input(prefix + '-line2', fieldPrefix + '.line2', { value: a.line2 || '' })),
    field('City', input(prefix + '-city', fieldPrefix + '.city', { value: a.city || '' })),
    field('Region', input(prefix + '-region', fieldPrefix + '.region', { value: a.region || '' })),
    field('Postal code', input(prefix + '-postal', fieldPrefix + '.postal_code', { value: a.postal_code || '' })),
    field('Country (2 letters)', input(prefix + '-country', fieldPrefix + '.country', { value: a.country || '', maxlength: 2 })));
}
export function readAddress(prefix) {
  const a = { line1: val(prefix + '-line1'), line2: val(prefix + '-line2'), city: val(prefix + '-city'), region: val(prefix + '-region'), postal_code: val(prefix + '-postal'), country: val(prefix + '-country').toUpperCase() };
  if (!Object.values(a).some(Boolean)) return undefined;
  for (const k of ['line2', 'region', 'postal_code']) if (!a[k]) delete a[k];
  return a;
}
