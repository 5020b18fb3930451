// The customer's page: consent, then camera and microphone to the agent over WebRTC.
"use strict";
const token = location.pathname.split("/").pop();
const $ = (id) => document.getElementById(id);
let pc = null;
let sessionKey = null;
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
  sessionKey = answer.session_key;
  await pc.setRemoteDescription({type: answer.type, sdp: answer.sdp});
  $("consent-box").hidden = true;
  $("hangup").hidden = false;
  subtitles();
}

// Subtitles: what the agent says, translated into the customer's language, and what the customer said.
window.vgSubtitles = [];
function subtitles() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/join/${token}/ws?key=${encodeURIComponent(sessionKey)}`);
  ws.onmessage = (m) => {
    const ev = JSON.parse(m.data);
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
  if (sessionKey && !ended) navigator.sendBeacon(`/api/join/${token}/hangup`, JSON.stringify({session_key: sessionKey}));
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
  status(message);
}

$("hangup").addEventListener("click", () => finish("You ended the call. You can close this page."));
window.addEventListener("pagehide", hangupBeacon);
load().catch((e) => status(`Something went wrong: ${e}`));
