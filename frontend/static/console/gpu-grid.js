// The GPU grid: refresh every tile from the JSON endpoint every few seconds, and the assignment dialog.
(function () {
  "use strict";

  function applyTile(grid, unit) {
    const tile = grid.querySelector('[data-unit="' + unit.id + '"]');
    if (!tile) return false;
    tile.style.setProperty("--pool", unit.color);
    tile.dataset.state = unit.state;
    Object.keys(unit.text).forEach(function (field) {
      const cell = tile.querySelector('[data-field="' + field + '"]');
      if (cell && cell.textContent !== unit.text[field]) cell.textContent = unit.text[field];
    });
    return true;
  }

  function applySummary(summary) {
    const free = document.querySelector('[data-summary="free"]');
    const total = document.querySelector('[data-summary="total"]');
    if (free) free.textContent = summary.free.units;
    if (total) total.textContent = summary.total.units;
    summary.pools.forEach(function (pool) {
      const cell = document.querySelector('[data-pool="' + pool.department + '"]');
      if (cell) cell.textContent = pool.units;
    });
  }

  function poll(grid) {
    const every = parseInt(grid.dataset.refreshMs || "3000", 10);
    function refresh() {
      fetch(grid.dataset.liveUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (data) {
          if (!data) return;
          const known = data.units.filter(function (unit) { return applyTile(grid, unit); }).length;
          applySummary(data.summary);
          grid.dataset.refreshed = String(Date.now());
          // A unit appeared or vanished (new node, MIG change): the layout itself changed.
          if (known !== data.units.length || grid.querySelectorAll("[data-unit]").length !== data.units.length) {
            grid.dataset.stale = "true";
          }
        })
        .catch(function () { /* the next poll retries */ })
        .finally(function () { window.setTimeout(refresh, every); });
    }
    window.setTimeout(refresh, every);
  }

  function dialogs() {
    document.querySelectorAll("[data-open-dialog]").forEach(function (button) {
      button.addEventListener("click", function () {
        document.getElementById(button.dataset.openDialog).showModal();
      });
    });
    document.querySelectorAll("[data-close-dialog]").forEach(function (button) {
      button.addEventListener("click", function () { button.closest("dialog").close(); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    const grid = document.querySelector(".gpu-grid[data-live-url]");
    if (grid) poll(grid);
    dialogs();
  });
})();
