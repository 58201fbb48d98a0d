/* Markdown with LaTeX and highlighted code, always sanitised: the model's text is never trusted.
 *
 * Math ($…$, $$…$$, \(…\), \[…\]) is cut out before Markdown sees it (so "_" and "*" inside a formula
 * stay intact), rendered by KaTeX, put back, and the whole HTML goes through DOMPurify. Code blocks
 * and inline code are left alone by the math pass.
 */
(function () {
  "use strict";

  // Only what Markdown, highlighted code and KaTeX produce. A model's answer is text an attacker can
  // steer (a prompt injection in a pasted page): no form, input or button (a fake login box), no
  // style element (restyling the page), no img (a remote image is a tracking pixel; data: images are
  // not needed), no iframe, object, embed or link. KaTeX draws roots and stretchy arrows with inline
  // SVG (svg, path, line) and sizes its glyphs with style attributes.
  const SANITIZE = {
    ALLOWED_TAGS: [
      "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s", "b", "i", "u",
      "code", "pre", "kbd", "samp", "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr",
      "th", "td", "span", "div", "sup", "sub", "abbr", "svg", "path", "line",
    ],
    ALLOWED_ATTR: [
      "href", "title", "class", "style", "colspan", "rowspan", "align", "start", "aria-hidden",
      "viewBox", "width", "height", "preserveAspectRatio", "d", "x1", "x2", "y1", "y2", "stroke-width",
    ],
    ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#|\/(?!\/))/i,
  };

  const CODE = /(```[\s\S]*?(?:```|$)|`[^`\n]*`)/g;
  const MATH = /\$\$([\s\S]+?)\$\$|\\\[([\s\S]+?)\\\]|\\\(([\s\S]+?)\\\)|\$(?=[^\s$])((?:\\\$|[^$\n])+?)(?<=[^\s\\])\$(?!\d)/g;

  function protectMath(text, formulas) {
    return text
      .split(CODE)
      .map((part, index) => {
        if (index % 2 === 1) return part; // code: untouched
        return part.replace(MATH, (whole, display, bracket, paren, inline) => {
          const source = display ?? bracket ?? paren ?? inline;
          const block = display !== undefined || bracket !== undefined;
          formulas.push(renderMath(source, block));
          return `CHATMATH${formulas.length - 1}END`;
        });
      })
      .join("");
  }

  function renderMath(source, block) {
    try {
      return window.katex.renderToString(source, { displayMode: block, throwOnError: false, output: "html" });
    } catch (_error) {
      return source;
    }
  }

  function escapeHtml(text) {
    return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }

  function toHtml(text) {
    if (!window.marked || !window.DOMPurify) return `<p>${escapeHtml(text)}</p>`;
    const formulas = [];
    let html = window.marked.parse(protectMath(text, formulas), { gfm: true, breaks: false });
    html = html.replace(/CHATMATH(\d+)END/g, (_m, i) => formulas[Number(i)] ?? "");
    return window.DOMPurify.sanitize(html, SANITIZE);
  }

  function render(element, text) {
    element.innerHTML = toHtml(text);
    element.querySelectorAll("a[href]").forEach((a) => {
      a.target = "_blank";
      a.rel = "noopener noreferrer";
    });
    if (window.hljs) element.querySelectorAll("pre code").forEach((code) => window.hljs.highlightElement(code));
  }

  window.ChatMarkdown = { render, toHtml, escapeHtml };
})();
