// The signed-in session: the bearer token, the role and, for a customer
// token, the customer, kept in the tab's sessionStorage (gone when the tab
// closes).
export const store = window.sessionStorage;

export function role() { return store.getItem('cm.role'); }

// redraw is the router's; pages and the API client ask for it through
// rerender, since they cannot import the router that imports them.
let redraw = () => {};
export function setRedraw(fn) { redraw = fn; }
export function rerender() { redraw(); }

export function signOut(message) {
  store.removeItem('cm.token'); store.removeItem('cm.role'); store.removeItem('cm.customer');
  if (message) store.setItem('cm.flash', message);
  if (location.hash === '#/login') rerender(); else location.hash = '#/login';
}
