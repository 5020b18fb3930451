// Why the customer is likely calling (context-aware routing): the reason the operator maps their recent events to,
// the events themselves, and what they did in a menu before this call; and the agent's availability for queues.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const contexts = vg.contexts = new Map();
  const ago = (at) => {
    const minutes = Math.max(0, Math.round((Date.now() / 1000 - at) / 60));
    return minutes < 1 ? "just now" : minutes < 90 ? `${minutes} min ago` : `${Math.round(minutes / 60)} h ago`;
  };
  const item = (text) => Object.assign(document.createElement("li"), {textContent: text});
  const describe = (detail) => Object.entries(detail || {}).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ");

  function show(linkId) {
    const ctx = contexts.get(linkId);
    const box = $("context");
    const any = ctx && (ctx.reason || ctx.events.length || ctx.steps.length);
    box.hidden = !any || vg.live !== linkId;
    if (box.hidden) return;
    $("context-reason").textContent = ctx.reason ? `${ctx.reason.label}: ${ctx.reason.greeting}` : "No likely reason on record.";
    $("context-reason").dataset.queue = ctx.reason?.queue || "";
    const events = ctx.steps.length ? ctx.events.filter((e) => e.type !== "menu.choice") : ctx.events;  // shown as steps
    $("context-events").replaceChildren(...events.map((e) => item(`${e.type} (${ago(e.at)}${e.detail && Object.keys(e.detail).length ? `; ${describe(e.detail)}` : ""})`)));
    $("context-menu").hidden = !ctx.steps.length;
    $("context-steps").replaceChildren(...ctx.steps.map((s) => item(vg.describeStep(s))));
    $("context-idv").textContent = vg.idvText(ctx.idv);
  }

  vg.on("context", (ev) => {
    if (!ev.link_id) return;  // a callback's: its panel shows it (console-callbacks.js)
    contexts.set(ev.link_id, ev);
    show(ev.link_id);
  });
  vg.on("view", (linkId) => {
    show(linkId);
    if (!contexts.has(linkId)) vg.api(`/api/calls/${linkId}/context`).then((ev) => { contexts.set(linkId, ev); show(linkId); }).catch(() => {});
  });
  vg.on("me", (me) => {
    $("available-box").hidden = false;
    $("available").checked = !me.presence?.away;
  });
  $("available").addEventListener("change", async (e) => {
    try {
      await vg.api("/api/me/availability", {method: "POST", body: JSON.stringify({available: e.target.checked})});
    } catch (err) { e.target.checked = !e.target.checked; }
  });
})();
