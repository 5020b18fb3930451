// The agent console: sign in, create links, a strip of my live calls, the call on screen (video and identity on
// one side, the conversation on the other), and my links in Live, Waiting and History tables.
"use strict";
const $ = (id) => document.getElementById(id);
const vg = window.vg = {csrf: null, agent: null, links: new Map(), events: [], videoFrames: 0, audioLevels: [], live: null,
  subtitles: [], subtitleBacklog: new Map(), voiceid: [], voiceidLatest: new Map(), idv: new Map(), enrolments: [],
  unviewed: new Set(), alerts: 0, languages: new Map(), watching: new Set(), pages: {live: 0, waiting: 0, history: 0},
  olderDone: false, hearing: new Map(), spoken: [], agentLanguages: new Map()};
const LABELS = {created: "Link created", opened: "Link opened", connected: "In progress", ended: "Done", expired: "Expired", revoked: "Revoked", interrupted: "Interrupted"};
const NAMES = {customer: "Customer", agent: "You"};
const DECISIONS = {authenticated: "Authenticated", not_authenticated: "Not authenticated",
  inconclusive: "Inconclusive (not enough speech yet)", not_enrolled: "Not enrolled", opted_out: "Opted out",
  spoof_suspected: "Not authenticated: possible synthetic or replayed voice"};
const FACTORS = {voice: "voice", pin: "PIN", otp: "one-time code"};
const HOW = {phone: "calling number", identifier: "customer number"};
// Calls the contact-centre platform streams to us: the caller is on the phone, with no video and no link.
const CHANNELS = {audiohook: "Genesys", twilio: "Twilio", whip: "WHIP"};
const TABLES = [
  {name: "live", title: "Live", states: ["connected"]},
  {name: "waiting", title: "Waiting", states: ["created", "opened"]},
  {name: "history", title: "History", states: ["ended", "expired", "revoked", "interrupted"]},
];
const PAGE = 10;
const TITLE = document.title;
// A new element for the journeys' panels; ``dataset`` (read-only on elements) is copied in.
vg.el = (tag, {dataset = {}, ...props} = {}, ...children) => {
  const n = Object.assign(document.createElement(tag), props);
  Object.assign(n.dataset, dataset);
  n.append(...children);
  return n;
};
// What the journeys' scripts (console-*.js) hear of the event stream: vg.on("payment", (ev) => ...).
const handlers = new Map();
vg.on = (type, fn) => handlers.set(type, [...(handlers.get(type) || []), fn]);
const languageName = (code) => { try { return new Intl.DisplayNames(["en"], {type: "language"}).of(code); } catch { return code; } };

const isPhone = (link) => link.channel in CHANNELS;
// A link that carries a call (video, or a platform's phone call); menus and payments are journeys shown beside.
const isCall = (link) => (link.kind || "video") === "video";
const KINDS = {video: "Video", menu: "Menu", payment: "Payment"};
// A call on a link that asked the customer for their microphone only: nothing to see, nothing to take a still of.
const isAudioOnly = (link) => isCall(link) && link.detail?.media === "audio";
const callName = (link) => isPhone(link)
  ? `Phone call from ${link.phone || "unknown number"} (${CHANNELS[link.channel]})`
  : link.customer_ref || link.phone || link.id;
const when = (seconds) => new Date(seconds * 1000).toLocaleString([], {dateStyle: "medium", timeStyle: "short"});

// The call on screen and what showing it holds: the peer connection, the agent's microphone, the level meter's
// AudioContext and timer, the frame-callback chain. closeView() releases all of it.
let view = null;

// A passing message at the top of the page (errors stay inline, beside what failed).
let toastTimer = null;
function toast(text) {
  $("toast").textContent = text;
  $("toast").hidden = !text;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { $("toast").hidden = true; }, 8000);
}
// An inline error, always the current one: each action clears its own before it runs.
function fail(id, text) { $(id).textContent = text; }

vg.api = api;
async function api(path, options = {}) {
  const headers = {"Content-Type": "application/json", ...(options.headers || {})};
  if (vg.csrf) headers["X-CSRF-Token"] = vg.csrf;
  const r = await fetch(path, {...options, headers, credentials: "same-origin"});
  const body = r.headers.get("Content-Type")?.includes("json") ? await r.json() : null;
  if (!r.ok) throw new Error(body?.error || `${r.status}`);
  return body;
}

async function boot() {
  try {
    signedIn(await api("/api/me"));
  } catch {
    $("login").hidden = false;
    $("login-name").focus();
  }
}

function signedIn(me) {
  vg.csrf = me.csrf; vg.agent = me.agent; vg.iceServers = me.ice_servers || [];
  $("login").hidden = true; $("app").hidden = false; $("logout").hidden = false;
  $("whoami").textContent = `Signed in as ${me.agent.display_name || me.agent.name}`;
  (handlers.get("me") || []).forEach((fn) => fn(me));
  $("language").value = me.agent.language || "en";
  $("my-language").value = me.agent.language || "en";
  $("my-language-box").hidden = false;
  showLanguages(me);
  connectEvents();
}

// The languages a customer may speak, each with what its subtitles will be like: the translation's tier into the
// agent's language and out of it (rule-based MT is literal; "speech" is Whisper's own translation).
function showLanguages(me) {
  vg.routes = me.routes || {};
  const tier = (t) => (t === null ? "none" : t);
  $("customer-language").replaceChildren(...(me.languages || []).map((code) => {
    const r = vg.routes[code];
    const note = r && r.to_agent !== "none" ? ` — to you: ${tier(r.to_agent)}; to them: ${tier(r.from_agent)}` : "";
    return Object.assign(document.createElement("option"), {value: code, textContent: `${languageName(code)} (${code})${note}`});
  }));
  $("agent-call-language").replaceChildren(...(me.languages || []).map((code) =>
    Object.assign(document.createElement("option"), {value: code, textContent: `${languageName(code)} (${code})`})));
}

$("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  fail("login-error", "");
  try {
    signedIn(await api("/api/login", {method: "POST", body: JSON.stringify({name: $("login-name").value, password: $("login-password").value})}));
  } catch (err) { fail("login-error", `Could not sign in: ${err.message}`); }
});

$("my-language").addEventListener("change", async () => {
  try {
    const me = await api("/api/me", {method: "PUT", body: JSON.stringify({language: $("my-language").value})});
    showLanguages({languages: [...$("customer-language").options].map((o) => o.value), routes: me.routes});
    toast("Language saved: new calls use it.");
  }
  catch (err) { toast(`Language not saved: ${err.message}`); }
});

$("logout").addEventListener("click", async () => { await api("/api/logout", {method: "POST"}); location.reload(); });

$("new-link").addEventListener("submit", async (e) => {
  e.preventDefault();
  fail("new-error", "");
  try {
    showLink(await api("/api/links", {method: "POST", body: JSON.stringify({
      customer_ref: $("customer-ref").value || null, phone: $("phone").value || null,
      language: $("language").value || null, expires_in: Number($("expires").value) * 60,
      media: $("audio-only").checked ? "audio" : "video",
    })}), "");
  } catch (err) {
    $("new-result").hidden = true;
    fail("new-error", `Could not create the link: ${err.message}`);
  }
});

// A new link's URL, QR code and phrase in the new-link card: made with the form, or escalated from a phone call.
function showLink(r, note) {
  $("new-card").open = true;
  $("new-result").hidden = false;
  $("new-result").dataset.id = r.link.id;
  $("new-for").textContent = note;
  $("link-url").value = r.url;
  $("copy-status").textContent = "";
  $("qr").replaceChildren(Object.assign(document.createElement("img"), {src: "data:image/svg+xml;base64," + btoa(r.qr_svg), alt: "QR code of the link"}));
  $("new-phrase").textContent = r.link.phrase;
  upsert(r.link);
}

// A link that can no longer be used is taken off the card: nobody should send it.
function retireShownLink(link) {
  if ($("new-result").dataset.id === link.id && !["created", "opened"].includes(link.state)) {
    $("new-result").hidden = true;
    $("link-url").value = "";
    $("qr").replaceChildren();
  }
}

$("copy").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText($("link-url").value);
    $("copy-status").textContent = "Copied.";
  } catch {
    $("link-url").select();
    $("copy-status").textContent = "Press Ctrl+C to copy the selected link.";
  }
});

function connectEvents() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/ws`);
  ws.onopen = () => { if ($("toast").textContent.startsWith("Connection")) toast(""); };
  ws.onmessage = (m) => {
    const ev = JSON.parse(m.data);
    vg.events.push(ev);
    if (ev.type === "hello") {
      Object.entries(ev.idv || {}).forEach(([id, r]) => vg.idv.set(id, {link_id: id, ...r}));
      ev.links.forEach((link) => vg.links.set(link.id, link));
      renderAll();
      const live = ev.links.filter((l) => l.state === "connected" && isCall(l)).sort((a, b) => b.connected - a.connected);
      if (!vg.live && live.length) watch(live[0].id);
    }
    if (ev.type === "link") {
      const known = vg.links.get(ev.link.id);
      upsert(ev.link);
      if (ev.link.state === "connected" && known?.state !== "connected" && isCall(ev.link)) arrived(ev.link);
    }
    if (ev.type === "snapshot" && vg.live === ev.link_id) addSnapshot(ev.snapshot);
    if (ev.type === "subtitle") subtitle(ev);
    if (ev.type === "language") language(ev);
    if (ev.type === "watching") { ev.watching ? vg.watching.add(ev.link_id) : vg.watching.delete(ev.link_id); showWatching(); }
    if (ev.type === "voiceid" || ev.type === "voiceid_alert" || ev.type === "voiceid_spoof") voiceId(ev);
    if (ev.type === "idv") identity(ev);
    if (ev.type === "enrolment") enrolment(ev);
    if (ev.type === "subtitle_error") toast(`Subtitles (${ev.speaker}): ${ev.message}`);
    if (ev.type === "hearing") hearing(ev);
    if (ev.type === "speech_out") spoken(ev);
    if (ev.type === "speech_error") toast(`Translated voice: ${ev.message}`);
    (handlers.get(ev.type) || []).forEach((fn) => fn(ev));
    if (ev.type === "speech_skipped") toast(`Translated voice for the ${ev.listener} fell behind: ${ev.clips} sentence(s) skipped (the subtitles have them).`);
  };
  ws.onclose = () => { toast("Connection to the server lost; reconnecting…"); setTimeout(connectEvents, 2000); };
}

function upsert(link) {
  vg.links.set(link.id, link);
  retireShownLink(link);
  if (link.state !== "connected") vg.unviewed.delete(link.id);
  if (vg.live === link.id && link.state !== "connected") {
    stopWatching(`Call ${LABELS[link.state].toLowerCase()}${link.end_reason ? `: ${link.end_reason}` : ""}.`);
  }
  renderAll();
}

// A call that has just connected, with a tone: shown at once when nothing else is on screen; otherwise (or while
// this tab is in the background) flagged in the strip and the tab's title until the agent looks at it.
function arrived(link) {
  beep();
  if (!vg.live) watch(link.id);
  if (vg.live !== link.id || document.hidden) {
    vg.unviewed.add(link.id);
    toast(`New call: ${callName(link)}`);
  }
  renderAll();
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && vg.live && vg.unviewed.delete(vg.live)) renderAll();
});

function beep() {
  vg.alerts++;
  try {
    const ctx = new AudioContext();
    const tone = ctx.createOscillator();
    const gain = ctx.createGain();
    gain.gain.value = 0.15;
    tone.frequency.value = 880;
    tone.connect(gain).connect(ctx.destination);
    tone.start();
    tone.stop(ctx.currentTime + 0.25);
    tone.onended = () => ctx.close();
  } catch { /* no audio output: the strip and the title still say it */ }
}

function renderAll() {
  renderStrip();
  renderTables();
  const n = vg.unviewed.size;
  document.title = n ? `(${n}) New call — ${TITLE}` : TITLE;
}

// Every live call of mine, one button each: the one on screen marked, the ones not yet seen flagged.
function renderStrip() {
  const live = [...vg.links.values()].filter((l) => l.state === "connected" && isCall(l))
    .sort((a, b) => a.connected - b.connected);
  $("strip").hidden = !live.length;
  $("strip").replaceChildren(...live.map((link) => {
    const b = button(callName(link), () => watch(link.id));
    b.dataset.id = link.id;
    b.className = "call-tab";
    if (vg.unviewed.has(link.id)) {
      b.classList.add("unviewed");
      b.append(Object.assign(document.createElement("span"), {className: "badge", textContent: "New"}));
    }
    if (vg.live === link.id) b.setAttribute("aria-current", "true");
    return b;
  }));
}

// Live, Waiting and History: newest first, dated, ten rows a page.
function renderTables() {
  const all = [...vg.links.values()];
  $("tables").replaceChildren(...TABLES.map((spec) => {
    const rows = all.filter((l) => spec.states.includes(l.state))
      .sort((a, b) => (b.connected || b.created) - (a.connected || a.created));
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    const page = vg.pages[spec.name] = Math.min(vg.pages[spec.name], pages - 1);
    const section = document.createElement("section");
    section.className = "table-block";
    section.setAttribute("aria-labelledby", `${spec.name}-heading`);
    section.append(Object.assign(document.createElement("h3"), {id: `${spec.name}-heading`, textContent: `${spec.title} (${rows.length})`}));
    if (!rows.length && spec.name !== "history") {
      section.append(Object.assign(document.createElement("p"), {className: "muted", textContent: spec.name === "live" ? "No call in progress." : "No link waiting for a customer."}));
      return section;
    }
    const table = document.createElement("table");
    table.id = `${spec.name}-table`;
    table.createTHead().insertRow().append(...["When", "Link", "Customer", "Phrase", "State", "Identity", "Actions"].map((text) =>
      Object.assign(document.createElement("th"), {textContent: text, scope: "col"})));
    const body = table.createTBody();
    body.id = `${spec.name}-rows`;
    rows.slice(page * PAGE, (page + 1) * PAGE).forEach((link) => body.append(row(link)));
    section.append(table);
    const more = spec.name === "history" && !vg.olderDone;
    if (pages > 1 || more) section.append(pager(spec.name, page, pages, more));
    return section;
  }));
}

function pager(name, page, pages, more) {
  const nav = document.createElement("nav");
  nav.className = "pager";
  nav.setAttribute("aria-label", `${name} pages`);
  const prev = button("Previous", () => { vg.pages[name]--; renderTables(); });
  prev.disabled = page === 0;
  const next = button("Next", () => { vg.pages[name]++; renderTables(); });
  next.disabled = page >= pages - 1;
  nav.append(prev, Object.assign(document.createElement("span"), {textContent: ` Page ${page + 1} of ${pages} `}), next);
  if (more && page >= pages - 1) nav.append(button("Load older", loadOlder));
  return nav;
}

async function loadOlder() {
  const oldest = Math.min(...[...vg.links.values()].map((l) => l.created));
  try {
    const {links} = await api(`/api/links?before=${oldest}`);
    links.forEach((link) => vg.links.set(link.id, link));
    vg.olderDone = links.length === 0;
    renderTables();
  } catch (err) { toast(`Could not load older links: ${err.message}`); }
}

function row(link) {
  const tr = document.createElement("tr");
  tr.dataset.id = link.id;
  const who = isPhone(link) ? callName(link) : link.customer_ref || link.phone || "—";
  const kind = isPhone(link) ? "Phone" : isAudioOnly(link) ? "Voice" : KINDS[link.kind] || link.kind;
  for (const text of [when(link.connected || link.created), kind, who, link.phrase || "—"]) tr.insertCell().textContent = text;
  const state = tr.insertCell();
  state.textContent = LABELS[link.state] || link.state;
  state.className = `state ${link.state}`;
  state.dataset.state = link.state;
  const idv = vg.idv.get(link.id);
  const identityCell = tr.insertCell();
  identityCell.className = "idv-cell";
  identityCell.dataset.status = idv ? idv.status : "";
  identityCell.textContent = idv ? `${idv.status_label}${idv.verified_by ? ` (${FACTORS[idv.verified_by]})` : ""}` : "";
  const actions = tr.insertCell();
  actions.className = "actions";
  if (link.state === "connected" && isCall(link)) actions.append(button("View", () => watch(link.id)));
  if (["connected", "ended", "revoked", "interrupted"].includes(link.state) && link.connected && isCall(link)) {
    for (const format of ["json", "vtt"]) {
      actions.append(Object.assign(document.createElement("a"), {href: `/api/calls/${link.id}/transcript?format=${format}`, textContent: `Transcript (${format.toUpperCase()})`, className: "download"}));
    }
  }
  if (isPhone(link) && link.state === "connected") actions.append(button("End call", () => endCall(link.id)));
  else if (["created", "opened", "connected"].includes(link.state)) actions.append(button("Revoke", () => revoke(link.id)));
  return tr;
}

// Revoking a live call ends it for the customer: the agent confirms first. A link not yet used goes at once.
async function revoke(linkId) {
  const link = vg.links.get(linkId);
  if (link.state === "connected") {
    $("confirm-text").textContent = `Revoke the link of ${callName(link)}? This ends their call now.`;
    $("confirm").returnValue = "";
    $("confirm").showModal();
    const answer = await new Promise((resolve) => $("confirm").addEventListener("close", () => resolve($("confirm").returnValue), {once: true}));
    if (answer !== "ok") return;
  }
  try { upsert((await api(`/api/links/${linkId}/revoke`, {method: "POST"})).link); toast("Link revoked."); }
  catch (err) { toast(`Could not revoke: ${err.message}`); }
}

function button(text, onclick) {
  const b = document.createElement("button");
  b.textContent = text; b.type = "button"; b.addEventListener("click", onclick);
  return b;
}

function iceComplete(peer) {
  if (peer.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => peer.addEventListener("icegatheringstatechange", () => { if (peer.iceGatheringState === "complete") resolve(); }));
}

async function watch(linkId) {
  closeView();
  const link = vg.links.get(linkId);
  const phone = isPhone(link);
  // A phone call has no video to join: the agent hears the caller on the phone, and sees identity and subtitles.
  const v = view = {id: linkId, pc: phone ? null : new RTCPeerConnection({iceServers: vg.iceServers}), mic: null, audio: null, timer: null, frame: null, closed: false, reported: false};
  const pc = v.pc;
  vg.live = linkId;
  vg.unviewed.delete(linkId);
  renderAll();
  (handlers.get("view") || []).forEach((fn) => fn(linkId));
  $("new-card").open = false;
  $("live").hidden = false;
  $("live-error").textContent = "";
  $("live-ref").textContent = callName(link);
  $("live-phrase").textContent = link.phrase;
  const audioOnly = isAudioOnly(link);
  for (const id of ["live-phrase-row", "watching"]) $(id).hidden = phone;
  for (const id of ["remote", "snapshot", "stills"]) $(id).hidden = phone || audioOnly;
  $("escalate").hidden = !phone;
  $("snapshots").replaceChildren();
  $("transcript").replaceChildren();
  showVoiceId(linkId);
  showIdentity(linkId);
  showLanguage(linkId);
  $("agent-call-language").value = vg.agentLanguages.get(linkId) || vg.agent.language || "en";
  showHearing(linkId);
  showWatching();
  $("enrolment").textContent = "";
  (vg.subtitleBacklog.get(linkId) || []).forEach(subtitle);
  if (phone) return;
  if (!audioOnly) pc.addTransceiver("video", {direction: "recvonly"});
  try {
    const mic = await navigator.mediaDevices.getUserMedia({audio: true});
    if (v.closed) { mic.getTracks().forEach((t) => t.stop()); return; }  // another call was shown meanwhile
    v.mic = mic;
    mic.getTracks().forEach((t) => pc.addTrack(t, mic));
  } catch {
    if (v.closed) return;
    pc.addTransceiver("audio", {direction: "recvonly"});
    toast("No microphone: the customer will not hear you.");
  }
  const stream = new MediaStream();
  pc.ontrack = (e) => {
    stream.addTrack(e.track);
    $("remote").srcObject = stream;  // hidden on a voice call, and heard all the same
    if (e.track.kind === "audio") measureAudio(v, e.track);
  };
  // On a voice call the customer is told the agent hears them once their audio plays here.
  if (audioOnly) pc.onconnectionstatechange = () => { if (pc.connectionState === "connected") reportWatching(v, true); };
  await pc.setLocalDescription(await pc.createOffer());
  await iceComplete(pc);
  if (v.closed) return;
  try {
    const answer = await api(`/api/calls/${linkId}/agent-offer`, {method: "POST", body: JSON.stringify({type: "offer", sdp: pc.localDescription.sdp})});
    if (v.closed) return;
    await pc.setRemoteDescription(answer);
  } catch (err) { if (!v.closed) fail("live-error", `Could not join the call: ${err.message}`); return; }
  if (!audioOnly) countFrames(v);
  const {snapshots} = await api(`/api/calls/${linkId}/snapshots`);
  if (!v.closed) snapshots.forEach(addSnapshot);
}

// The customer is told the agent can see them only once a frame of theirs is on this screen (on a voice call, hear
// them once connected), and told again when it no longer is.
function reportWatching(v, watching) {
  if (v.reported === watching) return;
  v.reported = watching;
  if (watching) vg.firstFrameAt = Date.now();
  api(`/api/calls/${v.id}/watching`, {method: "POST", body: JSON.stringify({watching})}).catch(() => {});
}

function countFrames(v) {
  const video = $("remote");
  const tick = () => { vg.videoFrames++; reportWatching(v, true); v.frame = video.requestVideoFrameCallback(tick); };
  v.frame = video.requestVideoFrameCallback(tick);
}

function measureAudio(v, track) {
  // The loudness of the customer's voice over time: the console's level meter, and what tests check.
  const ctx = v.audio = new AudioContext();
  const source = ctx.createMediaStreamSource(new MediaStream([track]));
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  source.connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  const t0 = performance.now();
  v.timer = setInterval(() => {
    analyser.getFloatTimeDomainData(buf);
    let sum = 0; for (const x of buf) sum += x * x;
    vg.audioLevels.push([(performance.now() - t0) / 1000, Math.sqrt(sum / buf.length)]);
  }, 20);
}

// Releases everything the call on screen holds; safe to call when nothing is shown.
function closeView() {
  const v = view;
  view = null;
  if (!v) return;
  v.closed = true;
  if (v.reported && vg.links.get(v.id)?.state === "connected") reportWatching(v, false);
  v.pc?.close();
  v.mic?.getTracks().forEach((t) => t.stop());
  v.audio?.close();
  clearInterval(v.timer);
  if (v.frame !== null) $("remote").cancelVideoFrameCallback(v.frame);
}

function stopWatching(message) {
  closeView();
  vg.live = null;
  $("live").hidden = true;
  $("remote").srcObject = null;
  toast(message);
  const next = [...vg.links.values()].find((l) => l.state === "connected");
  if (!next) $("new-card").open = true;
  renderAll();
}

function showWatching() {
  const id = vg.live;
  const told = isAudioOnly(vg.links.get(id) || {}) ? "hear" : "see";
  $("watching").textContent = id && vg.watching.has(id) ? `The customer is told you can ${told} them.` : "The customer is told: waiting for you.";
}

$("snapshot").addEventListener("click", async () => {
  fail("live-error", "");
  try { await api(`/api/calls/${vg.live}/snapshots`, {method: "POST"}); toast("Still taken."); }
  catch (err) { fail("live-error", `No still: ${err.message}`); }
});

function endCall(linkId) {
  fail("live-error", "");
  api(`/api/calls/${linkId}/end`, {method: "POST"}).then((r) => upsert(r.link)).catch((e) => fail("live-error", `Could not end the call: ${e.message}`));
}

$("end").addEventListener("click", () => endCall(vg.live));

// A video link for the caller on the phone, shown in the new-link card for the agent to read out or text.
$("escalate").addEventListener("click", async () => {
  const link = vg.links.get(vg.live);
  fail("live-error", "");
  try {
    showLink(await api(`/api/calls/${link.id}/escalate`, {method: "POST"}), `${callName(link)}: read the link out to the caller, or text it.`);
    $("new-result").scrollIntoView({block: "nearest"});
  } catch (err) { fail("live-error", `Could not escalate to video: ${err.message}`); }
});

// The customer's language: detected (and re-detected until sure), or set here by the agent.
function language(ev) {
  if (ev.speaker === "agent") {
    vg.agentLanguages.set(ev.link_id, ev.language);
    if (ev.link_id === vg.live) $("agent-call-language").value = ev.language;
    return;
  }
  vg.languages.set(ev.link_id, ev);
  if (ev.link_id === vg.live) showLanguage(ev.link_id);
}

function showLanguage(linkId) {
  const ev = vg.languages.get(linkId);
  const link = vg.links.get(linkId);
  const code = ev?.language || (link.language !== "detect" ? link.language : null);
  const how = !ev ? (code ? "set on the link" : "detecting…")
    : ev.by === "agent" ? "set by you"
    : `detected${ev.confidence != null ? `, ${Math.round(ev.confidence * 100)}% sure` : ""}${ev.settled ? "" : ", still listening"}`;
  $("detected").textContent = code ? `Customer speaks ${languageName(code)} (${how}).` : `Customer's language: ${how}`;
  $("detected").dataset.language = code || "";
  if (code) $("customer-language").value = code;
}

$("language-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  fail("live-error", "");
  const code = $("customer-language").value;
  try {
    await api(`/api/calls/${vg.live}/language`, {method: "POST", body: JSON.stringify({language: code})});
    toast(`Customer's language set to ${languageName(code)}.`);
  } catch (err) { fail("live-error", `Could not change the language: ${err.message}`); }
});

// Translated voice: what each side hears of the other (the original, its translation spoken, or both), offered
// when a voice speaks the listener's language. The agent chooses here; the customer on their page.
function hearing(ev) {
  const both = vg.hearing.get(ev.link_id) || {};
  both[ev.listener] = ev;
  vg.hearing.set(ev.link_id, both);
  if (ev.link_id === vg.live) showHearing(ev.link_id);
}

const HEARD = {original: "the agent's own voice", translated: "the translated voice", both: "both voices"};

function showHearing(linkId) {
  const {agent, customer} = vg.hearing.get(linkId) || {};
  $("hearing-box").hidden = !(agent?.translated_voice || customer?.translated_voice);
  $("agent-hearing").disabled = !agent?.translated_voice;
  if (agent) $("agent-hearing").value = agent.hear;
  $("customer-hearing").textContent = customer?.translated_voice
    ? `Customer hears ${HEARD[customer.hear]} (${languageName(customer.language)}, voice ${customer.voice}).` : "";
}

$("agent-hearing").addEventListener("change", async () => {
  fail("live-error", "");
  try {
    hearing(await api(`/api/calls/${vg.live}/hearing`, {method: "POST", body: JSON.stringify({hear: $("agent-hearing").value})}));
  } catch (err) { fail("live-error", `Could not change what you hear: ${err.message}`); }
});

// A translated line began to play to its listener: the line shows it was spoken, and how long after the speech.
function spoken(ev) {
  vg.spoken.push(ev);
  const li = ev.link_id === vg.live && document.querySelector(`#transcript li[data-key="${ev.speaker}-${ev.segment}"]`);
  if (li) li.querySelector(".translation").title += ` · spoken to the ${ev.listener} ${(ev.timing.audio - ev.timing.speech_end).toFixed(2)} s after the speech`;
}

// A bilingual agent switches language for the rest of this call: their speech is recognised in it, and the
// customer is translated into it (into nothing, when it is the customer's own).
$("my-call-language-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  fail("live-error", "");
  const code = $("agent-call-language").value;
  try {
    await api(`/api/calls/${vg.live}/language`, {method: "POST", body: JSON.stringify({language: code, speaker: "agent"})});
    toast(`You speak ${languageName(code)} in this call.`);
  } catch (err) { fail("live-error", `Could not switch your language: ${err.message}`); }
});

// Subtitles: one list item per utterance; grey partial text, then the final line with its translation below.
function subtitle(ev) {
  vg.subtitles.push(ev);
  if (ev.link_id !== vg.live) {
    if (!vg.subtitleBacklog.has(ev.link_id)) vg.subtitleBacklog.set(ev.link_id, []);
    vg.subtitleBacklog.get(ev.link_id).push(ev);
    return;
  }
  const key = `${ev.speaker}-${ev.segment}`;
  let li = document.querySelector(`#transcript li[data-key="${key}"]`);
  if (!li) {
    li = document.createElement("li");
    li.dataset.key = key;
    li.className = ev.speaker;
    li.append(Object.assign(document.createElement("span"), {className: "who", textContent: `${NAMES[ev.speaker]}: `}),
      Object.assign(document.createElement("span"), {className: "text"}),
      Object.assign(document.createElement("div"), {className: "translation"}));
    $("transcript").append(li);
  }
  if (ev.kind === "partial" && !li.classList.contains("final")) {
    li.querySelector(".text").textContent = ev.text;
    li.classList.add("partial");
  } else if (ev.kind === "final") {
    li.querySelector(".text").textContent = ev.text;
    li.lang = ev.language;
    li.classList.remove("partial");
    li.classList.add("final");
  } else if (ev.kind === "translation") {
    const t = li.querySelector(".translation");
    t.textContent = ev.text;
    t.lang = ev.language;
    if (ev.tier && ev.tier.startsWith("rule-based")) {
      // Rule-based MT is literal and makes visible mistakes: the agent should know which lines came from it.
      t.append(Object.assign(document.createElement("span"), {className: "tier", textContent: `${ev.tier} translation`, title: ev.engine}));
    }
    const lag = ev.timing.sent - ev.timing.speech_end;
    t.title = `${lag.toFixed(2)} s after the speech ended (ASR ${(ev.timing.asr - ev.timing.speech_end).toFixed(2)} s, MT ${(ev.timing.mt - ev.timing.asr).toFixed(3)} s)`;
    t.dataset.lag = lag.toFixed(2);
  }
  li.scrollIntoView({block: "nearest"});
}

// Voice ID: the claimed customer's verification as it changes, and watch-list alerts.
function voiceId(ev) {
  vg.voiceid.push(ev);
  if (ev.type === "voiceid") vg.voiceidLatest.set(ev.link_id, ev);
  else if (ev.type === "voiceid_alert") vg.voiceidLatest.set(`${ev.link_id}:alert`, ev);
  // A spoof decision stays for the call: a later bona fide score does not clear it.
  else if (!vg.voiceidLatest.get(`${ev.link_id}:spoof`)?.risk) vg.voiceidLatest.set(`${ev.link_id}:spoof`, ev);
  if (ev.link_id === vg.live) showVoiceId(ev.link_id);
}

function showVoiceId(linkId) {
  const v = vg.voiceidLatest.get(linkId);
  const alert = vg.voiceidLatest.get(`${linkId}:alert`);
  $("voiceid").textContent = v ? `Voice ID (${v.claimed}): ${DECISIONS[v.decision] || v.decision}` +
    (v.score != null ? ` — score ${v.score} on ${v.speech_seconds} s of speech` : "") +
    (v.early && v.score != null ? " (early: decides from 3 s)" : "") : "";
  $("voiceid").dataset.decision = v ? v.decision : "";
  $("voiceid-alert").hidden = !alert;
  if (alert) $("voiceid-alert").textContent = `High risk: the voice matches the fraud watch list (${alert.hits.map((h) => h.reason || h.watchlist_id).join("; ")})`;
  const spoof = vg.voiceidLatest.get(`${linkId}:spoof`);
  $("voiceid-spoof").hidden = !spoof?.spoofed;
  if (spoof?.spoofed) $("voiceid-spoof").textContent = "Possible synthetic or replayed voice" +
    (spoof.early ? ` (early indication, on ${spoof.speech_seconds} s of speech)` : ": voice ID cannot verify this caller");
}

// ID&V: who the caller is, whether that is verified, by what, and why not; the agent can ask for a PIN or
// one-time code, and offer voice enrolment to a verified caller.
function identity(ev) {
  vg.idv.set(ev.link_id, ev);
  const link = vg.links.get(ev.link_id);
  if (link) upsert(link);
  if (ev.link_id === vg.live) showIdentity(ev.link_id);
}

function showIdentity(linkId) {
  const r = vg.idv.get(linkId);
  const status = $("idv-status");
  status.dataset.status = r ? r.status : "";
  $("idv-controls").hidden = !r;  // no identity check in this call: nothing to ask for or enrol
  $("idv-what").hidden = !r;
  if (!r) { status.textContent = "No identity check in this call."; $("idv-detail").textContent = ""; $("idv-history").replaceChildren(); return; }
  // Verified: the factor says it all; otherwise the reason is what the agent needs (what failed, what is awaited).
  status.textContent = r.verified_by ? `${r.status_label} by ${FACTORS[r.verified_by]}` : `${r.status_label} — ${r.reason}`;
  $("idv-detail").textContent = r.customer_id
    ? `Customer ${r.customer_id}${r.customer_name ? ` (${r.customer_name})` : ""}, identified by ${HOW[r.identified_by] || r.identified_by}.`
    : "";
  $("idv-history").replaceChildren(...r.history.map((h) => Object.assign(document.createElement("li"),
    {textContent: `${new Date(h.at * 1000).toLocaleTimeString()} ${h.what}`})));
  $("ask-code").disabled = !r.customer_id || r.status === "identified_and_verified" || r.step === "code";
  $("enrol").disabled = r.status !== "identified_and_verified";
}

function enrolment(ev) {
  vg.enrolments.push(ev);
  if (ev.link_id !== vg.live) return;
  const text = {asked: "Voice print: asking the customer for consent…", declined: "Voice print: the customer declined.",
    collecting: "Voice print: the customer agreed; collecting their speech…"}[ev.state];
  // The recording's quality: a refused one was not added (noise, a second voice); warnings come with the rest.
  const q = ev.quality;
  const said = q && q.messages.length ? ` ${q.refuse ? "Not used: " : ""}${q.messages.join(" ")}` : "";
  if (text) $("enrolment").textContent = text;
  else if (ev.enrolled) $("enrolment").textContent = `Voice print enrolled (${ev.speech_seconds} s of speech).${said}`;
  else if (ev.refused) $("enrolment").textContent = `Voice print refused: ${ev.refused}.`;
  else $("enrolment").textContent = `Voice print: ${ev.speech_seconds} of ${ev.needed} s of speech.${said}`;
  $("enrolment").dataset.quality = q ? (q.refuse ? "refused" : q.problems.length ? "warning" : "ok") : "";
}

$("ask-code").addEventListener("click", () => api(`/api/calls/${vg.live}/idv/code`, {method: "POST"}).catch((e) => fail("live-error", e.message)));
$("enrol").addEventListener("click", async () => {
  try {
    const r = await api(`/api/calls/${vg.live}/enrolment`, {method: "POST"});
    enrolment({link_id: vg.live, ...r});
  } catch (e) { fail("live-error", e.message); }
});

function addSnapshot(s) {
  if (document.querySelector(`li[data-snapshot="${s.id}"]`)) return;
  const li = document.createElement("li");
  li.dataset.snapshot = s.id;
  const img = Object.assign(document.createElement("img"), {src: s.url, alt: `Still taken ${new Date(s.taken * 1000).toLocaleTimeString()}`});
  const meta = document.createElement("p");
  meta.textContent = `${new Date(s.taken * 1000).toLocaleTimeString()} by ${s.agent}, ${s.width}×${s.height} `;
  meta.append(Object.assign(document.createElement("a"), {href: `${s.url}?download=1`, textContent: "Download"}));
  li.append(img, meta);
  $("snapshots").prepend(li);
}

boot();
