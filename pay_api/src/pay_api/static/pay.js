// The payment page: save the card with Stripe.js (SetupIntent), let pay_api charge it, finish
// 3-D Secure when asked. The same code runs with Stripe.js and with localstripe's mock.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("pay-config").textContent);
  const form = document.getElementById("payment-form");
  const button = document.getElementById("pay-button");
  const errorBox = document.getElementById("error");
  const base = "/pay/" + encodeURIComponent(config.paymentId);
  if (form.hidden) return; // paid, processing or closed: nothing to do here

  const stripe = Stripe(config.publishableKey);
  const card = stripe.elements().create("card");
  card.mount("#card-element");
  let busy = false;

  function show(id, message) {
    if (id === "processing" && message) {
      document.getElementById("processing-message").textContent = message;
    }
    ["success", "processing", "closed"].forEach(function (s) {
      document.getElementById(s).hidden = s !== id;
    });
    if (id) form.hidden = true;
  }

  function showError(message) {
    errorBox.textContent = message || "The payment did not go through. Try again.";
    errorBox.hidden = false;
  }

  async function post(path, body) {
    let response;
    try {
      response = await fetch(base + path, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        body: JSON.stringify(body || {}),
      });
    } catch (e) {
      throw new Error("We could not reach the server. Check your connection and try again.");
    }
    const data = await response.json().catch(function () { return {}; });
    if (!response.ok) {
      const error = new Error(data.message || "Something went wrong. Try again.");
      error.code = data.code;
      throw error;
    }
    return data;
  }

  function render(result) {
    if (result.status === "succeeded") { show("success"); return true; }
    // `message`: pay_api's own words, e.g. "we are checking with your bank" when Stripe's
    // answer was lost.
    if (result.status === "processing") { show("processing", result.message); return true; }
    showError(result.error && result.error.message);
    return false;
  }

  async function pay() {
    const setup = await post("/setup-intent");
    const saved = await stripe.confirmCardSetup(setup.client_secret, { payment_method: { card: card } });
    if (saved.error || !saved.setupIntent || saved.setupIntent.status !== "succeeded") {
      showError((saved.error && saved.error.message) || "Your card could not be saved. Check the details.");
      return false;
    }
    let result = await post("/charge", { setup_intent_id: saved.setupIntent.id });
    if (result.status === "requires_action") {
      // Read both: Stripe.js reports problems in `error`, the mock also as a status.
      const action = await stripe.confirmCardPayment(result.client_secret);
      const actionStatus = action.paymentIntent && action.paymentIntent.status;
      result = await post("/sync");
      if (result.status !== "succeeded" && result.status !== "processing") {
        const message = (action.error && action.error.message) ||
          (result.error && result.error.message) ||
          (actionStatus && actionStatus !== "succeeded"
            ? "The 3-D Secure authentication failed. Try again or use another card." : null);
        showError(message);
        return false;
      }
    }
    return render(result);
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    if (busy) return; // one submission at a time
    busy = true;
    button.disabled = true;
    errorBox.hidden = true;
    let finished = false;
    try {
      finished = await pay();
    } catch (e) {
      if (e.code === "payment_not_payable") {
        const now = await fetch(base + "/status").then(function (r) { return r.json(); })
          .catch(function () { return {}; });
        show(now.status === "succeeded" ? "success"
          : now.status === "processing" || now.status === "unknown" ? "processing" : "closed");
        finished = true;
      } else showError(e.message);
    } finally {
      busy = false;
      button.disabled = finished;
    }
  });
})();
