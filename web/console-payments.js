// The console's payments panel (issue 15, pay by link): a small form that asks the customer for a payment (a link,
// with its URL and QR code to send), and each payment's state as the provider reports it, live: Link opened → On
// the payment page → Details entered → Success / Failed. A declined card is shown under Details entered: the customer
// is still on the provider's page and may try another card (after max_declines, VoxGate closes that page: Failed).
// The agent never sees card details: there are none here.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const LABELS = {created: "Link sent", opened: "Link opened", handed_off: "On the payment page",
    details_entered: "Details entered", succeeded: "Success", failed: "Failed"};
  const LINK_ENDS = {expired: "Link expired", revoked: "Link revoked"};
  const payments = new Map();
  let panel = null;
  let config = null;

  const el = vg.el;
  const digits = (currency) => {
    try { return new Intl.NumberFormat("en", {style: "currency", currency: currency.toUpperCase()}).resolvedOptions().maximumFractionDigits; }
    catch { return 2; }
  };
  const money = (amount, currency) => {
    try { return new Intl.NumberFormat(undefined, {style: "currency", currency: currency.toUpperCase()}).format(amount / 10 ** digits(currency)); }
    catch { return `${amount} ${currency}`; }
  };

  function build() {
    panel = $("payments-panel");
    const currency = el("select", {id: "pay-currency"}, ...config.currencies.map((c) => el("option", {value: c, textContent: c.toUpperCase()})));
    const form = el("form", {id: "pay-form"},
      el("label", {}, "Amount", el("input", {id: "pay-amount", inputMode: "decimal", required: true, size: 8, placeholder: "19.99"})),
      el("label", {}, "Currency", currency),
      el("label", {}, "Description", el("input", {id: "pay-description", maxLength: 200, placeholder: "What it is for"})),
      el("label", {}, "Customer reference", el("input", {id: "pay-customer-ref", maxLength: 64})),
      el("button", {type: "submit", className: "primary", textContent: "Request payment"}));
    const result = el("div", {id: "pay-result", hidden: true},
      el("p", {}, "Send this payment link to the customer. It works once, on one device."),
      el("p", {className: "copy-row"}, el("input", {id: "pay-url", readOnly: true, ariaLabel: "Payment link"})),
      el("div", {id: "pay-qr"}),
      el("p", {}, "Security phrase the customer sees: ", el("strong", {id: "pay-phrase", className: "words"})));
    panel.replaceChildren(
      el("h2", {id: "payments-title", textContent: "Payments"}),
      el("p", {className: "muted", textContent: `Ask for a payment: the customer pays on ${config.provider}'s secure page, never to you.`}),
      form, el("p", {id: "pay-error", className: "error", role: "alert"}), result,
      el("ul", {id: "payments-list", className: "payments-list", ariaLive: "polite"}));
    form.addEventListener("submit", create);
    panel.hidden = false;
  }

  async function create(e) {
    e.preventDefault();
    $("pay-error").textContent = "";
    const currency = $("pay-currency").value;
    const major = Number($("pay-amount").value.replace(",", "."));
    const amount = Math.round(major * 10 ** digits(currency));
    if (!Number.isFinite(major) || amount <= 0) { $("pay-error").textContent = "Type the amount, such as 19.99"; return; }
    const body = {kind: "payment", amount, currency};
    if ($("pay-description").value.trim()) body.description = $("pay-description").value.trim();
    if ($("pay-customer-ref").value.trim()) body.customer_ref = $("pay-customer-ref").value.trim();
    try {
      const r = await vg.api("/api/links", {method: "POST", body: JSON.stringify(body)});
      $("pay-result").hidden = false;
      $("pay-result").dataset.id = r.link.id;
      $("pay-url").value = r.url;
      $("pay-qr").replaceChildren(el("img", {src: "data:image/svg+xml;base64," + btoa(r.qr_svg), alt: "QR code of the payment link"}));
      $("pay-phrase").textContent = r.link.phrase;
      ["pay-amount", "pay-description", "pay-customer-ref"].forEach((id) => { $(id).value = ""; });
    } catch (err) { $("pay-error").textContent = `Could not create the payment link: ${err.message}`; }
  }

  function show(p) {
    payments.set(p.link_id, {...payments.get(p.link_id), ...p});
    const item = payments.get(p.link_id);
    let li = document.querySelector(`#payments-list li[data-link="${item.link_id}"]`);
    if (!li) {
      li = el("li", {});
      li.dataset.link = item.link_id;
      $("payments-list").prepend(li);
    }
    const steps = (item.steps || []).filter((s) => s.state !== "created");
    const label = item.final || !LINK_ENDS[item.link_state] ? LABELS[item.state] : LINK_ENDS[item.link_state];
    const state = el("span", {className: "payment-state", textContent: label});
    state.dataset.state = item.state;
    li.replaceChildren(
      el("strong", {textContent: money(item.amount, item.currency)}), " ",
      el("span", {textContent: [item.description, item.customer_ref].filter(Boolean).join(" · ")}), " — ", state,
      el("ol", {className: "payment-steps"}, ...steps.map((s) => el("li", {textContent: LABELS[s.state], title: new Date(s.at * 1000).toLocaleTimeString()}))),
      item.detail && item.state === "failed" ? el("span", {className: "muted", textContent: ` (${item.detail})`}) : "",
      declined(item));
    if (item.final && $("pay-result").dataset.id === item.link_id) $("pay-result").hidden = true;
  }

  // "Declined (generic_decline): the customer may try another card", while they still may.
  function declined(item) {
    if (!item.declined || item.state !== "details_entered") return "";
    const count = item.declines > 1 ? ` ${item.declines} of ${item.max_declines} declined.` : "";
    return el("p", {className: "payment-declined", role: "status",
      textContent: `Declined (${item.declined}): the customer may try another card.${count}`});
  }

  vg.on("hello", async () => {
    try { config = await vg.api("/api/payments"); } catch { return; }  // payments are off on this server
    if (!panel) build();
    $("payments-list").replaceChildren();
    [...config.payments].reverse().forEach(show);
  });
  vg.on("payment", (ev) => {
    if (!panel) return;
    const steps = payments.get(ev.link_id)?.steps || [];
    // Events can overtake each other's steps lists: keep every state seen, in the order of the states.
    const seen = new Map([...steps, ...(ev.steps || [])].map((s) => [s.state, s]));
    if (!seen.has(ev.state)) seen.set(ev.state, {state: ev.state, at: ev.updated});
    show({...ev, steps: Object.keys(LABELS).filter((s) => seen.has(s)).map((s) => seen.get(s))});
  });
  vg.on("link", (ev) => {
    if (!panel || ev.link.kind !== "payment" || !payments.has(ev.link.id)) return;
    show({link_id: ev.link.id, link_state: ev.link.state});
    if (!["created", "opened"].includes(ev.link.state) && $("pay-result").dataset.id === ev.link.id) $("pay-result").hidden = true;
  });
})();
