// Draws the dashboard's uPlot charts from the data-series of their source element, and redraws
// them in place (setData, no new canvas) when htmx swaps that element in a live refresh.
(function () {
  "use strict";
  var COLOURS = { "1xx": "#57606a", "2xx": "#1a7f37", "3xx": "#0969da", "4xx": "#9a6700", "5xx": "#cf222e" };
  var charts = {};

  function read(sourceId) {
    var source = document.getElementById(sourceId);
    return source ? JSON.parse(source.getAttribute("data-series")) : null;
  }

  // Stacked: each class is drawn as the sum of itself and the classes below it, topmost first, so
  // each filled band shows its own class; the legend shows each class's own value.
  function stacked(payload) {
    var shown = [payload.times];
    var sums = payload.times.map(function () { return 0; });
    var layers = [];
    payload.series.forEach(function (values) {
      sums = sums.map(function (sum, i) { return sum + values[i]; });
      layers.push(sums.slice());
    });
    for (var i = layers.length - 1; i >= 0; i--) shown.push(layers[i]);
    return shown;
  }

  function options(payload, width) {
    var raw = payload.series;
    var series = [{}];
    for (var i = payload.classes.length - 1; i >= 0; i--) {
      (function (index) {
        var name = payload.classes[index];
        series.push({
          label: name, stroke: COLOURS[name], fill: COLOURS[name] + "cc", width: 1, points: { show: false },
          value: function (u, v, s, idx) { return idx == null ? "–" : raw[index][idx]; }
        });
      })(i);
    }
    return {
      width: width, height: 240, series: series,
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(1, max)]; } } },
      axes: [{}, { label: "calls / minute", size: 60 }],
      cursor: { drag: { x: false, y: false } }
    };
  }

  function draw(element) {
    var payload = read(element.dataset.source);
    if (!payload || typeof uPlot === "undefined") return;
    var width = Math.max(280, element.clientWidth);
    var existing = charts[element.id];
    if (existing) {
      existing.raw.splice(0, existing.raw.length);
      payload.series.forEach(function (values) { existing.raw.push(values); });
      existing.plot.setData(stacked(payload));
      return;
    }
    var opts = options(payload, width);
    var plot = new uPlot(opts, stacked(payload), element);
    charts[element.id] = { plot: plot, raw: payload.series };
    element.dataset.drawn = "yes";
  }

  function drawAll() {
    document.querySelectorAll(".chart[data-source]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", drawAll);
  document.addEventListener("htmx:afterSettle", drawAll);
  window.addEventListener("resize", function () {
    Object.keys(charts).forEach(function (id) {
      var element = document.getElementById(id);
      if (element) charts[id].plot.setSize({ width: Math.max(280, element.clientWidth), height: 240 });
    });
  });
})();
