// Decimals: the API's amounts are decimal strings and stay strings. They are
// displayed as they come, compared and summed with BigInt (never with
// floating point); numbers are used only for chart geometry.
const SCALE = 9;

// toBig is str scaled by 10^9 as a BigInt, or null when str is not a decimal
// with at most 9 places.
export function toBig(str) {
  const m = /^\s*([-+]?)(\d*)(?:\.(\d*))?\s*$/.exec(String(str));
  if (!m || (m[2] === '' && !m[3]) || (m[3] || '').length > SCALE) return null;
  const v = BigInt((m[2] || '0') + (m[3] || '').padEnd(SCALE, '0'));
  return m[1] === '-' ? -v : v;
}

export function fromBig(v) {
  const neg = v < 0n;
  const str = (neg ? -v : v).toString().padStart(SCALE + 1, '0');
  const frac = str.slice(-SCALE).replace(/0+$/, '');
  return (neg ? '-' : '') + str.slice(0, -SCALE) + (frac ? '.' + frac : '');
}

// fmt groups the integer digits of a decimal string: "8000" -> "8,000".
export function fmt(str) {
  if (str == null || str === '') return '—';
  str = String(str);
  const neg = str.startsWith('-');
  const [i, f] = (neg ? str.slice(1) : str).split('.');
  return (neg ? '-' : '') + i.replace(/\B(?=(\d{3})+(?!\d))/g, ',') + (f ? '.' + f : '');
}

const ZERO_DECIMAL = new Set(['JPY', 'KRW', 'VND', 'CLP', 'ISK', 'HUF', 'TWD', 'UGX', 'XAF', 'XOF']);

// money pads a decimal string to the currency's minor unit, for display.
export function money(str, cur) {
  if (str == null || str === '') return '—';
  str = String(str);
  const want = ZERO_DECIMAL.has(cur) ? 0 : 2;
  let [i, f = ''] = str.split('.');
  if (f.length < want) f = f.padEnd(want, '0');
  return fmt(i + (f ? '.' + f : '')) + (cur ? ' ' + cur : '');
}
