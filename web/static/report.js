// The report page's only script. It submits the selector when a choice
// changes, and promotes a shadow with the admin token, which stays in this
// tab's sessionStorage and is sent only as a bearer header to this server.
(function () {
  "use strict";

  var KEY = "understudy.adminToken";

  function stored() {
    try {
      return window.sessionStorage.getItem(KEY) || "";
    } catch (e) {
      return "";
    }
  }

  function store(value) {
    try {
      if (value) {
        window.sessionStorage.setItem(KEY, value);
      } else {
        window.sessionStorage.removeItem(KEY);
      }
    } catch (e) {
      // Storage may be disabled; the field still works for this page.
    }
  }

  function say(out, text, kind) {
    out.textContent = text;
    out.className = "result " + kind;
  }

  function ref(r) {
    return r && r.name ? r.name + "@" + r.version : "none";
  }

  document.querySelectorAll("form.selector select").forEach(function (select) {
    select.addEventListener("change", function () {
      select.form.submit();
    });
  });

  var field = document.getElementById("admin-token");
  var adminForm = document.getElementById("admin");
  if (field) {
    field.value = stored();
    field.addEventListener("input", function () {
      store(field.value.trim());
    });
  }
  if (adminForm) {
    adminForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
    });
  }

  // Canary controls: set the weight, or stop (weight 0), with the token.
  document.querySelectorAll("form.canary-weight").forEach(function (form) {
    var out = form.querySelector("output");
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var token = field ? field.value.trim() : stored();
      if (!token) {
        say(out, "Enter the admin token at the top of the page first.", "bad");
        return;
      }
      var stop = ev.submitter && ev.submitter.name === "stop";
      var weight = stop ? 0 : parseFloat(form.elements.weight.value);
      fetch("/models/" + encodeURIComponent(form.dataset.model), {
        method: "PUT",
        headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
        credentials: "same-origin",
        body: JSON.stringify({ weight: weight }),
      })
        .then(function (resp) {
          return resp.json().catch(function () {
            return {};
          }).then(function (body) {
            if (resp.ok) {
              say(out, stop ? "Stopped: weight 0." : "Weight set to " + weight + ".", "good");
            } else {
              say(out, "Not changed (HTTP " + resp.status + "): " + (body.error || resp.statusText), "bad");
            }
          });
        })
        .catch(function (err) {
          say(out, "Not changed: " + err.message, "bad");
        });
    });
  });

  document.querySelectorAll("form.promote").forEach(function (form) {
    var button = form.querySelector("button");
    var out = form.querySelector("output");
    var armed = false;
    var timer = 0;

    function disarm() {
      armed = false;
      window.clearTimeout(timer);
      button.textContent = button.dataset.label;
      button.classList.remove("armed");
    }

    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var token = field ? field.value.trim() : stored();
      if (!token) {
        say(out, "Enter the admin token at the top of the page first.", "bad");
        if (field) {
          field.focus();
        }
        return;
      }
      // The first press arms the button; the second promotes.
      if (!armed) {
        armed = true;
        button.textContent = "Press again to promote " + form.dataset.model + "@" + form.dataset.version;
        button.classList.add("armed");
        say(out, "", "");
        timer = window.setTimeout(disarm, 8000);
        return;
      }
      disarm();
      button.disabled = true;
      say(out, "Promoting…", "");
      var url = "/models/" + encodeURIComponent(form.dataset.model) +
        "/promote?version=" + encodeURIComponent(form.dataset.version);
      fetch(url, {
        method: "POST",
        headers: { Authorization: "Bearer " + token },
        credentials: "same-origin",
      })
        .then(function (resp) {
          return resp.json().catch(function () {
            return {};
          }).then(function (body) {
            if (resp.ok) {
              var text = "Promoted: " + ref(body.primary) + " is the primary now.";
              if (body.previous && body.previous.name) {
                text += " " + ref(body.previous) + " stays loaded as a shadow; reload the page to compare them the other way round.";
              }
              say(out, text, "good");
            } else {
              say(out, "Not promoted (HTTP " + resp.status + "): " + (body.error || resp.statusText), "bad");
            }
          });
        })
        .catch(function (err) {
          say(out, "Not promoted: " + err.message, "bad");
        })
        .finally(function () {
          button.disabled = false;
        });
    });
  });
})();
