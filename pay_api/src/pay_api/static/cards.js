// The card-update page: Stripe.js saves the card (SetupIntent), pay_api makes it the card of the
// user's next renewals. Nothing is charged here.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("card-config").textContent);
  const form = document.getElementById("card-form");
  const button = document.getElementById("save-button");
  const errorBox = document.getElementById("error");
  const base = "/cards/" + encodeURIComponent(config.userId);
  const link = "?t=" + encodeURIComponent(config.linkToken || "");
  const stripe = Stripe(config.publishableKey);
  const card = stripe.elements().create("card");
  card.mount("#card-element");

  async function post(path, body) {
    const response = await fetch(base + path + link, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body || {}),
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
      const setup = await post("/setup-intent");
      const saved = await stripe.confirmCardSetup(setup.client_secret, { payment_method: { card: card } });
      if (saved.error || !saved.setupIntent || saved.setupIntent.status !== "succeeded") {
        throw new Error((saved.error && saved.error.message) || "Your card could not be saved.");
      }
      await post("/save", { setup_intent_id: saved.setupIntent.id });
      form.hidden = true;
      document.getElementById("success").hidden = false;
    } catch (e) {
      errorBox.textContent = e.message;
      errorBox.hidden = false;
      button.disabled = false;
    }
  });
})();
