// The capacity calculator: asks /api/v1/capacity/ as the admin types and shows the plan.
(function () {
  "use strict";

  const GIB = 1024 ** 3;
  const MIB = 1024 ** 2;
  const DEBOUNCE_MS = 200;
  // How a profile's fields fill the calculator's inputs.
  const FROM_PROFILE = {
    model: (p) => p.model,
    engine: (p) => p.engine,
    gpu_count: (p) => p.nodes * p.gpus_per_node,
    memory_per_gpu_gib: (p) => p.min_gpu_memory_gib,
    context_length: (p) => p.max_model_len,
    gpu_memory_utilization: (p) => p.gpu_memory_utilization,
    dtype: (p) => p.precision,
    kv_dtype: (p) => p.kv_dtype,
    tensor_parallel: (p) => p.tensor_parallel,
    pipeline_parallel: (p) => p.pipeline_parallel,
    cpu_ram_gib: (p) => p.cpu_ram_gib,
  };

  function formatBytes(value) {
    if (value >= GIB) return (value / GIB).toFixed(2) + " GiB";
    if (value >= MIB) return (value / MIB).toFixed(1) + " MiB";
    if (value >= 1024) return (value / 1024).toFixed(1) + " KiB";
    return value + " B";
  }

  function format(key, value, table) {
    if (value === null || value === undefined) return "—";
    if (typeof value === "boolean") return value ? table.dataset.yes : table.dataset.no;
    if (typeof value === "number" && key.includes("bytes")) return formatBytes(value);
    if (typeof value === "number") return value.toLocaleString();
    return String(value);
  }

  function query(form) {
    const params = new URLSearchParams();
    for (const el of form.elements) {
      if (!el.name || el.name === "preset") continue;
      const value = el.value.trim();
      if (value !== "") params.set(el.name, value);
    }
    return params;
  }

  function init() {
    const form = document.getElementById("capacity-form");
    if (!form) return;
    const table = document.querySelector("[data-testid=capacity-result]");
    const errorBox = document.querySelector("[data-testid=capacity-error]");
    const headline = document.querySelector("[data-key-headline]");
    const presets = JSON.parse(document.getElementById("capacity-presets").textContent);
    let timer = null;
    let latest = 0;

    function clearErrors() {
      errorBox.hidden = true;
      errorBox.textContent = "";
      for (const el of form.elements) el.removeAttribute("aria-invalid");
    }

    function showPlan(plan) {
      clearErrors();
      for (const cell of table.querySelectorAll("[data-key]")) {
        cell.textContent = format(cell.dataset.key, plan[cell.dataset.key], table);
      }
      headline.textContent = plan.max_concurrent_sequences.toLocaleString();
      table.dataset.fits = String(plan.fits);
    }

    function showError(error) {
      clearErrors();
      errorBox.textContent = error.message;
      errorBox.hidden = false;
      headline.textContent = "—";
      for (const field of Object.keys(error.details || {})) {
        const input = form.elements.namedItem(field);
        if (input) input.setAttribute("aria-invalid", "true");
      }
    }

    async function update() {
      const ticket = ++latest;
      const response = await fetch(form.dataset.api + "?" + query(form), {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      const body = await response.json();
      if (ticket !== latest) return; // an answer to an older question: a newer one is on its way
      if (response.ok) showPlan(body);
      else showError(body.error || { message: response.statusText });
    }

    function schedule() {
      clearTimeout(timer);
      timer = setTimeout(update, DEBOUNCE_MS);
    }

    function applyPreset(slug) {
      const profile = presets[slug];
      if (!profile) return;
      for (const [name, pick] of Object.entries(FROM_PROFILE)) {
        const value = pick(profile);
        form.elements.namedItem(name).value = value === null || value === undefined ? "" : value;
      }
    }

    form.addEventListener("input", schedule);
    form.addEventListener("change", (event) => {
      if (event.target.name === "preset") applyPreset(event.target.value);
      schedule();
    });
    form.addEventListener("submit", (event) => event.preventDefault());
    update();
  }

  document.addEventListener("DOMContentLoaded", init);
})();
