// The queue updates itself: server-sent events say when a case opened or changed, and the
// queue's HTML (rendered and escaped by the server) replaces the old one. No inline script.
"use strict";
(function () {
  const live = document.getElementById("live");
  const queue = document.getElementById("queue");
  if (!live || !queue || !window.EventSource) return;
  const source = new EventSource(live.dataset.events);
  let busy = false;
  source.addEventListener("queue", async function () {
    if (busy) return;
    busy = true;
    try {
      const response = await fetch(live.dataset.fragment, {credentials: "same-origin"});
      if (response.ok) {
        queue.innerHTML = await response.text();
        live.textContent = "Updated " + new Date().toLocaleTimeString() + ".";
      }
    } finally {
      busy = false;
    }
  });
})();
