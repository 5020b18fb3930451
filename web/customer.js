// The customer's page: consent, then camera and microphone to the agent over WebRTC; subtitles, and the
// identity check (customer number, PIN or code, voice print consent) as the server asks for it.
"use strict";
const token = location.pathname.split("/").pop();
const $ = (id) => document.getElementById(id);
let pc = null;
let callKey = null;
let ended = false;

function status(text) { $("status").textContent = text; }

async function load() {
  const r = await fetch(`/api/join/${token}`, {cache: "no-store"});
  const info = await r.json();
  if (!r.ok) { $("title").textContent = "Link no longer valid"; $("who").textContent = info.error; $("consent-box").hidden = true; return; }
  window.vgInfo = info;
  $("title").textContent = `Video call with ${info.company}`;
  $("who").textContent = `${info.agent} from ${info.company} asks to see your camera ${info.reason}.`;
  $("company").textContent = info.company;
  $("phrase").textContent = info.phrase;
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
  status("Starting your camera…");
  let media;
  try {
    media = await navigator.mediaDevices.getUserMedia({
      video: {width: {ideal: 1280}, height: {ideal: 720}},
      audio: {echoCancellation: true, noiseSuppression: false, autoGainControl: false},
    });
  } catch (e) {
    status(`Your camera or microphone could not start (${e.name}). Allow them in your browser and try again.`);
    $("start").disabled = false;
    return;
  }
  $("self").srcObject = media;
  $("self").hidden = false;
  pc = new RTCPeerConnection({iceServers: window.vgInfo.ice_servers || []});
  media.getTracks().forEach((t) => pc.addTrack(t, media));
  pc.ontrack = (e) => { if (e.track.kind === "audio") $("agent-audio").srcObject = new MediaStream([e.track]); };
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "connected") status("Connected. The agent can see you.");
    if (["failed", "closed"].includes(pc.connectionState)) finish("The call has ended.");
  };
  status("Connecting…");
  await pc.setLocalDescription(await pc.createOffer());
  await iceComplete(pc);
  const r = await fetch(`/api/join/${token}/offer`, {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({type: pc.localDescription.type, sdp: pc.localDescription.sdp}),
  });
  const answer = await r.json();
  if (!r.ok) { finish(answer.error); return; }
  callKey = answer.call_key;
  await pc.setRemoteDescription({type: answer.type, sdp: answer.sdp});
  $("consent-box").hidden = true;
  $("hangup").hidden = false;
  events();
}

async function step(name, body = {}) {
  // One identity-check step; the answer is the panel's new state (the socket says the same, for other changes).
  const r = await fetch(`/api/join/${token}/${name}`, {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({call_key: callKey, ...body}),
  });
  const answer = await r.json();
  if (!r.ok) { $("idv-message").textContent = answer.error; return null; }
  return answer;
}

// The identity check: what the server asks for now. Never shows the verdict's detail, only what to do next.
window.vgIdv = [];
function showIdv(view) {
  window.vgIdv.push(view);
  $("idv").hidden = view.step === "done" && !view.message;
  $("idv-message").textContent = view.message || "";
  $("identify-form").hidden = view.step !== "identify";
  $("code-form").hidden = view.step !== "code";
  $("idv-skip").hidden = !["identify", "code"].includes(view.step);
  if (view.step === "code") $("code-label").textContent = view.code_kind === "otp" ? "Code from your text message" : "PIN";
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
  if (await step("voiceprint-consent", {agree})) status(agree ? "Thank you. Please carry on talking to your agent." : "No voice print will be made.");
}
$("voice-agree").addEventListener("click", () => answerVoiceConsent(true));
$("voice-decline").addEventListener("click", () => answerVoiceConsent(false));

// The call's events: subtitles (what the agent says, translated into the customer's language, and what the
// customer said) and the identity check's steps.
window.vgSubtitles = [];
function events() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/join/${token}/ws?key=${encodeURIComponent(callKey)}`);
  ws.onmessage = (m) => {
    const ev = JSON.parse(m.data);
    if (ev.type === "idv") showIdv(ev);
    if (ev.type === "enrol_consent") { $("voice-wording").textContent = ev.wording; $("voice-consent").hidden = false; }
    if (ev.type === "enrolment" && ev.state === "enrolled") status("Your voice print is ready: next time we will recognise you as you speak.");
    if (ev.type !== "subtitle") return;
    window.vgSubtitles.push(ev);
    const mine = ev.speaker === "customer";
    if (mine ? ev.kind !== "final" : ev.kind !== "translation") return;
    const list = $("subtitles");
    list.hidden = false;
    const li = Object.assign(document.createElement("li"), {className: ev.speaker, lang: ev.language});
    li.append(Object.assign(document.createElement("span"), {className: "who", textContent: mine ? "You: " : "Agent: "}),
      Object.assign(document.createElement("span"), {className: "text", textContent: ev.text}));
    list.append(li);
    li.scrollIntoView({block: "nearest"});
  };
}

function hangupBeacon() {
  if (callKey && !ended) navigator.sendBeacon(`/api/join/${token}/hangup`, JSON.stringify({call_key: callKey}));
}

function finish(message) {
  if (ended) return;
  hangupBeacon();
  ended = true;
  if (pc) pc.close();
  const video = $("self");
  if (video.srcObject) video.srcObject.getTracks().forEach((t) => t.stop());
  video.hidden = true;
  $("hangup").hidden = true;
  $("idv").hidden = true;
  $("voice-consent").hidden = true;
  status(message);
}

$("hangup").addEventListener("click", () => finish("You ended the call. You can close this page."));
window.addEventListener("pagehide", hangupBeacon);
load().catch((e) => status(`Something went wrong: ${e}`));
