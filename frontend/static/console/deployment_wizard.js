// The deployment wizard: one step at a time (all steps show without JavaScript). Changing the pool reloads the
// page, whose profile list is the server's fit check for that pool; the last step repeats the chosen fit.
(function () {
  "use strict";
  const form = document.querySelector("[data-testid=deployment-form]");
  if (!form) return;
  const steps = [...form.querySelectorAll(".wizard-step")];
  const labels = [...document.querySelectorAll("[data-testid=wizard-steps] li")];
  const nav = form.querySelector(".wizard-nav");
  const back = form.querySelector("[data-wizard=back]");
  const next = form.querySelector("[data-wizard=next]");
  const fit = document.getElementById("fit");
  const department = form.querySelector("[name=department_id]");
  const nameInput = form.querySelector("[name=name]");
  let current = form.querySelector(".msg.error, .errorlist") ? steps.length - 1 : 0;

  function chosen() {
    return form.querySelector("[name=profile_id]:checked");
  }

  function show(index) {
    current = Math.max(0, Math.min(index, steps.length - 1));
    steps.forEach((step, i) => (step.hidden = i !== current));
    labels.forEach((label, i) => label.toggleAttribute("aria-current", i === current));
    nav.hidden = false;
    back.hidden = current === 0;
    next.hidden = current === steps.length - 1;
    next.disabled = current === 1 && !chosen();
    if (current === steps.length - 1) describeChoice();
  }

  function describeChoice() {
    const radio = chosen();
    if (!radio) return;
    const option = radio.closest(".profile-option");
    fit.dataset.status = option.dataset.status;
    fit.textContent = option.querySelector("strong").textContent + " — " + option.querySelector(".fit-summary").textContent;
  }

  back.addEventListener("click", () => show(current - 1));
  next.addEventListener("click", () => show(current + 1));
  form.addEventListener("change", (event) => {
    if (event.target === department) {
      location.href = `${form.dataset.reloadUrl}?department=${encodeURIComponent(department.value)}`;
    } else if (event.target.name === "profile_id") {
      if (!nameInput.dataset.touched) nameInput.value = event.target.dataset.slug.replace(/[._]/g, "-");
      show(current);
    }
  });
  nameInput.addEventListener("input", () => (nameInput.dataset.touched = "yes"));
  show(current);
})();
