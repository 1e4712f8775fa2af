/* Draws the charts of report.html from the JSON in #chart-data, with the inlined Chart.js.
   Each chart's data and styles come from harness/report/html.py; this adds what JSON cannot
   carry: tooltips, tick formats, the hatched bands of time without a connection, the hatched
   bars of a comparison, and the page's two controls (time axis, only what did not pass). A page
   with no chart (matrix.html) has no Chart.js: only window.reportCharts is set, empty. */
(function () {
  "use strict";
  var specs = JSON.parse(document.getElementById("chart-data").textContent);
  var charts = {};

  function hatch(color) {
    var c = document.createElement("canvas");
    c.width = 8;
    c.height = 8;
    var g = c.getContext("2d");
    g.strokeStyle = color;
    g.lineWidth = 1.5;
    g.beginPath();
    g.moveTo(0, 8);
    g.lineTo(8, 0);
    g.stroke();
    return g.createPattern(c, "repeat");
  }

  // A page without charts (matrix.html) ships no Chart.js.
  if (typeof Chart === "undefined") {
    window.reportCharts = charts;
    return;
  }

  // Periods without a connection, behind the points: a hatched band from the drop (or close)
  // to the next resume or connect that was accepted.
  Chart.register({
    id: "offline",
    beforeDatasetsDraw: function (chart, args, options) {
      var bands = (options && options.bands) || [];
      if (!bands.length) return;
      var area = chart.chartArea;
      var x = chart.scales.x;
      var axis = chart.$timeAxis || "t";
      var ctx = chart.ctx;
      ctx.save();
      ctx.beginPath();
      ctx.rect(area.left, area.top, area.width, area.height);
      ctx.clip();
      ctx.fillStyle = hatch("rgba(60,60,60,0.35)");
      bands.forEach(function (band) {
        var left = x.getPixelForValue(band[axis][0]);
        var right = x.getPixelForValue(band[axis][1]);
        ctx.fillRect(left, area.top, Math.max(2, right - left), area.height);
      });
      ctx.restore();
    },
  });

  function bytes(value) {
    return (value / 1048576).toFixed(2) + " MiB";
  }

  function label(context) {
    var raw = context.raw;
    if (raw && typeof raw === "object" && raw.label) return raw.label;
    var kind = context.chart.config.options.kind;
    if (kind === "distribution") {
      return context.dataset.label + ": " + raw.x + " ms or less for " + Math.round(raw.y * 100) + "%";
    }
    if (kind === "latency" || kind === "compare") {
      return context.dataset.label + ": " + context.formattedValue + " ms";
    }
    return context.dataset.label + ": " + context.formattedValue;
  }

  function configure(spec) {
    var config = JSON.parse(JSON.stringify(spec));
    var options = config.options || (config.options = {});
    options.kind = spec.kind;
    options.responsive = true;
    options.maintainAspectRatio = false;
    options.animation = false;
    options.normalized = true;
    var plugins = options.plugins || (options.plugins = {});
    plugins.legend = {
      position: "bottom",
      labels: { usePointStyle: true, boxWidth: 10, padding: 12 },
    };
    plugins.tooltip = { callbacks: { label: label } };
    var scales = options.scales || {};
    if (spec.kind === "distribution") {
      scales.y.ticks = { callback: function (v) { return Math.round(v * 100) + "%"; } };
    }
    if (spec.kind === "metric" && options.format === "bytes") {
      scales.y.ticks = { callback: bytes };
    }
    if (spec.kind === "timeline") {
      // The lanes hold events, not positions: their points are not joined.
      config.data.datasets.forEach(function (d) { d.showLine = false; });
    }
    if (spec.kind === "compare") {
      config.data.datasets.forEach(function (d) {
        if (d.pattern === "hatch") d.backgroundColor = hatch(d.backgroundColor);
      });
    }
    return config;
  }

  document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    var id = canvas.getAttribute("data-chart");
    try {
      charts[id] = new Chart(canvas, configure(specs[id]));
      canvas.setAttribute("data-rendered", "true");
    } catch (error) {
      canvas.setAttribute("data-rendered", "error");
      console.error("chart " + id + ": " + error);
    }
  });
  window.reportCharts = charts;

  // The timelines' time axis: the target's clock (virtual jumps at their length) or wall time.
  document.querySelectorAll("input[name=time-axis]").forEach(function (input) {
    input.addEventListener("change", function () {
      var axis = input.value;
      Object.keys(charts).forEach(function (id) {
        var chart = charts[id];
        if (chart.options.kind !== "timeline") return;
        chart.$timeAxis = axis;
        chart.data.datasets.forEach(function (d) {
          d.data.forEach(function (p) { p.x = p[axis]; });
        });
        var title = chart.options.scales.x.title;
        title.text = axis === "w"
          ? "seconds since the scenario began (wall time)"
          : specs[id].options.scales.x.title.text;
        chart.update();
      });
    });
  });

  // Only the scenarios that did not pass.
  var only = document.getElementById("only-problems");
  if (only) {
    only.addEventListener("change", function () {
      document.querySelectorAll("[data-status=passed]").forEach(function (el) {
        el.hidden = only.checked;
      });
    });
  }
})();
