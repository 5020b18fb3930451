// The visual IVR on the customer's phone: the operator's menu, one screen at a time, in the customer's language.
// The server holds the menu and its rules; this page shows its screens, sends each choice or entry with the key
// the start returned, and shows refused values beside their fields. A hand-off (an agent, a callback) is a page
// of its own: the browser goes there. Every text is the server's (the menu's own words, or the catalogue's).
"use strict";
const token = location.pathname.split("/").pop();
const $ = (id) => document.getElementById(id);
const vg = window.vg = {texts: {}, info: null, view: null, views: [], errors: null};
let key = null;
let busy = false;

function t(name, params = {}) {
  const text = vg.texts[name] ?? name;
  return text.replace(/\{(\w+)\}/g, (m, p) => (p in params ? String(params[p]) : m));
}

function status(text) { $("status").textContent = text || ""; }

// A new element; ``dataset`` (read-only on elements) is copied in.
function el(tag, {dataset = {}, ...props} = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  Object.assign(node.dataset, dataset);
  node.append(...children);
  return node;
}

async function call(method, path, body) {
  const options = {method, cache: "no-store", headers: {"Content-Type": "application/json"}};
  if (body !== undefined) options.body = JSON.stringify(body);
  const r = await fetch(`/api/menu/${token}${path}`, options);
  const answer = await r.json().catch(() => ({}));
  return {ok: r.ok, status: r.status, answer};
}

async function load() {
  const info = await call("GET", "");
  if (!info.ok) { status(info.answer.message || info.answer.error); return; }
  vg.info = info.answer;
  vg.texts = info.answer.texts;
  document.documentElement.lang = info.answer.language;
  $("company").textContent = t("menu.title", info.answer);
  document.title = $("title").textContent = info.answer.title;
  $("phrase").textContent = info.answer.phrase;
  document.querySelectorAll("[data-t]").forEach((node) => { node.textContent = t(node.dataset.t); });
  const started = await call("POST", "/start", {});
  if (!started.ok) { status(started.answer.message || started.answer.error); return; }
  key = started.answer.key;
  status("");
  show(started.answer);
}

// One step: the server answers with the new view, or says why not (by field for entries).
async function step(kind, fields = {}) {
  if (busy) return;
  busy = true;
  status(t("menu.checking"));
  try {
    const r = await call("POST", "/step", {key, step: kind, ...fields});
    if (r.ok) { status(""); show(r.answer); return; }
    vg.errors = r.answer.errors || null;
    if (r.answer.errors) { status(""); showErrors(r.answer.errors); return; }
    status(r.answer.message || r.answer.error);
    if (r.status === 410) for (const id of ["screen", "idv", "result", "back"]) $(id).hidden = true;  // over
  } catch (e) {
    status(t("page.error", {error: e.message}));
  } finally {
    busy = false;
  }
}

function show(view) {
  const before = vg.view;
  vg.view = view;
  vg.views.push(view);
  const r = view.result;
  if (view.mode === "done" && r && r.kind === "redirect") {
    status(t("menu.one_moment"));
    location.assign(r.url);
    return;
  }
  $("screen").hidden = view.mode !== "screen";
  $("idv").hidden = view.mode !== "idv";
  $("result").hidden = view.mode !== "result";
  $("back").hidden = !view.can_back;
  if (view.mode === "screen") showScreen(view.screen);
  if (view.mode === "idv") showIdv(view.idv || {});
  if (view.mode === "result") showResult(view);
  // A new screen is announced: focus its heading (the form keeps focus while its errors are fixed).
  const heading = {screen: "screen-title", idv: "idv-title", result: "result-title"}[view.mode];
  const changed = !before || before.mode !== view.mode || before.screen.id !== view.screen.id;
  if (heading && changed) $(heading).focus();
}

function showScreen(screen) {
  $("screen-title").textContent = screen.title;
  $("screen-text").textContent = screen.text;
  $("screen-text").hidden = !screen.text;
  $("options").replaceChildren(...screen.options.map((o) =>
    el("li", {}, el("button", {type: "button", className: "big", textContent: o.label, onclick: () => step("choose", {option: o.id})}))));
  $("options").hidden = !screen.options.length;
  $("fields").hidden = !screen.fields.length;
  $("field-list").replaceChildren(...screen.fields.map(fieldInput));
  $("submit").textContent = screen.submit;
  $("form-error").textContent = "";
}

// A field as the customer fills it in: its label, hint and error are tied to it for screen readers.
function fieldInput(f) {
  const id = `f-${f.name}`;
  const error = el("p", {id: `${id}-error`, className: "error field-error"});
  const hint = f.hint ? el("p", {id: `${id}-hint`, className: "hint", textContent: f.hint}) : null;
  const described = [hint && hint.id, error.id].filter(Boolean).join(" ");
  if (f.type === "choice") {
    const box = el("fieldset", {className: "menu-choice", id});
    box.setAttribute("aria-describedby", described);
    box.append(el("legend", {textContent: f.label}));
    f.choices.forEach((c, i) => {
      const input = el("input", {type: "radio", name: f.name, value: c.value, id: `${id}-${i}`, checked: c.value === f.value, required: f.required});
      box.append(el("label", {className: "inline", htmlFor: input.id}, input, ` ${c.label}`));
    });
    return el("div", {className: "menu-field", dataset: {name: f.name}}, box, ...(hint ? [hint] : []), error);
  }
  const input = el("input", {id, name: f.name, required: f.required, value: f.value || "", autocomplete: "off"});
  if (f.type === "digits") Object.assign(input, {inputMode: "numeric", type: f.secret ? "password" : "text"});
  else if (f.type === "amount") Object.assign(input, {inputMode: "decimal", type: "text"});
  else if (f.type === "date") input.type = "date";
  else input.type = f.secret ? "password" : "text";
  if (f.max_length) input.maxLength = f.max_length;
  if (f.min_length) input.minLength = f.min_length;
  input.setAttribute("aria-describedby", described);
  return el("div", {className: "menu-field", dataset: {name: f.name}},
    el("label", {htmlFor: id, textContent: f.label}), ...(hint ? [hint] : []), input, error);
}

function values() {
  const out = {};
  for (const f of vg.view.screen.fields) {
    if (f.type === "choice") out[f.name] = document.querySelector(`input[name="${f.name}"]:checked`)?.value ?? "";
    else out[f.name] = $(`f-${f.name}`).value;
  }
  return out;
}

function showErrors(errors) {
  let first = null;
  for (const f of vg.view.screen.fields) {
    const message = errors[f.name] || "";
    $(`f-${f.name}-error`).textContent = message;
    const target = $(`f-${f.name}`);
    target.setAttribute("aria-invalid", message ? "true" : "false");
    if (message && !first) first = f.type === "choice" ? document.querySelector(`input[name="${f.name}"]`) : target;
  }
  $("form-error").textContent = t("menu.check");
  if (first) first.focus();
}

function showIdv(idv) {
  $("idv-message").textContent = idv.message || t("menu.checking");
  $("identify-form").hidden = idv.step !== "identify";
  $("code-form").hidden = idv.step !== "code";
  $("idv-skip").hidden = !["identify", "code"].includes(idv.step);
  if (idv.step === "code") $("code-label").textContent = t(idv.code_kind === "otp" ? "idv.code_sms" : "idv.pin");
  if (idv.step === "lookup") setTimeout(refresh, 1000);  // the directory is slow: ask again
}

function showResult(view) {
  const r = view.result || {};
  $("result-title").textContent = view.screen.title;
  $("result-rows").replaceChildren(...(r.rows || []).flatMap((row) => [el("dt", {textContent: row.label}), el("dd", {textContent: row.value})]));
  $("result-rows").hidden = !r.rows;
  $("result-message").textContent = r.message || "";
  $("offer-callback").hidden = r.offer !== "callback";
  $("continue").hidden = !view.can_continue || r.offer === "callback";
}

async function refresh() {
  const r = await call("POST", "/state", {key});
  if (r.ok) show(r.answer);
}

$("fields").addEventListener("submit", (e) => { e.preventDefault(); step("enter", {values: values()}); });
$("identify-form").addEventListener("submit", (e) => { e.preventDefault(); step("identify", {customer_id: $("customer-id").value}); });
$("code-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const code = $("code").value;
  $("code").value = "";
  step("verify", {code});
});
$("idv-skip").addEventListener("click", () => step("skip"));
$("continue").addEventListener("click", () => step("continue"));
$("offer-callback").addEventListener("click", () => step("callback"));
$("back").addEventListener("click", () => step("back"));

load();
