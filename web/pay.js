// The customer's payment page (/j/TOKEN): who asks, the security phrase, the amount in their locale, and a button
// that hands them to the payment provider's own page, where the card is typed (never here). The provider sends
// them back to /pay/done?link=ID, where this script reads the outcome from the server with the key the hand-off
// gave (kept in this tab only): the URL says which payment, never how it went.
"use strict";
const $ = (id) => document.getElementById(id);
const vg = window.vg = {info: null, result: null};
const POLL_MS = 1000;
const POLL_FOR = 60;  // seconds: providers usually report within a few

// An amount in minor units (1999) as the customer's locale writes it in the currency (£19.99, 19,99 €).
function money(amount, currency) {
  const code = currency.toUpperCase();
  try {
    const format = new Intl.NumberFormat(navigator.languages?.[0] || navigator.language, {style: "currency", currency: code});
    const digits = format.resolvedOptions().maximumFractionDigits;
    return format.format(amount / 10 ** digits);
  } catch { return `${(amount / 100).toFixed(2)} ${code}`; }
}

function status(text) { $("status").textContent = text; }

async function load() {
  const token = location.pathname.split("/").pop();
  const r = await fetch(`/api/join/${token}/payment`, {cache: "no-store"});
  const info = await r.json();
  if (!r.ok) { $("who").textContent = info.message || info.error; return; }
  vg.info = info;
  document.title = `Payment to ${info.company}`;
  $("title").textContent = `Payment to ${info.company}`;
  $("who").textContent = info.agent ? `${info.agent} at ${info.company} asks you to pay:` : `${info.company} asks you to pay:`;
  $("phrase").textContent = info.phrase;
  $("amount").textContent = money(info.amount, info.currency);
  $("description").textContent = info.description;
  $("pay").textContent = `Pay securely with ${info.provider}`;
  $("request").hidden = false;
  $("pay").addEventListener("click", () => pay(token));
}

async function pay(token) {
  $("pay").disabled = true;
  status("Opening the secure payment page…");
  try {
    const r = await fetch(`/api/join/${token}/payment`, {method: "POST", cache: "no-store"});
    const body = await r.json();
    if (!r.ok) throw new Error(body.message || body.error);
    sessionStorage.setItem(`vg-pay-${body.link_id}`, JSON.stringify({key: body.key, url: body.url}));
    location.assign(body.url);
  } catch (err) {
    status(err.message);
    $("pay").disabled = false;
  }
}

// -- back from the provider ---------------------------------------------------------------------------------------

async function done() {
  const link = new URLSearchParams(location.search).get("link") || "";
  $("title").textContent = "Payment";
  $("who").textContent = "";
  $("result").hidden = false;
  const saved = JSON.parse(sessionStorage.getItem(`vg-pay-${link}`) || "null");
  if (!saved) {
    outcome("pending", "This page shows the result only in the browser that paid. Your agent sees it too: ask them.");
    return;
  }
  const started = Date.now();
  for (;;) {
    let r = null;
    try { r = await fetch(`/api/pay/status?link=${encodeURIComponent(link)}`, {cache: "no-store", headers: {"X-Payment-Key": saved.key}}); }
    catch { r = null; }
    const body = r ? await r.json().catch(() => null) : null;
    if (r && r.ok && body) {
      vg.result = body;
      show(body, saved);
      if (body.final) return;
    } else if (r && !r.ok) {
      outcome("pending", (body && (body.message || body.error)) || "The result could not be read. Your agent sees it: ask them.");
      return;
    }
    if (Date.now() - started > POLL_FOR * 1000) {
      outcome("pending", `We have not heard from ${body?.provider || "the payment provider"} yet. Your agent will see the result as soon as it arrives.`);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function show(r, saved) {
  document.title = `Payment to ${r.company}`;
  $("title").textContent = `Payment to ${r.company}`;
  const amount = money(r.amount, r.currency);
  if (r.state === "succeeded") outcome("succeeded", `Payment received: ${amount}. Thank you.`, r.description);
  else if (r.state === "failed") outcome("failed", `The payment of ${amount} did not go through.`, "No money was taken. Your agent can send you a new link.");
  else {
    const left = new URLSearchParams(location.search).has("left");
    outcome("pending", left ? `You left the payment page before paying ${amount}.` : `Waiting for the result of your payment of ${amount}…`);
    $("back").hidden = !saved.url;
    $("back").onclick = () => location.assign(saved.url);
  }
  if (r.final) $("back").hidden = true;
}

function outcome(state, text, detail = "") {
  $("outcome").dataset.state = state;
  $("outcome").textContent = text;
  $("outcome-detail").textContent = detail;
}

// Back from the provider's page may show this page from the browser's cache, as it was before the hand-off: read
// it again (the server sends a used payment link's customer on to its result page).
window.addEventListener("pageshow", (e) => { if (e.persisted) location.reload(); });

if (location.pathname === "/pay/done") done(); else load();
