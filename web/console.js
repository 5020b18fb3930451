// The agent console: sign in, create links, watch calls live, take stills.
"use strict";
const $ = (id) => document.getElementById(id);
const vg = window.vg = {csrf: null, agent: null, links: new Map(), events: [], videoFrames: 0, audioLevels: [], live: null,
  subtitles: [], subtitleBacklog: new Map(), voiceid: [], voiceidLatest: new Map(), idv: new Map(), enrolments: []};
const LABELS = {created: "Link created", opened: "Link opened", connected: "In progress", ended: "Done", expired: "Expired", revoked: "Revoked", interrupted: "Interrupted"};
const NAMES = {customer: "Customer", agent: "You"};
const DECISIONS = {authenticated: "Authenticated", not_authenticated: "Not authenticated",
  inconclusive: "Inconclusive (not enough speech yet)", not_enrolled: "Not enrolled", opted_out: "Opted out"};
const FACTORS = {voice: "voice", pin: "PIN", otp: "one-time code"};
const HOW = {phone: "calling number", identifier: "customer number"};
// Calls the contact-centre platform streams to us: the caller is on the phone, with no video and no link.
const CHANNELS = {audiohook: "Genesys", twilio: "Twilio", whip: "WHIP"};
const TITLE = document.title;

const isPhone = (link) => link.channel in CHANNELS;
const callName = (link) => isPhone(link)
  ? `Phone call from ${link.phone || "unknown number"} (${CHANNELS[link.channel]})`
  : link.customer_ref || link.phone || link.id;

// The call on screen and what showing it holds: the peer connection, the agent's microphone, the level meter's
// AudioContext and timer, the frame-callback chain. closeView() releases all of it.
let view = null;

function toast(text) { $("toast").textContent = text; }

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
    const me = await api("/api/me");
    signedIn(me);
  } catch {
    $("login").hidden = false;
  }
}

function signedIn(me) {
  vg.csrf = me.csrf; vg.agent = me.agent; vg.iceServers = me.ice_servers || [];
  $("login").hidden = true; $("app").hidden = false; $("logout").hidden = false;
  $("whoami").textContent = `Signed in as ${me.agent.name}`;
  $("language").value = me.agent.language || "en";
  $("my-language").value = me.agent.language || "en";
  $("my-language-box").hidden = false;
  connectEvents();
}

$("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    signedIn(await api("/api/login", {method: "POST", body: JSON.stringify({name: $("login-name").value, password: $("login-password").value})}));
  } catch (err) { $("login-error").textContent = err.message; }
});

$("my-language").addEventListener("change", async () => {
  try { await api("/api/me", {method: "PUT", body: JSON.stringify({language: $("my-language").value})}); toast("Language saved: new calls use it."); }
  catch (err) { toast(err.message); }
});

$("logout").addEventListener("click", async () => { await api("/api/logout", {method: "POST"}); location.reload(); });

$("new-link").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    showLink(await api("/api/links", {method: "POST", body: JSON.stringify({
      customer_ref: $("customer-ref").value || null, phone: $("phone").value || null,
      language: $("language").value || null, expires_in: Number($("expires").value) * 60,
    })}), "");
  } catch (err) { toast(`Could not create the link: ${err.message}`); }
});

// A new link's URL, QR code and phrase in the new-link card: made with the form, or escalated from a phone call.
function showLink(r, note) {
  $("new-result").hidden = false;
  $("new-for").textContent = note;
  $("link-url").value = r.url;
  $("qr").replaceChildren(Object.assign(document.createElement("img"), {src: "data:image/svg+xml;base64," + btoa(r.qr_svg), alt: "QR code of the link"}));
  $("new-phrase").textContent = r.link.phrase;
  upsert(r.link);
}

$("copy").addEventListener("click", () => navigator.clipboard?.writeText($("link-url").value));

function connectEvents() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/ws`);
  ws.onmessage = (m) => {
    const ev = JSON.parse(m.data);
    vg.events.push(ev);
    if (ev.type === "hello") { Object.entries(ev.idv || {}).forEach(([id, r]) => vg.idv.set(id, {link_id: id, ...r})); ev.links.forEach(upsert); }
    if (ev.type === "link") {
      const known = vg.links.has(ev.link.id);
      upsert(ev.link);
      if (!known) arrived(ev.link);
    }
    if (ev.type === "snapshot" && vg.live === ev.link_id) addSnapshot(ev.snapshot);
    if (ev.type === "subtitle") subtitle(ev);
    if (ev.type === "voiceid" || ev.type === "voiceid_alert") voiceId(ev);
    if (ev.type === "idv") identity(ev);
    if (ev.type === "enrolment") enrolment(ev);
    if (ev.type === "subtitle_error") toast(`Subtitles (${ev.speaker}): ${ev.message}`);
  };
  ws.onclose = () => { toast("Connection to the server lost; reconnecting…"); setTimeout(connectEvents, 2000); };
}

function upsert(link) {
  vg.links.set(link.id, link);
  let row = document.querySelector(`tr[data-id="${link.id}"]`);
  if (!row) {
    row = document.createElement("tr");
    row.dataset.id = link.id;
    $("links").prepend(row);
  }
  const when = new Date(link.created * 1000).toLocaleTimeString();
  row.innerHTML = "";
  const who = isPhone(link) ? callName(link) : link.customer_ref || link.phone || "—";
  for (const text of [when, who, link.phrase || "—"]) row.insertCell().textContent = text;
  const state = row.insertCell();
  state.textContent = LABELS[link.state] || link.state;
  state.className = `state ${link.state}`;
  state.dataset.state = link.state;
  const idv = vg.idv.get(link.id);
  const identityCell = row.insertCell();
  identityCell.className = "idv-cell";
  identityCell.dataset.status = idv ? idv.status : "";
  identityCell.textContent = idv ? `${idv.status_label}${idv.verified_by ? ` (${FACTORS[idv.verified_by]})` : ""}` : "";
  const actions = row.insertCell();
  if (link.state === "connected") actions.append(button("View", () => watch(link.id)));
  if (["connected", "ended", "revoked", "interrupted"].includes(link.state) && link.connected) {
    for (const format of ["json", "vtt"]) {
      actions.append(Object.assign(document.createElement("a"), {href: `/api/calls/${link.id}/transcript?format=${format}`, textContent: `Transcript (${format.toUpperCase()})`, className: "download"}));
    }
  }
  if (isPhone(link) && link.state === "connected") actions.append(button("End call", () => endCall(link.id)));
  else if (["created", "opened", "connected"].includes(link.state)) actions.append(button("Revoke", () => api(`/api/links/${link.id}/revoke`, {method: "POST"}).catch((e) => toast(e.message))));
  if (vg.live === link.id && link.state !== "connected") stopWatching(`Call ${LABELS[link.state].toLowerCase()}: ${link.end_reason || ""}`);
  if (link.state === "connected" && !vg.live) watch(link.id);
}

// A phone call the platform has just put through to this agent: shown at once (unless another call is on screen:
// its view stays, and the new call waits in the table), and named in the tab's title.
function arrived(link) {
  if (!isPhone(link) || link.state !== "connected") return;
  if (!vg.live) watch(link.id);
  document.title = `${callName(link)} — ${TITLE}`;
  toast(`Incoming: ${callName(link)}`);
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
  const v = view = {pc: phone ? null : new RTCPeerConnection({iceServers: vg.iceServers}), mic: null, audio: null, timer: null, frame: null, closed: false};
  const pc = v.pc;
  vg.live = linkId;
  $("live").hidden = false;
  $("live-ref").textContent = callName(link);
  $("live-phrase").textContent = link.phrase;
  for (const id of ["live-phrase-row", "remote", "snapshot", "stills"]) $(id).hidden = phone;
  $("escalate").hidden = !phone;
  $("snapshots").replaceChildren();
  $("transcript").replaceChildren();
  showVoiceId(linkId);
  showIdentity(linkId);
  $("enrolment").textContent = "";
  $("detected").textContent = "";
  (vg.subtitleBacklog.get(linkId) || []).forEach(subtitle);
  if (phone) return;
  pc.addTransceiver("video", {direction: "recvonly"});
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
    $("remote").srcObject = stream;
    if (e.track.kind === "audio") measureAudio(v, e.track);
  };
  await pc.setLocalDescription(await pc.createOffer());
  await iceComplete(pc);
  if (v.closed) return;
  try {
    const answer = await api(`/api/calls/${linkId}/agent-offer`, {method: "POST", body: JSON.stringify({type: "offer", sdp: pc.localDescription.sdp})});
    if (v.closed) return;
    await pc.setRemoteDescription(answer);
  } catch (err) { if (!v.closed) toast(`Could not join the call: ${err.message}`); return; }
  countFrames(v);
  const {snapshots} = await api(`/api/calls/${linkId}/snapshots`);
  if (!v.closed) snapshots.forEach(addSnapshot);
}

function countFrames(v) {
  const video = $("remote");
  const tick = () => { vg.videoFrames++; v.frame = video.requestVideoFrameCallback(tick); };
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

// Releases everything the call on screen holds (and the new call's note in the tab's title); safe to call when
// nothing is shown.
function closeView() {
  const v = view;
  view = null;
  document.title = TITLE;
  if (!v) return;
  v.closed = true;
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
}

$("snapshot").addEventListener("click", async () => {
  try { await api(`/api/calls/${vg.live}/snapshots`, {method: "POST"}); toast("Still taken."); }
  catch (err) { toast(`No still: ${err.message}`); }
});

function endCall(linkId) { api(`/api/calls/${linkId}/end`, {method: "POST"}).catch((e) => toast(e.message)); }

$("end").addEventListener("click", () => endCall(vg.live));

// A video link for the caller on the phone, shown in the new-link card for the agent to read out or text.
$("escalate").addEventListener("click", async () => {
  const link = vg.links.get(vg.live);
  try {
    showLink(await api(`/api/calls/${link.id}/escalate`, {method: "POST"}), `${callName(link)}: read the link out to the caller, or text it.`);
    $("new-result").scrollIntoView({block: "nearest"});
  } catch (err) { toast(`Could not escalate to video: ${err.message}`); }
});

// Subtitles: one list item per utterance; grey partial text, then the final line with its translation below.
function subtitle(ev) {
  vg.subtitles.push(ev);
  if (ev.link_id !== vg.live) {
    if (!vg.subtitleBacklog.has(ev.link_id)) vg.subtitleBacklog.set(ev.link_id, []);
    vg.subtitleBacklog.get(ev.link_id).push(ev);
    return;
  }
  if (ev.detected_language) $("detected").textContent = `(customer speaks: ${ev.detected_language})`;
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
  else vg.voiceidLatest.set(`${ev.link_id}:alert`, ev);
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
  if (text) $("enrolment").textContent = text;
  else if (ev.enrolled) $("enrolment").textContent = `Voice print enrolled (${ev.speech_seconds} s of speech).`;
  else if (ev.refused) $("enrolment").textContent = `Voice print refused: ${ev.refused}.`;
  else $("enrolment").textContent = `Voice print: ${ev.speech_seconds} of ${ev.needed} s of speech`;
}

$("ask-code").addEventListener("click", () => api(`/api/calls/${vg.live}/idv/code`, {method: "POST"}).catch((e) => toast(e.message)));
$("enrol").addEventListener("click", async () => {
  try {
    const r = await api(`/api/calls/${vg.live}/enrolment`, {method: "POST"});
    enrolment({link_id: vg.live, ...r});
  } catch (e) { toast(e.message); }
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
