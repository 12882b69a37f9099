// PiCloud's dashboard: the little JavaScript its pages use. Every page works without it.
"use strict";

// htmx requests carry the session's CSRF token in X-CSRF-Token, as the admin API asks of
// requests signed in by cookie (forms also carry it in a hidden field, for no-JS browsers).
document.addEventListener("htmx:configRequest", (event) => {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) {
    event.detail.headers["X-CSRF-Token"] = meta.content;
  }
});
