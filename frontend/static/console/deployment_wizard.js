// The create wizard's fit check: asks the profiles API whether the chosen profile fits the chosen pool.
(function () {
  const form = document.querySelector("[data-testid=deployment-form]");
  const box = document.getElementById("fit");
  if (!form || !box) return;
  const profile = form.querySelector("[name=profile_id]");
  const department = form.querySelector("[name=department_id]");
  let seq = 0;
  async function check() {
    if (!profile.value || !department.value) return;
    const mine = ++seq;
    box.dataset.status = "checking";
    try {
      const url = `/api/v1/profiles/${profile.value}/fit/?department=${encodeURIComponent(department.value)}`;
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      const body = await response.json();
      if (mine !== seq) return;
      if (!response.ok) throw new Error((body.error && body.error.message) || response.statusText);
      box.dataset.status = body.status;
      box.textContent = body.summary + (body.changes && body.changes.length ? " — " + body.changes.join("; ") : "");
    } catch (err) {
      if (mine !== seq) return;
      box.dataset.status = "error";
      box.textContent = String(err.message || err);
    }
  }
  profile.addEventListener("change", check);
  department.addEventListener("change", check);
  check();
})();
