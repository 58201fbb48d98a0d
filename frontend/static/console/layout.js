// The phone layout: the menu button opens and closes the side navigation (console) or the page links (portal).
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    const toggle = event.target.closest(".nav-toggle");
    if (!toggle) return;
    const open = document.body.classList.toggle("nav-open");
    toggle.setAttribute("aria-expanded", String(open));
  });
})();
