// The customer's callback pages: /callback books one (POST /api/callbacks, as a bank's app may too), and
// /callback/TOKEN follows it live (a WebSocket of its changes), with Reschedule while booked and Cancel while open.
// The secret word goes to the server once, at booking; no page ever shows it again. A menu's hand-off fills the
// booking in: /callback?phone=…&customer_id=…&subject=…&queue=…&language=…&from=MENU_LINK_ID (all editable but
// queue and from, which go with the booking so the agent who calls is routed and sees the menu's steps).
// Both pages speak the customer's language: the booking page the menu's (else the browser's), the status page the
// one the callback was booked in; dates and times as that language writes them.
"use strict";
const $ = (id) => document.getElementById(id);
const vg = window.vg = {callback: null, states: [], ws: null, texts: {}, language: "en"};
const given = new URLSearchParams(location.search);
const token = location.pathname.match(/^\/callback\/([^/]+)$/)?.[1];
const ORDER = ["booked", "calling", "done"];
const QUARTER = 15 * 60 * 1000;

const pad = (n) => String(n).padStart(2, "0");
const day = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
const clock = (d) => `${pad(d.getHours())}:${pad(d.getMinutes())}`;

// The soonest sensible window: from the next quarter hour after the next 15 minutes, for an hour.
function defaults(dateId, fromId, toId, start) {
  const from = start || new Date(Math.ceil((Date.now() + QUARTER) / QUARTER) * QUARTER);
  const to = new Date(from.getTime() + 4 * QUARTER);
  $(dateId).value = day(from); $(fromId).value = clock(from); $(toId).value = clock(to);
}

// The window the fields give, in epoch seconds; an end before the start is on the next day.
function windowOf(dateId, fromId, toId) {
  const start = new Date(`${$(dateId).value}T${$(fromId).value}`);
  let end = new Date(`${$(dateId).value}T${$(toId).value}`);
  if (Number.isNaN(start.getTime()) || Number.isNaN(end.getTime())) {
    throw new Error(vg.texts["callback.choose_times"] || "Choose a day and the times.");
  }
  if (end <= start) end = new Date(end.getTime() + 24 * 3600 * 1000);
  return {start: start.getTime() / 1000, end: end.getTime() / 1000};
}

async function api(path, options = {}) {
  const r = await fetch(path, {...options, headers: {"Content-Type": "application/json"}, cache: "no-store"});
  const body = await r.json().catch(() => null);
  if (!r.ok) {
    const message = body?.message || body?.error || `The server answered ${r.status}.`;
    throw Object.assign(new Error(message), {status: r.status, text: body?.text});
  }
  return body;
}

const sentence = (text) => (text ? text[0].toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? "" : ".") : text);

// -- booking ---------------------------------------------------------------------------------------------------------

// The page's own words in the language a menu handed on, or the callback's (the catalogue's callback.* texts;
// none given: the browser's); English as written.
async function translate(language) {
  try {
    const answer = await api(`/api/callbacks/texts?language=${encodeURIComponent(language)}`);
    vg.texts = answer.texts;
    vg.language = document.documentElement.lang = answer.language;
    document.querySelectorAll("[data-t]").forEach((el) => {
      if (answer.texts[el.dataset.t]) el.textContent = answer.texts[el.dataset.t];
    });
    document.querySelectorAll("[data-t-label]").forEach((el) => {
      if (answer.texts[el.dataset.tLabel]) el.setAttribute("aria-label", answer.texts[el.dataset.tLabel]);
    });
    document.title = answer.texts["callback.title"] || document.title;
  } catch { /* the page stays in English */ }
}

function booking() {
  $("booking").hidden = false;
  defaults("date", "from", "to");
  $("phone").value = given.get("phone") || "";
  $("customer-id").value = given.get("customer_id") || "";
  $("subject").value = given.get("subject") || "";
  translate(given.get("language") || "");
  $("book").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("book-error").textContent = "";
    const button = e.submitter || $("book").querySelector("button");
    button.disabled = true;
    try {
      const body = {phone: $("phone").value.trim(), window: windowOf("date", "from", "to"),
        subject: $("subject").value.trim(), secret: $("secret").value.trim(),
        language: given.get("language") || vg.language};
      const customer = $("customer-id").value.trim();
      if (customer) body.customer_id = customer;
      for (const name of ["queue", "from"]) if (given.get(name)) body[name] = given.get(name);
      const answer = await api("/api/callbacks", {method: "POST", body: JSON.stringify(body)});
      $("secret").value = "";
      location.assign(new URL(answer.status_url).pathname);  // this server's page, whatever its public name
    } catch (err) {
      $("book-error").textContent = vg.texts[err.text] || sentence(err.message);
      button.disabled = false;
    }
  });
}

// -- tracking --------------------------------------------------------------------------------------------------------

// A refusal in the page's words: the server names its text (its own message is English), else by HTTP status.
const REFUSALS = {400: "callback.error_window", 404: "callback.error_not_found", 409: "callback.error_changed",
  429: "callback.error_throttled"};
const refusal = (err) =>
  vg.texts[err.text] || vg.texts[REFUSALS[err.status] || "callback.error"] || sentence(err.message);

// The window as the page's language writes a day and two times, in the browser's time zone (and its region's
// way, en-GB or pt-BR, when the browser speaks the page's language).
function when(cb) {
  const a = new Date(cb.window_start * 1000), b = new Date(cb.window_end * 1000);
  const locale = (navigator.languages || []).find((tag) => tag.split("-")[0] === vg.language) || vg.language;
  const format = new Intl.DateTimeFormat(locale,
    {weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit"});
  return format.formatRange(a, b);
}

function show(cb) {
  vg.callback = cb;
  vg.states.push(cb.state);
  const status = vg.texts[`callback.state_${cb.state}`] || cb.status;
  document.title = (vg.texts["callback.page_title"] || "Callback: {status}").replace("{status}", status);
  $("status").textContent = status;
  $("status").dataset.state = cb.state;
  const at = ORDER.indexOf(cb.state);
  $("steps").hidden = at < 0 && cb.state !== "no_answer";
  $("steps").querySelectorAll("li").forEach((li, i) => {
    li.classList.toggle("past", at >= 0 && i < at);
    if (i === at) li.setAttribute("aria-current", "step"); else li.removeAttribute("aria-current");
  });
  $("details").hidden = false;
  $("about").textContent = cb.subject;
  $("when").textContent = when(cb);
  $("number").textContent = cb.phone;
  $("secret-note").hidden = !["booked", "calling"].includes(cb.state);
  $("reschedule-box").hidden = !cb.can_reschedule;
  if (!cb.can_reschedule) $("reschedule-box").open = false;
  $("cancel").hidden = !cb.can_cancel;
  if (cb.can_reschedule && !$("new-date").value) defaults("new-date", "new-from", "new-to", new Date(cb.window_start * 1000));
}

function listen() {
  const ws = vg.ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/callback/${token}/ws`);
  ws.onmessage = (m) => {
    const ev = JSON.parse(m.data);
    if (ev.type === "callback") show(ev.callback);
  };
  ws.onclose = () => {
    if (vg.callback && !vg.callback.can_cancel) return;  // over: nothing more will change
    setTimeout(async () => { await refresh(); listen(); }, 3000);
  };
}

async function refresh() {
  try { show((await api(`/api/callback/${token}`)).callback); $("track-error").textContent = ""; }
  catch (err) { $("track-error").textContent = refusal(err); }
}

async function act(path, body) {
  $("track-error").textContent = "";
  try { show((await api(`/api/callback/${token}/${path}`, {method: "POST", body: JSON.stringify(body || {})})).callback); }
  catch (err) {
    if (err.status === 409) await refresh();  // it moved on: show where it is now
    $("track-error").textContent = refusal(err);
  }
}

// The status page, in the language the callback was booked in (an unknown link: the browser's).
async function tracking() {
  $("tracking").hidden = false;
  let cb;
  try {
    cb = (await api(`/api/callback/${token}`)).callback;
  } catch (err) {
    await translate("");
    $("status").textContent = refusal(err);
    $("steps").hidden = true;
    return;
  }
  await translate(cb.language);
  show(cb);
  listen();
  $("reschedule").addEventListener("submit", (e) => {
    e.preventDefault();
    try { act("reschedule", {window: windowOf("new-date", "new-from", "new-to")}); }
    catch (err) { $("track-error").textContent = err.message; }
  });
  $("cancel").addEventListener("click", () => act("cancel"));
}

if (token) tracking(); else booking();
