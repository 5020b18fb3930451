// The customer's page: consent, then camera and microphone (on a voice call's link, the microphone only) to the
// agent over WebRTC; subtitles, and the identity check (customer number, PIN or code, voice print consent) as the
// server asks for it. Every word comes from the server's catalogue in the customer's language (vg.texts), and
// follows it when it changes mid-call.
// What the page says about the agent is only ever what the server says: waiting, watched, ended.
"use strict";
const token = location.pathname.split("/").pop();
const $ = (id) => document.getElementById(id);
const vg = window.vg = {texts: {}, info: null, state: null, states: [], idv: [], subtitles: [], hearing: null, spoken: []};
let pc = null;
let callKey = null;
let ended = false;

// One text in the page's language, its {placeholders} filled in. A voice call says page.audio_X for page.X where
// the catalogue has one (no camera to ask for, nobody to see).
function t(key, params = {}) {
  const variant = audioOnly() && key.startsWith("page.") ? vg.texts[`page.audio_${key.slice(5)}`] : undefined;
  const text = variant ?? vg.texts[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
}

function audioOnly() { return vg.info?.media === "audio"; }

function capitalised(text) { return text ? text[0].toUpperCase() + text.slice(1) : text; }

// Every static text of the page, in the current language (again after a language change).
function render() {
  document.querySelectorAll("[data-t]").forEach((el) => { el.textContent = t(el.dataset.t); });
  const info = vg.info;
  if (!info) return;
  document.title = $("title").textContent = t("page.title", info);
  $("who").textContent = t(`${info.agent ? "page.who" : "page.who_anonymous"}${info.reason ? "_reason" : ""}`, info);
  $("consent-text").textContent = t("page.consent", info);
  $("self").setAttribute("aria-label", t("page.your_camera"));
  $("subtitles").setAttribute("aria-label", t("page.subtitles"));
  if (vg.state) status(t(STATES[vg.state]));
  document.querySelectorAll("#subtitles .who").forEach((el) => { el.textContent = `${t(el.dataset.who)}: `; });
}

const STATES = {waiting: "page.waiting", watched: "page.watched", ended: "page.ended"};

function status(text) { $("status").textContent = text; }

async function load() {
  const r = await fetch(`/api/join/${token}`, {cache: "no-store"});
  const info = await r.json();
  if (!r.ok) { status(capitalised(info.message || info.error)); return; }
  vg.info = info;
  vg.texts = info.texts;
  document.documentElement.lang = info.language;
  $("phrase").textContent = info.phrase;
  render();
  $("consent-box").hidden = false;
  $("consent").addEventListener("change", () => { $("start").disabled = !$("consent").checked; });
  $("start").addEventListener("click", start);
}

function iceComplete(peer) {
  // aiortc does not trickle ICE: send the offer only once every candidate is in it.
  if (peer.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => { if (peer.iceGatheringState === "complete") { peer.removeEventListener("icegatheringstatechange", check); resolve(); } };
    peer.addEventListener("icegatheringstatechange", check);
  });
}

async function start() {
  $("start").disabled = true;
  status(t("page.starting_camera"));
  let media;
  try {
    media = await navigator.mediaDevices.getUserMedia({
      video: audioOnly() ? false : {width: {ideal: 1280}, height: {ideal: 720}},
      audio: {echoCancellation: true, noiseSuppression: false, autoGainControl: false},
    });
  } catch (e) {
    status(t("page.camera_failed", {error: e.name}));
    $("start").disabled = false;
    return;
  }
  $("self").srcObject = media;
  $("self").hidden = audioOnly();
  pc = vg.pc = new RTCPeerConnection({iceServers: vg.info.ice_servers || []});
  media.getTracks().forEach((track) => pc.addTrack(track, media));
  pc.ontrack = (e) => { if (e.track.kind === "audio") $("agent-audio").srcObject = new MediaStream([e.track]); };
  pc.onconnectionstatechange = () => {
    if (["failed", "closed"].includes(pc.connectionState)) finish(t("page.lost"));
  };
  status(t("page.connecting"));
  await pc.setLocalDescription(await pc.createOffer());
  await iceComplete(pc);
  const r = await fetch(`/api/join/${token}/offer`, {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({type: pc.localDescription.type, sdp: pc.localDescription.sdp}),
  });
  const answer = await r.json();
  if (!r.ok) { finish(capitalised(answer.message || answer.error)); return; }
  callKey = answer.call_key;
  await pc.setRemoteDescription({type: answer.type, sdp: answer.sdp});
  $("consent-box").hidden = true;
  $("hangup").hidden = false;
  setState("waiting");  // until the server says the agent's console shows the customer
  events();
}

function setState(state) {
  vg.state = state;
  vg.states.push([state, Date.now()]);
  if (state === "ended") finish(t("page.ended"));
  else status(t(STATES[state]));
}

async function step(name, body = {}) {
  // One identity-check step; the answer is the panel's new state (the socket says the same, for other changes).
  const r = await fetch(`/api/join/${token}/${name}`, {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({call_key: callKey, ...body}),
  });
  const answer = await r.json();
  if (!r.ok) { $("idv-message").textContent = capitalised(answer.message || answer.error); return null; }
  return answer;
}

// The identity check: what the server asks for now (its message is in the page's language already). Never
// shows the verdict's detail, only what to do next.
function showIdv(view) {
  vg.idv.push(view);
  $("idv").hidden = ended || (view.step === "done" && !view.message);
  $("idv-message").textContent = view.message || "";
  $("identify-form").hidden = view.step !== "identify";
  $("code-form").hidden = view.step !== "code";
  $("idv-skip").hidden = !["identify", "code"].includes(view.step);
  if (view.step === "code") {
    $("code-label").dataset.t = view.code_kind === "otp" ? "idv.code_sms" : "idv.pin";
    $("code-label").textContent = t($("code-label").dataset.t);
  }
}

$("identify-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const view = await step("identify", {customer_id: $("customer-id").value});
  if (view) { $("customer-id").value = ""; showIdv(view); }
});
$("code-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const view = await step("verify", {code: $("code").value});
  $("code").value = "";
  if (view) showIdv(view);
});
$("idv-skip").addEventListener("click", async () => { const view = await step("skip"); if (view) showIdv(view); });

async function answerVoiceConsent(agree) {
  $("voice-consent").hidden = true;
  if (await step("voiceprint-consent", {agree})) status(t(agree ? "voice.agreed" : "voice.declined"));
}
$("voice-agree").addEventListener("click", () => answerVoiceConsent(true));
$("voice-decline").addEventListener("click", () => answerVoiceConsent(false));

// The call's events: its state, its language, subtitles (what the agent says, translated into the customer's
// language, and what the customer said) and the identity check's steps.
function events() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/join/${token}/ws?key=${encodeURIComponent(callKey)}`);
  ws.onmessage = (m) => {
    const ev = JSON.parse(m.data);
    if (ev.type === "call") setState(ev.state);
    if (ev.type === "language") { vg.texts = ev.texts; document.documentElement.lang = ev.language; render(); }
    if (ev.type === "idv") showIdv(ev);
    if (ev.type === "enrol_consent" && !ended) { $("voice-wording").textContent = ev.wording; $("voice-consent").hidden = false; }
    if (ev.type === "enrolment" && ev.state === "enrolled") status(t("voice.ready"));
    if (ev.type === "subtitle") subtitle(ev);
    if (ev.type === "hearing" && ev.listener === "customer") showHearing(ev);
    if (ev.type === "speech_out") vg.spoken.push(ev);
  };
}

// What the customer hears of the agent: offered only when a voice speaks their language and the agent's words
// are translated into it. The server mixes it (the agent's own voice ducked under the translation, for "both").
function showHearing(ev) {
  vg.hearing = ev;
  $("hearing").hidden = ended || !ev.translated_voice;
  document.querySelectorAll('input[name="hear"]').forEach((input) => { input.checked = input.value === ev.hear; });
}

document.querySelectorAll('input[name="hear"]').forEach((input) => input.addEventListener("change", async () => {
  const r = await fetch(`/api/join/${token}/hearing`, {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({call_key: callKey, hear: input.value}),
  });
  const answer = await r.json();
  if (r.ok) showHearing(answer);
  else status(t("hearing.failed", {error: answer.message || answer.error}));
}));

function subtitle(ev) {
  vg.subtitles.push(ev);
  const mine = ev.speaker === "customer";
  if (mine ? ev.kind !== "final" : ev.kind !== "translation") return;
  const list = $("subtitles");
  list.hidden = false;
  const li = Object.assign(document.createElement("li"), {className: ev.speaker, lang: ev.language});
  const who = mine ? "page.you" : "page.agent";
  li.append(Object.assign(document.createElement("span"), {className: "who", textContent: `${t(who)}: `}),
    Object.assign(document.createElement("span"), {className: "text", textContent: ev.text}));
  li.querySelector(".who").dataset.who = who;
  list.append(li);
  li.scrollIntoView({block: "nearest"});
}

function hangupBeacon() {
  if (callKey && !ended) navigator.sendBeacon(`/api/join/${token}/hangup`, JSON.stringify({call_key: callKey}));
}

// The call is over, whoever ended it: camera and microphone stop now, and the page says so.
function finish(message) {
  if (ended) return;
  hangupBeacon();
  ended = true;
  vg.state = "ended";
  if (pc) pc.close();
  const video = $("self");
  if (video.srcObject) video.srcObject.getTracks().forEach((track) => track.stop());
  video.srcObject = null;
  video.hidden = true;
  for (const id of ["hangup", "idv", "voice-consent", "consent-box", "hearing"]) $(id).hidden = true;
  status(message);
}

$("hangup").addEventListener("click", () => finish(t("page.you_ended")));
window.addEventListener("pagehide", hangupBeacon);
load().catch((e) => status(t("page.error", {error: e})));
