// sonde's report: draws each chart of the embedded page with uPlot, keeps
// them as wide as the page, and writes what it drew (and any error or
// request the page made) into #sonde-check for tests to read.
(function () {
  "use strict";
  var check = { charts: [], errors: window.sondeErrors || [], requests: 0 };
  var colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
  var page = JSON.parse(document.getElementById("sonde-page").textContent);
  var drawn = [];

  function axisName(a) { return a.label + " (" + a.unit + ")"; }

  function widthOf(el) { return Math.max(240, el.clientWidth); }

  function draw(chart) {
    var el = document.getElementById("chart-" + chart.id);
    var series = [{ label: axisName(chart.x) }];
    chart.series.forEach(function (s, i) {
      var colour = colours[i % colours.length];
      var one = { label: s.label, stroke: colour, width: 1.5, spanGaps: true };
      if (s.style === "points") {
        one.paths = function () { return null; };
        one.points = { show: true, size: 7, fill: colour };
      } else if (s.style === "steps") {
        one.paths = uPlot.paths.stepped({ align: 1 });
        one.fill = colour + "33";
      }
      series.push(one);
    });
    var data = uPlot.join(chart.series.map(function (s) { return [s.x, s.y]; }));
    var opts = {
      width: widthOf(el),
      height: Math.round(Math.min(420, Math.max(220, widthOf(el) * 0.45))),
      scales: {
        x: { time: false, distr: chart.x.log ? 3 : 1 },
        y: { distr: chart.y.log ? 3 : 1 }
      },
      axes: [{ label: axisName(chart.x) }, { label: axisName(chart.y) }],
      series: series,
      legend: { live: true }
    };
    var plot = new uPlot(opts, data, el);
    drawn.push({ el: el, plot: plot });
    var canvas = el.querySelector("canvas");
    check.charts.push({
      id: chart.id,
      series: plot.series.length - 1,
      expected: chart.series.length,
      width: canvas ? canvas.width : 0,
      height: canvas ? canvas.height : 0
    });
  }

  page.charts.forEach(function (chart) {
    try { draw(chart); } catch (e) { check.errors.push("chart " + chart.id + ": " + e); }
  });

  var pending = null;
  window.addEventListener("resize", function () {
    clearTimeout(pending);
    pending = setTimeout(function () {
      drawn.forEach(function (d) {
        var w = widthOf(d.el);
        d.plot.setSize({ width: w, height: Math.round(Math.min(420, Math.max(220, w * 0.45))) });
      });
    }, 100);
  });

  check.requests = performance.getEntriesByType("resource").length;
  document.getElementById("sonde-check").textContent = JSON.stringify(check);
})();
