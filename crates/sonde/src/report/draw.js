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

  // Linear axes start at zero (a time axis at the test's start, a rate
  // at nothing) and end a little past the largest value.
  function fromZero(u, min, max) {
    var top = max > 0 ? max * 1.05 : 1;
    return [Math.min(0, min), top];
  }

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
        x: { time: false, distr: chart.x.log ? 3 : 1, range: chart.x.log ? undefined : fromZero },
        y: { distr: chart.y.log ? 3 : 1, range: chart.y.log ? undefined : fromZero }
      },
      axes: [{ label: axisName(chart.x) }, { label: axisName(chart.y), size: 80 }],
      series: series,
      legend: { live: true }
    };
    var plot = new uPlot(opts, data, el);
    drawn.push({ el: el, plot: plot, chart: chart });
  }

  // Measured once uPlot has sized its canvases (after this task).
  function report() {
    drawn.forEach(function (d) {
      var canvas = d.el.querySelector("canvas");
      var box = canvas ? canvas.getBoundingClientRect() : { width: 0, height: 0 };
      check.charts.push({
        id: d.chart.id,
        series: d.plot.series.length - 1,
        expected: d.chart.series.length,
        points: d.plot.data.length > 0 ? d.plot.data[0].length : 0,
        width: Math.round(box.width),
        height: Math.round(box.height)
      });
    });
    check.expected = page.charts.length;
    check.requests = performance.getEntriesByType("resource").length;
    document.getElementById("sonde-check").textContent = JSON.stringify(check);
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

  setTimeout(report, 50);
})();
