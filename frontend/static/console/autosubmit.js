/* Select boxes marked data-autosubmit submit their form when changed (the language switcher, the
 * capacity page's scope). A static script rather than onchange="…": the Content-Security-Policy
 * refuses inline event handlers. */
(function () {
  "use strict";
  document.addEventListener("change", (event) => {
    const target = event.target;
    if (target instanceof HTMLSelectElement && target.dataset.autosubmit !== undefined && target.form) {
      target.form.requestSubmit();
    }
  });
})();
