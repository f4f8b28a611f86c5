// Live updates of the executions page over Server-Sent Events. The page works without
// this script; with it, a new execution appears at the top and a row changes state in
// place. Rows arrive rendered (and escaped) by the server.
(function () {
  "use strict";
  var table = document.getElementById("executions");
  if (!table || !table.dataset.live || !window.EventSource) {
    return;
  }
  var body = table.tBodies[0];
  var empty = document.getElementById("no-executions");
  var status = document.getElementById("live-status");
  var source = new EventSource(table.dataset.live);

  function say(text) {
    if (status) {
      status.textContent = text;
      status.hidden = false;
    }
  }

  source.addEventListener("open", function () {
    say("Live: new executions and changes of state appear as they happen.");
  });
  source.addEventListener("error", function () {
    say("Live updates paused; reconnecting…");
  });
  source.addEventListener("execution", function (event) {
    var holder = document.createElement("tbody");
    holder.innerHTML = event.data;
    var row = holder.querySelector("tr");
    if (!row) {
      return;
    }
    var old = document.getElementById(row.id);
    if (old) {
      old.replaceWith(row);
    } else {
      body.insertBefore(row, body.firstElementChild);
    }
    table.hidden = false;
    if (empty) {
      empty.hidden = true;
    }
  });
  source.addEventListener("gone", function (event) {
    var old = document.getElementById("execution-" + event.lastEventId);
    if (old) {
      old.remove();
    }
  });
  source.addEventListener("behind", function () {
    // The server could not keep this page up to date: read the list again.
    window.location.reload();
  });
})();
