/* Live alerts: new and updated alerts from the server's event stream are put at the top
   of the alerts table. The stream is filtered by the server with the page's own filters;
   an alert that changed and no longer matches them arrives as "gone" and its row is
   removed. Built with DOM calls and textContent only. */
(function () {
  "use strict";

  var body = document.querySelector("[data-live-alerts]");
  if (!body || !window.EventSource) { return; }
  var status = document.querySelector("[data-live-status]");

  function cell(row, text, className) {
    var td = document.createElement("td");
    if (className) { td.className = className; }
    if (text !== null) { td.textContent = text; }
    row.appendChild(td);
    return td;
  }

  function when(value) {
    return value.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC");
  }

  function rowFor(alert) {
    var row = document.createElement("tr");
    row.setAttribute("data-alert-id", alert.id);
    row.className = "fresh";
    cell(row, when(alert.last_seen), "nowrap");
    var level = cell(row, null);
    var badge = document.createElement("span");
    badge.className = "badge level-" + alert.level;
    badge.textContent = alert.level;
    level.appendChild(badge);
    var rule = cell(row, null);
    var link = document.createElement("a");
    link.href = "/alerts/" + encodeURIComponent(alert.id);
    link.textContent = alert.rule_title;
    rule.appendChild(link);
    if (alert.staged) {
      var staged = document.createElement("span");
      staged.className = "badge badge-warn";
      staged.title = "Staged rule: stored, not forwarded";
      staged.textContent = "staged";
      rule.appendChild(document.createTextNode(" "));
      rule.appendChild(staged);
    }
    cell(row, alert.source_name || "—");
    cell(row, alert.status);
    cell(row, String(alert.hits), "numeric");
    cell(row, alert.assignee || "—");
    return row;
  }

  function rowOf(id) {
    return body.querySelector('[data-alert-id="' + CSS.escape(id) + '"]');
  }

  var source = new EventSource(body.getAttribute("data-live-alerts"));
  source.addEventListener("open", function () { if (status) { status.hidden = false; } });
  source.addEventListener("error", function () { if (status) { status.hidden = true; } });
  source.addEventListener("gone", function (message) {
    var old = rowOf(JSON.parse(message.data).id);
    if (old) { old.remove(); }
  });
  source.addEventListener("alert", function (message) {
    var alert = JSON.parse(message.data);
    var old = rowOf(alert.id);
    if (old) { old.remove(); }
    var empty = body.querySelector(".empty-row");
    if (empty) { empty.remove(); }
    body.insertBefore(rowFor(alert), body.firstChild);
  });
})();
