// The usage pages' charts: tokens per day stacked by model, and prompt/completion tokens of the top users.
"use strict";
(function () {
  var data = JSON.parse(document.getElementById("usage-charts").textContent);
  var labels = JSON.parse(document.getElementById("chart-labels").textContent);
  var C = window.ConsoleCharts;
  var options = {
    by_model: function () {
      return C.stackedBars(labels.tokens_model, labels.day, labels.tokens, data.days, data.by_model);
    },
    by_user: function () {
      return C.stackedBars(labels.tokens_user, labels.user, labels.tokens, data.users, data.users.length ? data.by_user : []);
    },
  };
  document.querySelectorAll(".usage-charts [data-chart]").forEach(function (el) {
    C.render(el, options[el.dataset.chart](), labels.no_data);
  });
  document.querySelector(".usage-charts").dataset.loaded = "true";
})();
