// The console's callbacks panel (issue 15): the open callbacks of my queues, soonest first. "Call now" takes one
// (another agent may have been quicker: then it says so), shows the customer's secret word to read back, and
// "Done" or "No answer" ends the attempt. Every change arrives on the event stream ({type: "callback"}).
"use strict";
(() => {
  const panel = document.getElementById("callbacks-panel");
  const open = new Map();  // id -> callback, booked or calling
  let secret = null;  // {id, text}: the word of the callback I am calling, shown to me only
  const contexts = new Map();  // callback id -> why they likely called, and what they did in a menu before
  let error = "";

  const el = vg.el;
  const mine = (cb) => cb.state === "calling" && vg.agent && cb.agent_id === vg.agent.id;
  const time = (s) => new Date(s * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
  function due(cb) {
    const a = new Date(cb.window_start * 1000);
    const today = a.toDateString() === new Date().toDateString();
    const date = today ? "Today" : a.toLocaleDateString([], {weekday: "short", day: "numeric", month: "short"});
    const now = Date.now() / 1000;
    const note = now > cb.window_end ? " (overdue)" : now >= cb.window_start ? " (due now)" : "";
    return `${date} ${time(cb.window_start)}–${time(cb.window_end)}${note}`;
  }

  async function act(cb, what) {
    error = "";
    try {
      const answer = await vg.api(`/api/callbacks/${cb.id}/${what}`, {method: "POST", body: "{}"});
      if (answer.secret) secret = {id: cb.id, text: answer.read_back};
      update(answer.callback);
    } catch (err) {
      error = `Callback ${cb.id}: ${err.message}`;
      render();
    }
  }

  function actions(cb) {
    if (cb.state === "booked") return [el("button", {type: "button", className: "primary", textContent: "Call now", onclick: () => act(cb, "claim")})];
    if (!mine(cb)) return [el("span", {className: "muted", textContent: `${cb.agent || "Another agent"} is calling`})];
    return [
      el("button", {type: "button", className: "primary", textContent: "Done", onclick: () => act(cb, "done")}),
      el("button", {type: "button", textContent: "No answer", onclick: () => act(cb, "no-answer")}),
    ];
  }

  function row(cb) {
    const tr = el("tr", {}, el("td", {textContent: due(cb)}),
      el("td", {}, cb.subject, ...(cb.reason ? [el("br"), el("span", {className: "muted", textContent: cb.reason})] : [])),
      el("td", {textContent: cb.phone}),
      el("td", {className: `state ${cb.state}`, textContent: cb.state === "calling" ? "Calling" : cb.attempts ? `Booked (tried ${cb.attempts})` : "Booked"}),
      el("td", {className: "actions"}, ...actions(cb)));
    tr.dataset.callback = cb.id;
    return tr;
  }

  function render() {
    const rows = [...open.values()].sort((a, b) => a.window_start - b.window_start || a.created - b.created);
    const parts = [el("h2", {id: "callbacks-title", textContent: `Callbacks (${rows.length})`})];
    if (secret && open.has(secret.id)) {
      parts.push(el("p", {className: "secret-box", role: "status", id: "callback-secret"},
        "Read back: ", el("strong", {textContent: secret.text})));
      const ctx = contexts.get(secret.id);
      if (ctx) parts.push(context(ctx));
    }
    if (error) parts.push(el("p", {className: "error", role: "alert", textContent: error}));
    if (!rows.length) parts.push(el("p", {className: "muted", textContent: "No callbacks waiting."}));
    else {
      const head = el("tr", {}, ...["Due", "Subject", "Phone", "Status", ""].map((t) => el("th", {scope: "col", textContent: t})));
      parts.push(el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows.map(row))));
    }
    panel.replaceChildren(...parts);
    panel.hidden = false;
  }

  // The taken callback's context, as a call's is shown (console-context.js): reason, events, the menu's steps.
  function context(ctx) {
    const items = [
      ...(ctx.reason ? [`${ctx.reason.label}: ${ctx.reason.greeting}`] : []),
      ...ctx.events.filter((e) => !["callback.booked", ...(ctx.steps.length ? ["menu.choice"] : [])].includes(e.type)).map((e) => `${e.type} ${JSON.stringify(e.detail)}`),
      ...ctx.steps.map((s) => vg.describeStep(s)),
      ...(ctx.steps.length ? [vg.idvText(ctx.idv)] : []),
    ];
    return el("ul", {className: "history", id: "callback-context"}, ...items.map((t) => el("li", {textContent: t})));
  }

  function update(cb) {
    if (cb.state === "booked" || cb.state === "calling") open.set(cb.id, cb); else open.delete(cb.id);
    if (secret && secret.id === cb.id && !mine(cb)) secret = null;  // the word goes once the call is over
    render();
  }

  async function load() {
    try {
      const answer = await vg.api("/api/callbacks");
      open.clear();
      answer.callbacks.forEach((cb) => open.set(cb.id, cb));
      const calling = answer.callbacks.find(mine);
      if (calling && !secret) {  // a console that reloaded mid-call: the word again (audited)
        const s = await vg.api(`/api/callbacks/${calling.id}/secret`);
        secret = {id: calling.id, text: s.read_back};
      }
      error = "";
    } catch (err) {
      if (/callbacks are off/.test(err.message)) { panel.hidden = true; return; }  // this server takes none
      error = `Callbacks: ${err.message}`;
    }
    render();
  }

  vg.on("hello", load);  // each (re)connection: the queue as it is now
  vg.on("callback", (ev) => update(ev.callback));
  vg.on("context", (ev) => { if (ev.callback_id) { contexts.set(ev.callback_id, ev); render(); } });
})();
