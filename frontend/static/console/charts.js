// Shared ECharts options: every chart has a title, named axes with units, a legend and a tooltip.
"use strict";
window.ConsoleCharts = (function () {
  function lineChart(title, xName, yName, series, yMax) {
    return {
      title: { text: title, left: "center", textStyle: { fontSize: 14 } },
      tooltip: { trigger: "axis" },
      legend: { bottom: 0, type: "scroll" },
      grid: { left: 60, right: 24, top: 40, bottom: 60 },
      xAxis: { type: "time", name: xName, nameLocation: "middle", nameGap: 28 },
      yAxis: { type: "value", name: yName, nameLocation: "middle", nameGap: 44, min: 0, max: yMax },
      series: series.map(function (s) {
        return { name: s.name, type: "line", showSymbol: false, data: s.data };
      }),
    };
  }
  function stackedBars(title, xName, yName, days, series) {
    return {
      title: { text: title, left: "center", textStyle: { fontSize: 14 } },
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
      legend: { bottom: 0, type: "scroll" },
      grid: { left: 70, right: 24, top: 40, bottom: 60 },
      xAxis: { type: "category", name: xName, nameLocation: "middle", nameGap: 28, data: days },
      yAxis: { type: "value", name: yName, nameLocation: "middle", nameGap: 56 },
      series: series.map(function (s) {
        return { name: s.name, type: "bar", stack: "total", data: s.data };
      }),
    };
  }
  function render(element, option, noData) {
    var chart = echarts.getInstanceByDom(element) || echarts.init(element);
    if (!option.series.length) {
      option.graphic = { type: "text", left: "center", top: "middle", style: { text: noData, fill: "#888" } };
    }
    chart.setOption(option, true);
    return chart;
  }
  window.addEventListener("resize", function () {
    document.querySelectorAll(".chart").forEach(function (el) {
      var chart = echarts.getInstanceByDom(el);
      if (chart) chart.resize();
    });
  });
  return { lineChart: lineChart, stackedBars: stackedBars, render: render };
})();
