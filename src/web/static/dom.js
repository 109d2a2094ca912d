// The dashboards' DOM helpers (app.js, fleet.js): plain browser JavaScript, no dependencies.

export const $ = (id) => document.getElementById(id);

/** Creates an element: h('div', { class: 'x', title: 't' }, child, 'text', ...). No inline styles (CSP). */
export function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'onclick') e.addEventListener('click', v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of kids.flat()) if (c !== undefined && c !== null && c !== false) e.append(c instanceof Node ? c : String(c));
  return e;
}
