// netpolc HTML report: shows a cell's details in the side panel and draws large matrices on
// demand. Hover previews a cell; click (or Enter/Space) pins it; Escape unpins.
//
// Every matrix carries one character per cell (data-codes, data-connectivity) and its step the
// pod list (data-pods); the legend carries what each character means (data-legend). Cells that
// went wrong may have a detailed entry (an element whose id is the cell's data-detail); every
// other cell is described from those characters.
(function () {
  "use strict";
  var body = document.getElementById("panel-body");
  var state = document.getElementById("panel-state");
  var legendEl = document.getElementById("legend");
  if (!body || !state || !legendEl) {
    return;
  }
  var legend = JSON.parse(legendEl.getAttribute("data-legend") || "{}");
  var codes = legend.codes || {};
  var connectivity = legend.connectivity || {};
  var podsCache = new WeakMap();
  var pinned = null;
  var ROWS_PER_CHUNK = 25;

  function el(tag, className, text) {
    var e = document.createElement(tag);
    if (className) {
      e.className = className;
    }
    if (text !== undefined) {
      e.textContent = text;
    }
    return e;
  }

  function podsOf(step) {
    var pods = podsCache.get(step);
    if (!pods) {
      pods = JSON.parse(step.getAttribute("data-pods") || "[]");
      podsCache.set(step, pods);
    }
    return pods;
  }

  // A shell word: bare when it is safe, single-quoted otherwise.
  function quote(s) {
    return /^[A-Za-z0-9_./:=@%+-]+$/.test(s) ? s : "'" + s.replace(/'/g, "'\\''") + "'";
  }

  function cellId(si, ti, pi, r, c) {
    return "c" + si + "-" + ti + "-" + pi + "-" + r + "-" + c;
  }

  // The panel's content for a cell without a detailed entry, from its matrix's characters.
  function summary(cell) {
    var matrix = cell.closest(".probe-matrix");
    var step = cell.closest("section.step");
    if (!matrix || !step) {
      return null;
    }
    var parts = (cell.getAttribute("data-detail") || "").split("-");
    var n = podsOf(step).length;
    var r = Number(parts[3]);
    var c = Number(parts[4]);
    var pos = r * n + c;
    var code = codes[(matrix.getAttribute("data-codes") || "").charAt(pos)];
    if (!code) {
      return null;
    }
    var pods = podsOf(step);
    var probe = matrix.getAttribute("data-probe") || "";
    var wrap = el("div", "detail-body");
    var head = el("p");
    head.appendChild(el("strong", "", pods[r] + " → " + pods[c] + " on " + probe));
    wrap.appendChild(head);
    var dl = el("dl");
    function row(k, v) {
      if (v) {
        dl.appendChild(el("dt", "", k));
        dl.appendChild(el("dd", "", v));
      }
    }
    row("outcome", code.text);
    row("expected", code.expected);
    row("observed", code.observed);
    row("connectivity", connectivity[(matrix.getAttribute("data-connectivity") || "").charAt(pos)]);
    if (code.outcome === "unsupported") {
      row("detail", matrix.getAttribute("data-unsupported"));
    }
    wrap.appendChild(dl);
    wrap.appendChild(el("p", "", "why the oracle expects this:"));
    var cmd = [
      "netpolc explain",
      quote(step.getAttribute("data-source") || ""),
      "--scenario " + quote(step.getAttribute("data-scenario") || ""),
      "--step " + quote(step.getAttribute("data-step") || ""),
      "--from " + quote(pods[r]),
      "--to " + quote(pods[c]),
      "--probe " + quote(probe),
    ].join(" ");
    wrap.appendChild(el("pre", "explanation", cmd));
    wrap.appendChild(
      el("p", "muted", "This cell is summarised; report.json holds its observation and the command that reproduces it."),
    );
    return wrap;
  }

  // The hover title, set when the pointer first reaches the cell (no title per cell in the page).
  function entitle(cell) {
    if (cell.title) {
      return;
    }
    var matrix = cell.closest(".probe-matrix");
    var step = cell.closest("section.step");
    if (!matrix || !step) {
      return;
    }
    var parts = (cell.getAttribute("data-detail") || "").split("-");
    var pods = podsOf(step);
    var r = Number(parts[3]);
    var c = Number(parts[4]);
    var code = codes[(matrix.getAttribute("data-codes") || "").charAt(r * pods.length + c)];
    if (code) {
      cell.title = pods[r] + " → " + pods[c] + " " + (matrix.getAttribute("data-probe") || "") + ": " + code.text;
    }
  }

  function show(cell) {
    entitle(cell);
    var id = cell.getAttribute("data-detail") || "";
    var source = id ? document.getElementById(id) : null;
    var content = null;
    if (source) {
      var b = source.querySelector(".detail-body");
      content = (b || source).cloneNode(true);
      content.removeAttribute("id");
    } else {
      content = summary(cell);
    }
    if (content) {
      body.replaceChildren(content);
    }
  }

  function pin(cell) {
    if (pinned) {
      pinned.classList.remove("selected");
    }
    if (pinned === cell) {
      pinned = null;
      state.textContent = "hover a cell, click to pin";
      return;
    }
    pinned = cell;
    cell.classList.add("selected");
    state.textContent = "pinned (Escape or click again to unpin)";
    show(cell);
  }

  function cellOf(target) {
    return target && target.closest ? target.closest("td.cell[data-detail]") : null;
  }

  // Draws a lazy matrix from its characters, a few rows per task so the page stays responsive;
  // marks the container data-rendered="true" when done.
  function draw(matrix, button) {
    var step = matrix.closest("section.step");
    if (!step || matrix.querySelector("table.matrix")) {
      return;
    }
    var ids = step.id.replace(/^s/, "").split("-");
    var si = ids[0];
    var ti = ids[1];
    var pi = matrix.getAttribute("data-index");
    var pods = podsOf(step);
    var n = pods.length;
    var chars = matrix.getAttribute("data-codes") || "";
    var probe = matrix.getAttribute("data-probe") || "";
    var table = el("table", "matrix");
    table.setAttribute("data-probe", probe);
    var thead = el("thead");
    var hr = el("tr");
    hr.appendChild(el("th", "corner", "from \\ to"));
    pods.forEach(function (p) {
      var th = el("th", "to", p);
      th.setAttribute("scope", "col");
      hr.appendChild(th);
    });
    thead.appendChild(hr);
    table.appendChild(thead);
    var tbody = el("tbody");
    table.appendChild(tbody);
    button.disabled = true;
    button.textContent = "drawing…";
    var r = 0;
    function chunk() {
      var frag = document.createDocumentFragment();
      var end = Math.min(n, r + ROWS_PER_CHUNK);
      for (; r < end; r++) {
        var tr = el("tr");
        var th = el("th", "from", pods[r]);
        th.setAttribute("scope", "row");
        tr.appendChild(th);
        for (var c = 0; c < n; c++) {
          var code = codes[chars.charAt(r * n + c)];
          var td;
          if (code) {
            td = el("td", "cell " + code["class"], code.glyph);
            td.tabIndex = 0;
            td.setAttribute("data-detail", cellId(si, ti, pi, r, c));
          } else {
            td = el("td", "cell none", "·");
          }
          tr.appendChild(td);
        }
        frag.appendChild(tr);
      }
      tbody.appendChild(frag);
      if (r < n) {
        setTimeout(chunk, 0);
      } else {
        button.remove();
        matrix.setAttribute("data-rendered", "true");
      }
    }
    matrix.appendChild(table);
    chunk();
  }

  document.addEventListener("mouseover", function (ev) {
    var cell = cellOf(ev.target);
    if (cell) {
      entitle(cell);
      if (!pinned) {
        show(cell);
      }
    }
  });
  document.addEventListener("focusin", function (ev) {
    var cell = cellOf(ev.target);
    if (cell && !pinned) {
      show(cell);
    }
  });
  document.addEventListener("click", function (ev) {
    var button = ev.target.closest ? ev.target.closest("button.draw-matrix") : null;
    if (button) {
      var matrix = button.closest(".probe-matrix");
      if (matrix) {
        draw(matrix, button);
      }
      return;
    }
    var cell = cellOf(ev.target);
    if (cell) {
      pin(cell);
    }
  });
  document.addEventListener("keydown", function (ev) {
    var cell = cellOf(ev.target);
    if (cell && (ev.key === "Enter" || ev.key === " ")) {
      ev.preventDefault();
      pin(cell);
    } else if (ev.key === "Escape" && pinned) {
      pin(pinned);
    }
  });
})();
