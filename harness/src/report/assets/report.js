// netpolc HTML report: shows a cell's details (oracle explanation, observation, command) in the
// side panel. Hover previews a cell; click (or Enter/Space) pins it; Escape unpins.
(function () {
  "use strict";
  var body = document.getElementById("panel-body");
  var state = document.getElementById("panel-state");
  if (!body || !state) {
    return;
  }
  var pinned = null;

  function show(cell) {
    var source = document.getElementById(cell.getAttribute("data-detail") || "");
    if (!source) {
      return;
    }
    var copy = source.cloneNode(true);
    copy.removeAttribute("id");
    body.replaceChildren(copy);
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

  var cells = document.querySelectorAll("td.cell[data-detail]");
  cells.forEach(function (cell) {
    cell.addEventListener("mouseenter", function () {
      if (!pinned) {
        show(cell);
      }
    });
    cell.addEventListener("focus", function () {
      if (!pinned) {
        show(cell);
      }
    });
    cell.addEventListener("click", function () {
      pin(cell);
    });
    cell.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" || ev.key === " ") {
        ev.preventDefault();
        pin(cell);
      }
    });
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape" && pinned) {
      pin(pinned);
    }
  });
})();
