// The renewal's authentication page: Stripe.js confirms the renewal's ONE PaymentIntent with the
// customer present (client secret + the saved card), then pay_api reads Stripe's answer.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("pay-config").textContent);
  const form = document.getElementById("authenticate-form");
  const button = document.getElementById("authenticate-button");
  const errorBox = document.getElementById("error");
  const base = "/pay/" + encodeURIComponent(config.paymentId);
  const link = "?t=" + encodeURIComponent(config.linkToken || "");
  if (form.hidden) return;
  const stripe = Stripe(config.publishableKey);

  function show(id) {
    ["success", "processing", "closed"].forEach(function (s) {
      document.getElementById(s).hidden = s !== id;
    });
    form.hidden = true;
  }

  function showError(message) {
    errorBox.textContent = message || "The payment did not go through. Try again.";
    errorBox.hidden = false;
  }

  async function post(path) {
    const response = await fetch(base + path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: "{}",
    });
    const data = await response.json().catch(function () { return {}; });
    if (!response.ok) throw new Error(data.message || "Something went wrong. Try again.");
    return data;
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    button.disabled = true;
    errorBox.hidden = true;
    try {
      const details = await post("/authenticate" + link);
      const action = await stripe.confirmCardPayment(details.client_secret,
        { payment_method: details.payment_method_id });
      const result = await post("/sync");
      if (result.status === "succeeded") { show("success"); return; }
      if (result.status === "processing") { show("processing"); return; }
      showError((action.error && action.error.message) || (result.error && result.error.message) ||
        "The 3-D Secure authentication failed. Try again.");
    } catch (e) {
      showError(e.message);
    }
    button.disabled = false;
  });
})();
