// Seed gateway status page.
//
// The server writes the sentences (summary.*); this script only places them, fills the
// tables and draws the chart. Data comes from /api/v1/status and /api/v1/neighbors, then
// live over /api/v1/events (server-sent events). When the gateway restarts, the event
// stream reconnects and the page fetches everything again, so it never shows half a state.
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };
  // Gateway clock minus phone clock: ages are measured on the gateway's clock.
  var clockOffset = 0;
  var showGone = false;
  var lastNeighbors = null;
  var source = null;
  var lastMessageAt = Date.now();
  var reconnectAt = 0;

  function serverNow() { return Date.now() + clockOffset; }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (name) {
        if (attrs[name] !== null && attrs[name] !== undefined) node.setAttribute(name, attrs[name]);
      });
    }
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function setLine(id, line) {
    var node = $(id);
    if (!node) return;
    node.textContent = line ? line.text : "";
    if (line) node.setAttribute("data-level", line.level); else node.removeAttribute("data-level");
  }

  // Same words as the server's wording module: "45 s", "12 min", "1 h 25 min", "3 h", "4 days".
  function duration(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 7200) { var m = Math.floor((s % 3600) / 60); return m ? "1 h " + m + " min" : "1 h"; }
    if (s < 172800) return Math.floor(s / 3600) + " h";
    return Math.floor(s / 86400) + " days";
  }

  function ago(ms) { return ms < 10000 ? "just now" : duration(ms) + " ago"; }

  function thousands(n) { return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ","); }

  // A real minus sign reads better than a hyphen at small sizes.
  function signed(value) { var n = Math.round(value); return n < 0 ? "\u2212" + (-n) : String(n); }

  function shortId(id) { return id.length > 14 ? id.slice(0, 6) + "…" + id.slice(-4) : id; }

  function idPart(name) { return String(name).replace(/[^A-Za-z0-9_-]/g, "-"); }

  function renderStatus(doc) {
    clockOffset = doc.now_ms - Date.now();
    var s = doc.summary;

    $("gateway-id").textContent = doc.gateway.id;
    $("gateway-version").textContent = doc.gateway.version;
    $("gateway-uptime").textContent = duration(doc.gateway.uptime_s * 1000);

    $("verdict").setAttribute("data-level", s.verdict.level);
    $("verdict-text").textContent = s.verdict.text;

    setLine("uplink-summary", s.uplink);
    renderUplinkDetails(doc.uplink, doc.now_ms, s.publish_latency);
    renderLinks(doc.links, s.links);
    setLine("frames-summary", s.frames);
    setLine("fragments-summary", s.fragments);
    $("fragments-summary").hidden = !s.fragments;
    setLine("update-summary", s.update);
    $("update-summary").hidden = !s.update;
    setLine("neighbors-summary", s.neighbors);
    setLine("mailboxes-summary", s.mailboxes);
    setLine("traffic-summary", s.traffic);
    renderChart(doc.traffic_24h || []);
    renderBands(doc.duty_cycle, s.duty_cycle);
    setLine("storage-summary", s.storage);
    var meter = $("storage-meter");
    var quota = doc.storage.quota_bytes;
    meter.style.width = (quota ? Math.min(100, 100 * doc.storage.bytes_used / quota) : 0) + "%";
    meter.setAttribute("data-level", s.storage.level);
    renderEvents(doc.events, doc.now_ms);
    // Neighbour gateways change slowly; a fetch per status snapshot is plenty.
    getJson("/api/v1/peers").then(renderPeers).catch(function () { /* next snapshot */ });

    $("updated").textContent = new Date().toLocaleTimeString();
  }

  function renderUplinkDetails(up, now, latency) {
    var dl = $("uplink-details");
    clear(dl);
    function fact(name, value, id) {
      if (value === null || value === undefined || value === "") return;
      dl.appendChild(el("dt", null, name));
      dl.appendChild(el("dd", { id: id }, value));
    }
    fact("Server", up.broker, "uplink-broker");
    fact("Last sent", up.last_publish_ms ? ago(now - up.last_publish_ms) : "never", "uplink-last-sent");
    fact("Waiting", thousands(up.backlog), "uplink-backlog");
    if (up.oldest_pending_ms) fact("Oldest waiting", ago(now - up.oldest_pending_ms), "uplink-oldest");
    fact("Sent since start", thousands(up.published_total), "uplink-published");
    if (latency) fact("Time to the broker", latency.text, "uplink-latency");
    fact("Last problem", up.last_error, "uplink-error");
  }

  function renderLinks(links, lines) {
    var list = $("links");
    clear(list);
    if (!links.length) list.appendChild(el("li", { "data-level": "bad" }, "No radio is set up."));
    links.forEach(function (link) {
      var line = lines[link.name] || { level: "warn", text: link.name };
      var item = el("li", { id: "link-" + idPart(link.name), "data-link": link.name,
        "data-state": link.state, "data-level": line.level });
      item.appendChild(el("p", { "class": "line" }, line.text));
      var parts = [link.kind];
      // When the link is not up, the sentence already carries the detail (the reason).
      if (link.detail && link.state === "up") parts.push(link.detail);
      var errors = link.malformed + link.bad_crc + link.device_errors;
      if (errors) {
        parts.push("unreadable " + thousands(link.malformed + link.bad_crc) +
          ", device errors " + thousands(link.device_errors));
      }
      item.appendChild(el("p", { "class": "sub" }, parts.join(" · ")));
      list.appendChild(item);
    });
  }

  // docs/peering.md: each neighbour's two links, and whose messages are held where.
  function renderPeers(doc) {
    $("peers").hidden = !doc.peers.length;
    var list = $("peer-list");
    clear(list);
    doc.peers.forEach(function (peer) {
      var up = peer.outbound.connected || peer.inbound.connected;
      var since = peer.outbound.since_ms || peer.inbound.since_ms;
      var text = peer.name + ": " + (up ? "connected" : "not connected") +
        (since ? " for " + duration(doc.now_ms - since) : "");
      var why = peer.outbound.last_error || peer.inbound.last_error;
      if (!up && why) text += " (" + why + ")";
      var item = el("li", { id: "peer-" + idPart(peer.name), "data-level": up ? "ok" : "warn" });
      item.appendChild(el("p", { "class": "line" }, text));
      var parts = [
        "its internet " + (peer.peer_uplink_up === null ? "unknown" : peer.peer_uplink_up ? "up" : "down"),
        "holding " + thousands(peer.held_for_peer) + " of its messages",
        "it holds " + thousands(peer.held_by_peer) + " of ours",
        "handed over " + thousands(peer.handed_over_total),
        "relayed for it " + thousands(peer.relayed_for_peer_total)
      ];
      if (peer.handed_over_unpublished) parts.push(thousands(peer.handed_over_unpublished) + " of ours not yet published by it");
      if (peer.reclaimed_total) parts.push(thousands(peer.reclaimed_total) + " came back to us (" + peer.last_reclaim + ")");
      var mail = peer.mail || {};
      if (mail.held_for_peer || mail.held_by_peer) {
        parts.push("downlinks: holding " + thousands(mail.held_for_peer) + " of its, it holds " +
          thousands(mail.held_by_peer) + " of ours");
      }
      if (mail.delivered_for_peer_total) {
        parts.push("delivered for it " + thousands(mail.delivered_for_peer_total));
      }
      if (peer.custody_active) parts.unshift("our messages go through it now");
      item.appendChild(el("p", { "class": "sub" }, parts.join(" · ")));
      list.appendChild(item);
    });
    var refused = doc.last_refusal;
    $("peers-refused").hidden = !refused;
    if (refused) {
      $("peers-refused").textContent = "Refused a gateway at " + refused.from + ": " + refused.text;
    }
  }

  function renderBands(bands, lines) {
    var list = $("duty-cycle");
    clear(list);
    if (!bands.length) list.appendChild(el("li", null, "No transmissions limited."));
    bands.forEach(function (band) {
      var line = lines[band.band] || { level: "ok", text: band.band };
      var item = el("li", { id: "band-" + idPart(band.band), "data-level": line.level });
      item.appendChild(el("p", { "class": "line" }, line.text));
      var meter = el("div", { "class": "meter" });
      var fill = el("div", { "class": "fill" });
      fill.style.width = Math.min(100, band.percent) + "%";
      meter.appendChild(fill);
      item.appendChild(meter);
      list.appendChild(item);
    });
  }

  function eventItem(event, now) {
    var item = el("li", { "data-level": event.level, "data-kind": event.kind });
    item.appendChild(el("time", { datetime: new Date(event.at_ms).toISOString() },
      ago(Math.max(0, now - event.at_ms))));
    item.appendChild(document.createTextNode(event.text));
    return item;
  }

  function renderEvents(events, now) {
    var list = $("events");
    clear(list);
    events.forEach(function (event) { list.appendChild(eventItem(event, now)); });
  }

  // One live event arrives before the next status snapshot lists it: show it at once.
  function addEvent(event) {
    var list = $("events");
    list.insertBefore(eventItem(event, serverNow()), list.firstChild);
    while (list.children.length > 20) list.removeChild(list.lastChild);
  }

  var SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function renderChart(hours) {
    var box = $("traffic-chart");
    clear(box);
    var width = 360, height = 140, top = 16, bottom = 20, left = 4;
    var max = Math.max.apply(null, hours.concat([1]));
    var step = (width - left) / Math.max(hours.length, 1);
    var chart = svg("svg", { viewBox: "0 0 " + width + " " + height, id: "traffic-svg" });
    chart.appendChild(svg("line", { "class": "axis", x1: 0, x2: width,
      y1: height - bottom + 0.5, y2: height - bottom + 0.5 }));
    hours.forEach(function (count, index) {
      var h = Math.round((height - top - bottom) * count / max);
      var bar = svg("rect", {
        "class": index === hours.length - 1 ? "bar now" : "bar",
        x: (left + index * step + 1).toFixed(1), y: height - bottom - h,
        width: Math.max(1, step - 2).toFixed(1), height: h, "data-count": count
      });
      bar.appendChild(svg("title", {}, thousands(count) + " heard " +
        (index === hours.length - 1 ? "this hour" : (hours.length - 1 - index) + " h ago")));
      chart.appendChild(bar);
    });
    chart.appendChild(svg("text", { x: 0, y: 12 }, "max " + thousands(max) + " per hour"));
    chart.appendChild(svg("text", { x: 0, y: height - 4 }, "24 h ago"));
    chart.appendChild(svg("text", { x: width / 2, y: height - 4, "text-anchor": "middle" }, "12 h ago"));
    chart.appendChild(svg("text", { x: width, y: height - 4, "text-anchor": "end" }, "now"));
    box.appendChild(chart);
  }

  var POWER = { normal: "Normal", low_power: "Saving power", charging: "Charging" };

  function renderNeighbors(doc) {
    lastNeighbors = doc;
    var body = $("neighbors").tBodies[0];
    clear(body);
    var gone = 0;
    doc.neighbors.forEach(function (n) {
      if (n.liveness === "gone") gone += 1;
      var row = el("tr", { "data-device-id": n.device_id, "data-liveness": n.liveness,
        "class": n.liveness === "active" ? null : n.liveness });
      if (n.liveness === "gone" && !showGone) row.hidden = true;
      var who = el("td");
      who.appendChild(el("span", { "class": "device", title: n.device_id }, shortId(n.device_id)));
      who.appendChild(el("small", null, n.device_class.replace(/_/g, " ")));
      row.appendChild(who);
      row.appendChild(el("td", null, POWER[n.power_state] || n.power_state));
      var seen = el("td", null, ago(doc.now_ms - n.last_seen_ms));
      if (n.rssi !== null && n.rssi !== undefined) {
        seen.appendChild(el("small", null, signed(n.rssi) + " dBm" +
          (n.snr !== null && n.snr !== undefined ? ", SNR " + signed(n.snr) : "")));
      }
      row.appendChild(seen);
      var ledger = el("td", { "class": "num" }, thousands(n.ledger_height));
      var hint = n.sync_hint || (n.sync_capable ? null : "can't sync now");
      if (hint) ledger.appendChild(el("small", { "class": "sync-hint" }, hint));
      row.appendChild(ledger);
      body.appendChild(row);
    });
    var visible = doc.neighbors.length - (showGone ? 0 : gone);
    if (!visible) {
      var row = el("tr", { "class": "empty" });
      row.appendChild(el("td", { colspan: "4" },
        gone ? "Only gone devices; tick the box above to see them." : "No devices heard yet."));
      body.appendChild(row);
    }
    $("gone-count").textContent = gone;
  }

  function getJson(path) {
    return fetch(path, { cache: "no-store" }).then(function (response) {
      if (!response.ok) throw new Error(path + ": " + response.status);
      return response.json();
    });
  }

  function refetch() {
    getJson("/api/v1/status").then(renderStatus).catch(noteTrouble);
    getJson("/api/v1/neighbors").then(renderNeighbors).catch(noteTrouble);
  }

  function setLive(state, text) {
    var badge = $("live");
    badge.setAttribute("data-state", state);
    badge.textContent = text;
  }

  function noteTrouble() { setLive("reconnecting", "Reconnecting…"); }

  function received() {
    lastMessageAt = Date.now();
    setLive("live", "Live");
    $("connection-lost").hidden = true;
    document.body.removeAttribute("data-stale");
  }

  // Say plainly when the numbers on screen are old, rather than letting them look current.
  function showLostContact() {
    $("last-contact").textContent = new Date(lastMessageAt).toLocaleTimeString();
    $("connection-lost").hidden = false;
    document.body.setAttribute("data-stale", "");
  }

  function listen(kind, handler) {
    source.addEventListener(kind, function (message) {
      received();
      try { handler(JSON.parse(message.data)); } catch (error) { /* one bad message: skip */ }
    });
  }

  function connect() {
    if (source) source.close();
    source = new EventSource("/api/v1/events");
    reconnectAt = Date.now();
    source.onopen = function () { received(); refetch(); };
    source.onerror = function () {
      noteTrouble();
      // The browser retries by itself unless the stream was refused outright.
      if (source.readyState === 2) setTimeout(connect, 3000);
    };
    listen("status", renderStatus);
    listen("neighbors", renderNeighbors);
    listen("event", addEvent);
  }

  function start() {
    $("show-gone").addEventListener("change", function (event) {
      showGone = event.target.checked;
      if (lastNeighbors) renderNeighbors(lastNeighbors);
    });
    refetch();
    if (window.EventSource) {
      connect();
      // The gateway sends a snapshot every few seconds; silence means a dead connection
      // (a phone that slept, a Wi-Fi hiccup) that the browser has not noticed yet.
      setInterval(function () {
        var silent = Date.now() - lastMessageAt;
        if (silent > 12000) showLostContact();
        if (silent > 20000 && Date.now() - reconnectAt > 20000) { noteTrouble(); connect(); }
      }, 4000);
    } else {
      setInterval(refetch, 10000);
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
