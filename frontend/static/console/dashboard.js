// The admin dashboard: fetches /dashboard/data/ and redraws the charts every 30 s.
"use strict";
(function () {
  var root = document.querySelector(".dashboard-charts");
  if (!root) return;
  var labels = JSON.parse(document.getElementById("chart-labels").textContent);
  var C = window.ConsoleCharts;

  function draw(data) {
    var gpus = data.gpus;
    var options = {
      gpu_util: C.lineChart(labels.gpu_util, labels.time, labels.percent,
        gpus.map(function (g) { return { name: g.name, data: g.util }; }), 100),
      gpu_memory: C.lineChart(labels.gpu_memory, labels.time, labels.gib,
        gpus.map(function (g) { return { name: g.name, data: g.memory_gib }; })),
      tokens_department: C.stackedBars(labels.tokens_department, labels.day, labels.tokens,
        data.tokens_by_department.days, data.tokens_by_department.series),
      tokens_model: C.stackedBars(labels.tokens_model, labels.day, labels.tokens,
        data.tokens_by_model.days, data.tokens_by_model.series),
    };
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      C.render(el, options[el.dataset.chart], labels.no_data);
    });
    var chats = document.querySelector("[data-testid=active-chats]");
    if (chats) chats.textContent = data.active_chats;
    root.dataset.loaded = "true";
  }

  function refresh() {
    fetch(root.dataset.url, { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(draw)
      .catch(function () { /* the next refresh tries again */ });
  }
  refresh();
  setInterval(refresh, 30000);
})();
