// The console's menus panel (visual IVR): the agent's menu sessions with each choice as the customer makes it and
// their ID&V status. What a customer did in the menu before a call reaches the agent is shown with the call (the
// workspace's "Why they are calling", console-context.js), in the words of describe() and idvText() here.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const panel = $("menus-panel");
  const sessions = vg.menus = new Map();  // menu link id -> {link, steps: [], idv: record|null}
  const FINAL = ["ended", "expired", "revoked", "interrupted"];
  const IDV = {identified_and_verified: "Identified and verified", identified_only: "Identified only", not_identified: "Not identified"};
  const STATES = {created: "Link sent", opened: "Link opened", connected: "In the menu", ended: "Done", expired: "Expired", revoked: "Revoked"};

  const node = vg.el;
  const time = (at) => new Date(at * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit"});

  // One step in words: what the customer chose, entered (secrets only as "entered") or asked for.
  function describe(step) {
    const d = step.detail || {};
    if (step.step === "choice") {
      if (d.back) return `Went back to ${d.screen}`;
      if (d.continue) return `Continued to ${d.screen}`;
      if (d.skip) return "Went on without confirming who they are";
      return `Chose “${d.label || d.option}”`;
    }
    if (step.step === "entry") {
      const values = Object.entries(d.values || {}).map(([k, v]) => `${k.replaceAll("_", " ")}: ${v}`).join(", ");
      return `Entered ${values}`;
    }
    switch (d.action) {
      case "start": return `Opened the menu${d.language ? ` (${d.language})` : ""}`;
      case "idv": return `ID&V: ${IDV[d.status] || d.status}${d.customer_id ? ` (${d.customer_id})` : ""}`;
      case "show": return d.ok ? `Looked at their data (${d.source})` : `Asked for their data (${d.source}): not available`;
      case "callback": return "Asked for a callback";
      case "agent": case "video":
        return d.agent ? `Asked for an agent: handed to ${d.agent}` : `Asked for an agent: nobody was free (${d.queue})`;
      default: return `${d.action || step.step}`;
    }
  }

  function session(id) {
    if (!sessions.has(id)) sessions.set(id, {link: vg.links.get(id) || null, steps: [], idv: null});
    return sessions.get(id);
  }

  function addStep(s, step) {
    if (!s.steps.some((x) => x.seq === step.seq)) s.steps.push(step);
    s.steps.sort((a, b) => a.seq - b.seq);
  }

  async function fetchMenu(id) {
    try {
      const r = await vg.api(`/api/links/${id}/menu`);
      const s = session(id);
      s.link = r.link;
      r.steps.forEach((step) => addStep(s, step));
      if (r.idv) s.idv = r.idv;
      render();
    } catch { /* not ours to see, or gone: nothing to show */ }
  }

  function idvText(r) {
    if (!r) return "ID&V: not done";
    return `ID&V: ${r.status_label || IDV[r.status] || r.status}${r.verified_by ? ` by ${r.verified_by.toUpperCase()}` : ""}${r.customer_id ? ` (${r.customer_id})` : ""}`;
  }

  function sessionBlock(id, s, title) {
    const link = s.link || {};
    const head = node("h4", {textContent: title});
    const meta = node("p", {className: "muted", textContent: `${STATES[link.state] || link.state || ""}${link.phone ? ` · ${link.phone}` : ""}${link.customer_ref ? ` · ${link.customer_ref}` : ""}`});
    const idv = node("p", {className: "idv", textContent: idvText(s.idv)});
    idv.dataset.status = s.idv ? s.idv.status : "";
    const steps = node("ol", {className: "menu-steps"}, ...s.steps.map((step) => node("li", {textContent: `${time(step.at)} ${describe(step)}`})));
    return node("article", {className: "menu-session", dataset: {link: id}}, head, meta, idv, steps);
  }

  function render() {
    const mine = [...sessions.entries()].filter(([, s]) => s.link && s.link.kind === "menu");
    const live = mine.filter(([, s]) => !FINAL.includes(s.link.state) || s.steps.length);
    panel.hidden = !live.length;
    const blocks = [node("h2", {id: "menus-title", textContent: "Menus"})];
    if (live.length) {
      blocks.push(node("h3", {textContent: "Menu sessions"}));
      live.sort(([, a], [, b]) => b.link.created - a.link.created).slice(0, 10)
        .forEach(([id, s]) => blocks.push(sessionBlock(id, s, `Menu ${s.link.detail?.menu || ""} · ${s.link.customer_ref || s.link.phone || id}`)));
    }
    panel.replaceChildren(...blocks);
  }

  function onLink(link) {
    if (link.kind !== "menu") return;
    session(link.id).link = link;
    render();
  }

  vg.on("hello", (ev) => {
    ev.links.forEach(onLink);
    ev.links.filter((l) => l.kind === "menu" && l.state !== "created").slice(0, 10).forEach((l) => fetchMenu(l.id));
  });
  vg.on("link", (ev) => onLink(ev.link));
  vg.on("menu", (ev) => {
    const s = session(ev.link_id);
    addStep(s, ev.step);
    if (!s.link) fetchMenu(ev.link_id);
    render();
  });
  vg.on("idv", (ev) => {
    if (!sessions.has(ev.link_id)) return;
    sessions.get(ev.link_id).idv = ev;
    render();
  });
  vg.describeStep = (step) => `${time(step.at)} ${describe(step)}`;
  vg.idvText = idvText;
})();
