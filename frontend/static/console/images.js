// Images page: send the import form to the API (showing the upload's progress), then poll each
// import until its node's worker has loaded it, updating the progress bars.
(function () {
  const labels = JSON.parse(document.getElementById("import-state-labels").textContent || "{}");
  const rows = document.getElementById("import-rows");
  const template = document.getElementById("import-row-template");
  const form = document.getElementById("import-form");
  const POLL_MS = 1000;

  function csrfToken() {
    const input = document.querySelector("[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function field(row, name) {
    return row.querySelector('[data-field="' + name + '"]');
  }

  function render(row, imp) {
    row.dataset.importId = imp.id;
    row.dataset.state = imp.state;
    row.cells[0].textContent = imp.id;
    field(row, "node").textContent = imp.node;
    field(row, "path").querySelector("code").textContent = imp.path;
    field(row, "progress").value = imp.progress;
    field(row, "percent").textContent = imp.progress + " %";
    const state = field(row, "state");
    state.className = "state state-" + imp.state;
    state.textContent = labels[imp.state] || imp.state;
    field(row, "tags").textContent = " " + (imp.loaded_tags || []).join(", ");
    field(row, "error").textContent = imp.error ? " " + imp.error : "";
  }

  function poll(row) {
    const id = row.dataset.importId;
    fetch(form ? form.dataset.imports + id + "/" : "/api/v1/images/imports/" + id + "/", {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then((resp) => (resp.ok ? resp.json() : Promise.reject(resp.status)))
      .then((imp) => {
        render(row, imp);
        if (imp.state === "pending" || imp.state === "running") setTimeout(() => poll(row), POLL_MS);
      })
      .catch(() => setTimeout(() => poll(row), POLL_MS * 5));
  }

  function addRow(imp) {
    const empty = rows.querySelector("tr.empty");
    if (empty) empty.remove();
    const row = template.content.firstElementChild.cloneNode(true);
    rows.prepend(row);
    render(row, imp);
    poll(row);
  }

  rows.querySelectorAll('tr[data-state="pending"], tr[data-state="running"]').forEach(poll);
  if (!form) return;

  const error = form.querySelector('[data-testid="import-error"]');
  const upload = form.querySelector('[data-testid="upload-progress"]');

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = new FormData();
    form.querySelectorAll("input[name=nodes]:checked").forEach((box) => body.append("nodes", box.value));
    const file = form.elements.file.files[0];
    if (file) body.append("file", file);
    else if (form.elements.path.value.trim()) body.append("path", form.elements.path.value.trim());
    if (form.elements.sha256.value.trim()) body.append("sha256", form.elements.sha256.value.trim().toLowerCase());
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.dataset.api);
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) { upload.hidden = false; upload.value = (100 * e.loaded) / e.total; }
    };
    xhr.onload = () => {
      upload.hidden = true;
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch (_) { data = null; }
      if (xhr.status === 202 && Array.isArray(data)) {
        error.hidden = true;
        form.reset();
        data.forEach(addRow);
      } else {
        error.hidden = false;
        error.textContent = data && data.error ? data.error.message : "HTTP " + xhr.status;
      }
    };
    xhr.onerror = () => { upload.hidden = true; error.hidden = false; error.textContent = "network error"; };
    error.hidden = true;
    xhr.send(body);
  });
})();
