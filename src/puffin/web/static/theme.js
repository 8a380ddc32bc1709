/* Apply the saved colour theme before the page paints (loaded synchronously in <head>). */
(function () {
  "use strict";
  try {
    var saved = window.localStorage.getItem("puffin-theme");
    if (saved === "light" || saved === "dark") {
      document.documentElement.setAttribute("data-theme", saved);
    }
  } catch (error) {
    /* storage can be disabled; the dark default stays */
  }
})();
