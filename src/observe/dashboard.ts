/**
 * The dashboard page the admin endpoint serves at `/`: plain HTML, one script and one stylesheet
 * of ours, and uPlot's own two files from node_modules (no bundler, no CDN). The script polls
 * `/api/summary` every second and `/api/connections` every two, keeps five minutes of points in
 * the page, and draws them with uPlot; without uplot installed it says so and shows the numbers.
 */

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>longlink</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/assets/uPlot.min.css">
<link rel="stylesheet" href="/assets/dashboard.css">
</head>
<body>
<header>
  <h1>longlink <span id="server"></span></h1>
  <p id="status">connecting…</p>
  <p id="no-uplot" hidden>Charts need uPlot in this process's node_modules: <code>npm install uplot</code>. The numbers still update.</p>
</header>
<section class="numbers">
  <div><span class="label">connections</span><span class="value" id="v-connections">–</span></div>
  <div><span class="label">accepting</span><span class="value" id="v-accepting">–</span></div>
  <div><span class="label">in flight</span><span class="value" id="v-inflight">–</span></div>
  <div><span class="label">requests</span><span class="value" id="v-requests">–</span></div>
  <div><span class="label">req/s</span><span class="value" id="v-rps">–</span></div>
  <div><span class="label">p50 ms</span><span class="value" id="v-p50">–</span></div>
  <div><span class="label">p99 ms</span><span class="value" id="v-p99">–</span></div>
  <div><span class="label">handler errors</span><span class="value" id="v-errors">–</span></div>
  <div><span class="label">refused</span><span class="value" id="v-refused">–</span></div>
  <div><span class="label">closed</span><span class="value" id="v-closed">–</span></div>
  <div><span class="label">heartbeat RTT p50 ms</span><span class="value" id="v-rtt">–</span></div>
</section>
<section class="charts">
  <figure><figcaption>connections</figcaption><div class="chart" id="c-connections"></div></figure>
  <figure><figcaption>requests per second</figcaption><div class="chart" id="c-rps"></div></figure>
  <figure><figcaption>handler latency, ms (p50, p99)</figcaption><div class="chart" id="c-latency"></div></figure>
  <figure><figcaption>closes per second, by reason</figcaption><div class="chart" id="c-closes"></div></figure>
  <figure><figcaption>heartbeat RTT, ms (p50, p99)</figcaption><div class="chart" id="c-rtt"></div></figure>
</section>
<section>
  <h2>connections <span id="conn-count"></span></h2>
  <table id="connections">
    <thead><tr><th>peer</th><th>id</th><th>age s</th><th>RTT ms</th><th>in flight</th><th>queued B</th><th>TCP</th><th>retrans</th><th>identity</th><th>TLS</th></tr></thead>
    <tbody></tbody>
  </table>
</section>
<script src="/assets/uPlot.iife.min.js"></script>
<script src="/assets/dashboard.js"></script>
</body>
</html>
`;

export const DASHBOARD_CSS = `body { font: 14px/1.4 system-ui, sans-serif; margin: 1rem 2rem; color: #222; }
h1 { font-size: 1.4rem; margin: 0; } h1 span { font-weight: normal; color: #666; }
h2 { font-size: 1.1rem; }
#status { color: #666; margin: 0.2rem 0 1rem; } #status.error { color: #b00; }
#no-uplot { background: #fff3cd; padding: 0.5rem; }
.numbers { display: flex; flex-wrap: wrap; gap: 0.5rem 1.5rem; margin-bottom: 1rem; }
.numbers div { display: flex; flex-direction: column; min-width: 6rem; }
.label { color: #666; font-size: 0.8rem; } .value { font-size: 1.3rem; font-variant-numeric: tabular-nums; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: 1rem; }
figure { margin: 0; } figcaption { color: #444; margin-bottom: 0.2rem; }
.chart { min-height: 200px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 0.2rem 0.6rem; text-align: right; border-bottom: 1px solid #eee; }
th:first-child, td:first-child, td:nth-child(9), td:nth-child(10) { text-align: left; }
`;

// Browser code, kept to what every current browser runs; no template literals (this file is one).
export const DASHBOARD_JS = `'use strict';
(function () {
  var KEEP = 300;
  var hasPlot = typeof window.uPlot === 'function';
  if (!hasPlot) document.getElementById('no-uplot').hidden = false;
  var COLORS = ['#2b6cb0', '#c05621', '#2f855a', '#b83280', '#6b46c1', '#975a16', '#2c7a7b', '#9b2c2c'];
  var times = [];
  var data = { connections: [], accepting: [], rps: [], p50: [], p99: [], rtt50: [], rtt99: [] };
  var reasons = [];
  var closes = {};
  var prevClosed = null;
  var charts = {};

  function $(id) { return document.getElementById(id); }
  function num(v, digits) {
    if (v === null || v === undefined) return '–';
    return digits === undefined ? String(v) : v.toFixed(digits);
  }
  function push(arr, v) { arr.push(v); if (arr.length > KEEP) arr.shift(); }
  function width(el) { return Math.max(300, el.clientWidth || 440); }

  function chart(key, el, series) {
    if (!hasPlot) return;
    var opts = {
      width: width(el), height: 200,
      scales: { x: { time: true } },
      series: [{}].concat(series.map(function (s, i) {
        return { label: s, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true };
      })),
      axes: [{}, { size: 60 }]
    };
    if (charts[key]) charts[key].destroy();
    el.textContent = '';
    charts[key] = new window.uPlot(opts, [times.slice()].concat(series.map(function () { return []; })), el);
  }
  function draw(key, columns) {
    var c = charts[key];
    if (c) c.setData([times.slice()].concat(columns.map(function (a) { return a.slice(); })));
  }

  chart('connections', $('c-connections'), ['connections', 'accepting']);
  chart('rps', $('c-rps'), ['req/s']);
  chart('latency', $('c-latency'), ['p50', 'p99']);
  chart('closes', $('c-closes'), reasons);
  chart('rtt', $('c-rtt'), ['p50', 'p99']);

  function render(s) {
    $('server').textContent = s.server || '';
    $('status').textContent = 'updated ' + new Date(s.time).toLocaleTimeString();
    $('status').className = '';
    $('v-connections').textContent = num(s.connections);
    $('v-accepting').textContent = num(s.accepting);
    $('v-inflight').textContent = num(s.inflight);
    $('v-requests').textContent = num(s.requests.total);
    $('v-rps').textContent = num(s.requests.perSecond);
    $('v-p50').textContent = num(s.requests.p50Ms, 3);
    $('v-p99').textContent = num(s.requests.p99Ms, 3);
    $('v-errors').textContent = num(s.handlerErrors);
    $('v-refused').textContent = num(s.refusedTotal);
    $('v-closed').textContent = num(s.closedTotal);
    $('v-rtt').textContent = num(s.heartbeatRtt.p50Ms, 3);

    push(times, s.time / 1000);
    push(data.connections, s.connections);
    push(data.accepting, s.accepting);
    push(data.rps, s.requests.perSecond);
    push(data.p50, s.requests.p50Ms);
    push(data.p99, s.requests.p99Ms);
    push(data.rtt50, s.heartbeatRtt.p50Ms);
    push(data.rtt99, s.heartbeatRtt.p99Ms);

    // Closes per second by reason: the difference of the server's running counts.
    var added = false;
    Object.keys(s.closed).forEach(function (r) {
      if (reasons.indexOf(r) < 0) {
        reasons.push(r);
        closes[r] = times.slice(0, -1).map(function () { return 0; });
        added = true;
      }
    });
    reasons.forEach(function (r) {
      var now = s.closed[r] || 0;
      var before = prevClosed === null ? now : (prevClosed[r] || 0);
      push(closes[r], now - before);
      while (closes[r].length > times.length) closes[r].shift();
    });
    prevClosed = s.closed;
    if (added) chart('closes', $('c-closes'), reasons);

    draw('connections', [data.connections, data.accepting]);
    draw('rps', [data.rps]);
    draw('latency', [data.p50, data.p99]);
    draw('closes', reasons.map(function (r) { return closes[r]; }));
    draw('rtt', [data.rtt50, data.rtt99]);
    document.body.setAttribute('data-summary-time', String(s.time));
    document.body.setAttribute('data-points', String(times.length));
  }

  function renderConnections(c) {
    $('conn-count').textContent = '(' + c.total + (c.connections.length < c.total ? ', oldest ' + c.connections.length + ' shown' : '') + ')';
    var body = document.querySelector('#connections tbody');
    body.textContent = '';
    c.connections.forEach(function (x) {
      var tr = document.createElement('tr');
      [x.peer, x.id, (x.ageMs / 1000).toFixed(1), num(x.rttMs, 2), x.inflight, x.queuedBytes,
        x.tcp ? x.tcp.state : '–', x.tcp ? x.tcp.totalRetransmits : '–', x.identity || '',
        x.tls ? (x.tls.protocol || 'tls') + (x.tls.peerSubject ? ' ' + x.tls.peerSubject : '') : ''
      ].forEach(function (v) {
        var td = document.createElement('td');
        td.textContent = String(v);
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  function failed(err) {
    $('status').textContent = 'cannot reach the server: ' + err;
    $('status').className = 'error';
  }
  function get(path) {
    return fetch(path, { cache: 'no-store' }).then(function (r) {
      if (!r.ok) throw new Error(path + ': HTTP ' + r.status);
      return r.json();
    });
  }
  function pollSummary() {
    get('/api/summary').then(render, failed).then(function () { setTimeout(pollSummary, 1000); });
  }
  function pollConnections() {
    get('/api/connections?limit=100').then(renderConnections, failed).then(function () { setTimeout(pollConnections, 2000); });
  }
  window.addEventListener('resize', function () {
    Object.keys(charts).forEach(function (k) {
      var el = charts[k].root.parentNode;
      charts[k].setSize({ width: width(el), height: 200 });
    });
  });
  pollSummary();
  pollConnections();
})();
`;
