// In-page confirmation and text-input dialogs (no window.confirm/prompt), shared by the console and the chat.
// A form with data-confirm="…what will be lost…" asks before it submits; data-confirm-label names the button.
(function () {
  "use strict";

  const dialog = document.getElementById("app-dialog");
  if (!dialog) return;
  const message = dialog.querySelector("[data-role=message]");
  const input = dialog.querySelector("[data-role=input]");
  const ok = dialog.querySelector("[data-role=ok]");
  const cancel = dialog.querySelector("[data-role=cancel]");
  const defaultOk = ok.textContent;
  let settle = null;

  function close(result) {
    if (dialog.open) dialog.close();
    const done = settle;
    settle = null;
    if (done) done(result);
  }

  // Resolves true/false (confirm) or the text / null (ask).
  function open(text, options) {
    const opts = options || {};
    if (settle) close(null);
    message.textContent = text;
    ok.textContent = opts.okLabel || defaultOk;
    ok.classList.toggle("danger", Boolean(opts.danger));
    input.hidden = !opts.ask;
    input.value = opts.value || "";
    dialog.showModal();
    (opts.ask ? input : cancel).focus();
    if (opts.ask) input.select();
    return new Promise(function (resolve) {
      settle = resolve;
    });
  }

  ok.addEventListener("click", function () {
    close(input.hidden ? true : input.value);
  });
  cancel.addEventListener("click", function () {
    close(input.hidden ? false : null);
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter") {
      event.preventDefault();
      ok.click();
    }
  });
  dialog.addEventListener("cancel", function () {
    close(input.hidden ? false : null);
  });

  window.AppDialog = {
    confirm: function (text, options) {
      return open(text, Object.assign({}, options, { ask: false }));
    },
    ask: function (text, value, options) {
      return open(text, Object.assign({}, options, { ask: true, value: value }));
    },
  };

  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) return;
    if (form.dataset.confirmed === "yes") return;
    event.preventDefault();
    const submitter = event.submitter;
    window.AppDialog.confirm(form.dataset.confirm, {
      okLabel: form.dataset.confirmLabel,
      danger: "confirmDanger" in form.dataset,
    }).then(function (yes) {
      if (!yes) return;
      form.dataset.confirmed = "yes";
      if (!form.isConnected) document.body.appendChild(form); // swapped out by a refresh meanwhile
      form.requestSubmit(submitter && submitter.isConnected ? submitter : undefined);
    });
  });

  // A polling refresh must not swap the form out from under an open dialog.
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (dialog.open) event.preventDefault();
  });
})();
