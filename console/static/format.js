// Text for times, purchase limits and addresses, shared by several pages.
import { fmt } from './decimal.js';

export function when(t) {
  if (!t) return '—';
  const d = new Date(t);
  if (isNaN(d)) return String(t);
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC').replace(/Z$/, ' UTC');
}

// isoOrRaw is a datetime-local value as RFC 3339, or the value as typed when
// it is not a date (the API then names the field).
export function isoOrRaw(v) {
  if (!v) return v;
  const d = new Date(v);
  return isNaN(d) ? v : d.toISOString();
}

export function limitsText(min, max, cur) {
  if (!min && !max) return 'none';
  if (min && max) return fmt(min) + ' – ' + fmt(max) + ' ' + cur;
  return min ? 'at least ' + fmt(min) + ' ' + cur : 'at most ' + fmt(max) + ' ' + cur;
}

export function addressText(a) {
  if (!a) return '—';
  return [a.line1, a.line2, a.city, a.region, a.postal_code, a.country].filter(Boolean).join(', ');
}

// meterText names a meter's aggregation as the API stores it: COUNT, or
// SUM/UNIQUE_COUNT/MAX/LATEST/AVG of its dimension.
export function meterText(m) {
  if (!m) return '';
  const agg = m.aggregation || 'COUNT';
  return 'event "' + m.event_name + '" · ' + (agg === 'COUNT' ? 'COUNT' : agg + '(' + (m.dimension || '') + ')');
}
