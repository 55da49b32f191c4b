// The router: the location hash names the page; a page needing a role the
// session does not have is not found. A page may return a stop function
// (the subscription page's polling), called when another page replaces it.
import { h, app } from './dom.js';
import { store, role, signOut, setRedraw } from './session.js';
import { pageLogin } from './pages/login.js';
import { pagePlans } from './pages/plans.js';
import { pagePlanForm } from './pages/plan-form.js';
import { pageFeatures } from './pages/features.js';
import { pageCurrencies } from './pages/currencies.js';
import { pageCustomers } from './pages/customers.js';
import { pageCustomer } from './pages/customer.js';
import { pageSubscribe } from './pages/subscribe.js';
import { pageSubscription } from './pages/subscription.js';
import { pageMine } from './pages/mine.js';
import { pageDeadLetters } from './pages/dead-letters.js';
import { pageWebhooks, pageWebhookDeliveries } from './pages/webhooks.js';
import { pageUsage } from './pages/usage.js';

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
  [/^#\/customers\/([^/]+)\/usage$/, (id) => pageUsage(id, false), 'admin'],
  [/^#\/usage$/, () => pageUsage(null, false), 'admin'],
  [/^#\/subscriptions\/([^/]+)$/, (id) => pageSubscription(id, true), 'admin'],
  [/^#\/dead-letters$/, pageDeadLetters, 'admin'],
  [/^#\/webhooks$/, pageWebhooks, 'admin'],
  [/^#\/webhooks\/([^/]+)$/, pageWebhookDeliveries, 'admin'],
  [/^#\/my$/, pageMine, 'customer'],
  [/^#\/my\/usage$/, () => pageUsage(store.getItem('cm.customer'), true), 'customer'],
  [/^#\/my\/subscriptions\/([^/]+)$/, (id) => pageSubscription(id, false), 'customer'],
];

function navLinks() {
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  nav.replaceChildren(); who.replaceChildren();
  const r = role();
  const here = location.hash;
  const link = (href, label) => h('a', { href, 'aria-current': here.startsWith(href) ? 'page' : null }, label);
  if (r === 'admin') {
    nav.append(link('#/plans', 'Product Catalog › Plans'), link('#/features', 'Features'), link('#/currencies', 'Credit currencies'), link('#/customers', 'Customers'), link('#/usage', 'Usage'), link('#/dead-letters', 'Dead letters'), link('#/webhooks', 'Webhooks'));
    who.append(h('span', {}, 'Admin'));
  } else if (r === 'customer') {
    nav.append(link('#/my', 'My subscriptions'), link('#/my/usage', 'Usage'));
    who.append(h('span', {}, 'Customer ' + store.getItem('cm.customer')));
  }
  if (r) who.append(h('button', { type: 'button', class: 'secondary', onclick: () => signOut() }, 'Sign out'));
}

// route renders the page of the hash; calls while one renders are folded
// into one more run afterwards, so the last hash wins.
let routing = false, again = false, stopPage = null;
export async function route() {
  if (routing) { again = true; return; }
  routing = true;
  try { await render(); } finally {
    routing = false;
    if (again) { again = false; route(); }
  }
}
setRedraw(route);

async function render() {
  if (stopPage) { stopPage(); stopPage = null; }
  const r = role();
  const hash = location.hash || '#/';
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
