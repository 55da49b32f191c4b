// DOM helpers: elements built with h() (text is always text, never markup),
// form fields with their label, hint and error slot, and API errors shown
// next to the field they name.

export function h(tag, attrs, ...kids) {
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
export function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v != null) el.setAttribute(k, String(v));
  for (const k of kids) if (k != null) el.append(k instanceof Node ? k : String(k));
  return el;
}

export function options(list, selected) {
  return list.map(([v, label]) => h('option', { value: v, selected: v === selected }, label));
}
export function errorP(id) {
  return h('p', { class: 'error', id: id + '-error', 'data-error-for': id, 'aria-live': 'polite' });
}
// field wraps a control with its label, an optional hint and its error slot.
export function field(label, control, hint) {
  const id = control.id;
  control.setAttribute('aria-describedby', (hint ? id + '-hint ' : '') + id + '-error');
  return h('div', { class: 'field' }, h('label', { for: id }, label), control,
    hint ? h('p', { class: 'hint', id: id + '-hint' }, hint) : null, errorP(id));
}
// cell is a table cell holding a control with a visually hidden label.
export function cell(label, control) {
  control.setAttribute('aria-describedby', control.id + '-error');
  return h('td', {}, h('label', { class: 'sr-only', for: control.id }, label), control, errorP(control.id));
}
export function input(id, fieldPath, attrs) {
  return h('input', Object.assign({ type: 'text', id, name: id, 'data-field': fieldPath, autocomplete: 'off' }, attrs || {}));
}
export function select(id, fieldPath, list, selected) {
  return h('select', { id, name: id, 'data-field': fieldPath }, options(list, selected));
}
export function checkbox(id, label, checked, fieldPath) {
  return h('label', { class: 'inline', for: id }, h('input', { type: 'checkbox', id, checked, 'data-field': fieldPath }), label);
}
export function radio(name, id, value, label, checked) {
  return h('label', { class: 'inline', for: id }, h('input', { type: 'radio', name, id, value, checked }), label);
}
export const val = (id) => { const el = document.getElementById(id); return el ? el.value.trim() : ''; };
export const checked = (id) => { const el = document.getElementById(id); return !!(el && el.checked); };
export function banner(kind, id) { return h('div', { class: 'banner ' + kind, id, role: kind === 'error' ? 'alert' : 'status' }); }

// ---------- form errors ----------
export function formError() { return h('div', { class: 'banner error form-error', role: 'alert' }); }
export function clearErrors(form) {
  form.querySelectorAll('[data-error-for]').forEach((p) => { p.textContent = ''; });
  form.querySelectorAll('[aria-invalid]').forEach((el) => el.removeAttribute('aria-invalid'));
  form.querySelectorAll('.form-error').forEach((b) => { b.textContent = ''; });
}
// parentPath: "prepaid.consumption[0].feature_id" -> "prepaid.consumption[0]" -> "prepaid.consumption" -> "prepaid".
export function parentPath(p) { const m = /^(.*)(\.[^.[\]]+|\[\d+\])$/.exec(p); return m ? m[1] : ''; }
// showError puts an API error next to the control its field path names
// (or the nearest enclosing one), else at the top of the form.
export function showError(form, err) {
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

// ---------- the page ----------
export const app = () => document.getElementById('app');
// page replaces the main area with a page: its crumbs, title and content.
export function page(title, crumbs, ...kids) {
  document.title = title + ' · creditmeter';
  app().replaceChildren(...[crumbs ? h('div', { class: 'crumbs' }, crumbs) : null, h('h1', {}, title), ...kids].filter(Boolean));
}

// confirmButton is a destructive action's button: the first click asks
// "Confirm …" (for 5 s), the second does it. No window.confirm: a modal
// blocks the page and tests alike.
export function confirmButton(label, confirmLabel, attrs, action) {
  let armed = null;
  const a = Object.assign({ type: 'button' }, attrs || {});
  a.class = 'secondary danger' + (a.class ? ' ' + a.class : '');
  const btn = h('button', a, label);
  btn.addEventListener('click', async () => {
    if (!armed) {
      btn.textContent = confirmLabel;
      armed = setTimeout(() => { armed = null; btn.textContent = label; }, 5000);
      return;
    }
    clearTimeout(armed); armed = null;
    btn.disabled = true;
    try { await action(); } finally { btn.disabled = false; btn.textContent = label; }
  });
  return btn;
}
