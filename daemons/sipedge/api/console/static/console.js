// sipedge console: live pages refresh their <main id="live"> by polling the same URL with
// the X-Console-Part header (the server then renders only that part, escaped as every page).
// No framework, no inline script: the Content-Security-Policy allows this file only.
"use strict";
(function () {
  const seconds = Number(document.body.dataset.refresh || 0);
  const live = document.getElementById("live");
  if (!live || !(seconds > 0)) {
    return;
  }
  let busy = false;
  async function refresh() {
    if (busy || document.hidden) {
      return;
    }
    busy = true;
    try {
      const response = await fetch(window.location.href, {
        headers: { "X-Console-Part": "1" },
        credentials: "same-origin",
        cache: "no-store",
      });
      if (response.status === 401) {
        window.location.assign("/console/login");
        return;
      }
      if (response.ok) {
        live.innerHTML = await response.text();
        document.body.dataset.updated = String(Date.now());
      }
    } catch (err) {
      // the daemon restarting: try again at the next tick
    } finally {
      busy = false;
    }
  }
  window.setInterval(refresh, seconds * 1000);
})();
