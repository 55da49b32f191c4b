// creditmeter console: a small single-page app over the JSON API under /v1,
// as native ES modules with no build step. index.html loads this entry; the
// router loads the pages (pages/*.js), which build on dom.js, decimal.js,
// format.js, api.js and session.js.
import { h } from './dom.js';
import { route } from './router.js';

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

window.addEventListener('hashchange', route);
route();
