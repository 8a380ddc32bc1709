/* Puffin console behaviour: theme toggle, organisation switcher, copy buttons,
   confirmations, the narrow-screen menu and keyboard shortcuts. No inline scripts. */
(function () {
  "use strict";

  var THEME_KEY = "puffin-theme";

  function currentTheme() {
    return document.documentElement.getAttribute("data-theme") === "light" ? "light" : "dark";
  }

  function showThemeState(button) {
    var light = currentTheme() === "light";
    button.setAttribute("aria-pressed", light ? "true" : "false");
    button.textContent = light ? "Dark theme" : "Light theme";
  }

  function setupThemeToggle() {
    document.querySelectorAll("[data-theme-toggle]").forEach(function (button) {
      showThemeState(button);
      button.addEventListener("click", function () {
        var next = currentTheme() === "light" ? "dark" : "light";
        document.documentElement.setAttribute("data-theme", next);
        try { window.localStorage.setItem(THEME_KEY, next); } catch (error) { /* ignore */ }
        showThemeState(button);
      });
    });
  }

  function setupAutosubmit() {
    document.querySelectorAll("[data-hide-with-js]").forEach(function (element) {
      element.hidden = true;
    });
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () {
        if (select.form) { select.form.requestSubmit(); }
      });
    });
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.appendChild(area);
    area.select();
    var copied = document.execCommand("copy");
    document.body.removeChild(area);
    return copied ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  function setupCopyButtons() {
    document.querySelectorAll("[data-copy-target]").forEach(function (button) {
      button.addEventListener("click", function () {
        var target = document.getElementById(button.getAttribute("data-copy-target"));
        if (!target) { return; }
        var label = button.textContent;
        copyText(target.textContent.trim()).then(function () {
          button.textContent = "Copied";
        }, function () {
          button.textContent = "Select and copy";
          var range = document.createRange();
          range.selectNodeContents(target);
          var selection = window.getSelection();
          selection.removeAllRanges();
          selection.addRange(range);
        });
        window.setTimeout(function () { button.textContent = label; }, 2000);
      });
    });
  }

  function setupConfirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }

  function setupNavToggle() {
    var toggle = document.querySelector("[data-nav-toggle]");
    var nav = document.getElementById("sidenav");
    if (!toggle || !nav) { return; }
    toggle.addEventListener("click", function () {
      var open = nav.classList.toggle("open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }

  function showShortcuts() {
    var dialog = document.getElementById("shortcuts");
    if (dialog && typeof dialog.showModal === "function" && !dialog.open) { dialog.showModal(); }
  }

  function isTyping(target) {
    if (!target || !target.tagName) { return false; }
    var tag = target.tagName.toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable;
  }

  function focusSearch() {
    var box = document.querySelector("[data-search]") ||
      document.querySelector("main input[type=search], main input[type=text]");
    if (box) { box.focus(); if (box.select) { box.select(); } return true; }
    return false;
  }

  function setupShortcuts() {
    var waitingForSection = false;
    var links = {};
    document.querySelectorAll(".sidenav a[data-shortcut]").forEach(function (link) {
      links[link.getAttribute("data-shortcut")] = link;
    });
    document.querySelectorAll("[data-show-shortcuts]").forEach(function (button) {
      button.addEventListener("click", showShortcuts);
    });
    document.addEventListener("keydown", function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey || isTyping(event.target)) { return; }
      if (waitingForSection) {
        waitingForSection = false;
        if (links[event.key]) { event.preventDefault(); window.location.assign(links[event.key].href); }
        return;
      }
      if (event.key === "/") {
        if (focusSearch()) { event.preventDefault(); }
      } else if (event.key === "g") {
        waitingForSection = true;
        window.setTimeout(function () { waitingForSection = false; }, 1500);
      } else if (event.key === "?") {
        showShortcuts();
      } else if (event.key === "o") {
        var switcher = document.getElementById("org-switch");
        if (switcher) { event.preventDefault(); switcher.focus(); }
      } else if (event.key === "Escape") {
        document.querySelectorAll("details[open].user-menu").forEach(function (menu) {
          menu.open = false;
        });
      }
    });
  }

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  /* For pages that call the API with fetch(): the session cookie plus the CSRF header. */
  window.puffinFetch = function (url, options) {
    var settings = options || {};
    var headers = new Headers(settings.headers || {});
    headers.set("X-CSRF-Token", csrfToken());
    headers.set("Accept", "application/json");
    settings.headers = headers;
    settings.credentials = "same-origin";
    return window.fetch(url, settings);
  };

  function start() {
    setupThemeToggle();
    setupAutosubmit();
    setupCopyButtons();
    setupConfirmations();
    setupNavToggle();
    setupShortcuts();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
