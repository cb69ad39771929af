(function () {
  "use strict";
  // Runs in <head>, before the content: every control works from the first paint, by event
  // delegation on the document (nothing waits for the page to finish loading).
  var root = document.documentElement;
  var show = root.getAttribute("data-first");  // the model shown at first ("all" or a slug)
  if (show) { root.setAttribute("data-show", show); }

  function $$(sel, el) { return Array.prototype.slice.call((el || document).querySelectorAll(sel)); }

  // --- model switcher -----------------------------------------------------------------------
  function showModel(slug) {
    root.setAttribute("data-show", slug);
    $$(".switcher button").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.getAttribute("data-pick") === slug));
    });
    schedule();
  }
  // A link to something hidden by the switcher or inside a closed section shows it first.
  function reveal(el) {
    var shown = root.getAttribute("data-show");
    var owner = el.closest("[data-model]");
    if (shown && shown !== "all" && owner && owner.getAttribute("data-model") !== shown) {
      showModel(owner.getAttribute("data-model"));
    }
    for (var d = el.closest("details"); d; d = d.parentElement && d.parentElement.closest("details")) { d.open = true; }
  }

  // --- lightbox: a dialog showing the figure at full resolution -----------------------------
  // Figures are drawn at twice the pixels they show with on the page (reporting/blocks.py), so
  // "actual size" (the default) is one image pixel per CSS pixel: twice as large as on the page,
  // scrolling where it is larger than the window; "fit to window" shrinks it to the window.
  // Pixel art (a few pixels wide) and drawings (SVG) have no such pixels: they show at twice
  // their size on the page (at most 90 % of the window's width), pixel art with crisp pixels.
  var box = null, opener = null;
  function closeBox() {
    if (!box || box.hidden) { return; }
    box.hidden = true;
    box.querySelector(".lb-body").textContent = "";
    document.body.style.overflow = "";
    if (opener) { opener.focus(); opener = null; }
  }
  function actualWidth(big) {
    var w = big.naturalWidth, shown = opener ? opener.getBoundingClientRect().width : 0;
    var svg = /^data:image\/svg/.test(big.src), pixelated = !svg && w > 0 && w < 400;
    big.style.imageRendering = pixelated ? "pixelated" : "";
    if (svg || pixelated) { return Math.max(w, Math.min(2 * Math.max(shown, w), window.innerWidth * 0.9)); }
    return w;
  }
  function setSize(fit) {
    var big = box.querySelector(".lb-body img"), b = box.querySelector(".lb-size");
    big.classList.toggle("fit", fit);
    var w = actualWidth(big), h = big.naturalHeight;
    if (fit && w && h) {  // within the window (less the bar and the caption), never larger than actual size
      w = Math.min(w, window.innerWidth * 0.96, (window.innerHeight * 0.96 - 80) * big.naturalWidth / h);
    }
    big.style.width = w ? Math.round(w) + "px" : "";
    b.textContent = fit ? "Actual size" : "Fit to window";
    b.setAttribute("aria-pressed", String(fit));
    box.scrollTop = 0; box.scrollLeft = 0;
  }
  function openBox(img) {
    box = document.getElementById("lightbox");
    var big = document.createElement("img"), cap = box.querySelector(".lb-cap");
    box.querySelector(".lb-body").textContent = "";
    box.querySelector(".lb-body").appendChild(big);
    var fig = img.closest("figure");
    opener = img;
    big.alt = img.alt;
    big.onload = function () { if (!box.hidden && big.parentNode) { setSize(big.classList.contains("fit")); } };
    big.src = img.currentSrc || img.src;  // a data URI: decoded already, often loaded at once
    var c = fig && fig.querySelector("figcaption");
    cap.textContent = c ? c.textContent : "";
    box.hidden = false;
    setSize(false);
    document.body.style.overflow = "hidden";  // the page stays put under the enlarged figure
    box.querySelector(".lb-close").focus();
  }
  function toggleSize() { setSize(!box.querySelector(".lb-body img").classList.contains("fit")); }

  // --- animations: a still first frame and a play / pause toggle -----------------------------
  function togglePlay(btn) {
    var img = btn.closest("figure").querySelector("img");
    var playing = btn.getAttribute("aria-pressed") === "true";
    if (!img.hasAttribute("data-still")) { img.setAttribute("data-still", img.getAttribute("src")); }
    img.src = playing ? img.getAttribute("data-still") : img.getAttribute("data-anim");
    btn.setAttribute("aria-pressed", String(!playing));
    btn.textContent = playing ? "\u25B6 Play animation" : "\u275A\u275A Pause animation";
  }

  document.addEventListener("click", function (e) {
    var t = e.target;
    if (!(t instanceof Element)) { return; }
    var b = t.closest(".switcher button");
    if (b) { showModel(b.getAttribute("data-pick")); return; }
    if (t.closest(".play")) { togglePlay(t.closest(".play")); return; }
    if (t.closest("#lightbox")) {
      if (t.closest(".lb-size")) { toggleSize(); return; }
      if (t.tagName !== "IMG") { closeBox(); }
      return;
    }
    var img = t.closest("figure.fig img");
    if (img) { openBox(img); return; }
    var a = t.closest("a[href^='#']");
    if (a) {
      var id = a.getAttribute("href").slice(1), el = id && document.getElementById(id);
      if (el) { reveal(el); marked.pin = id; schedule(); }
    }
  });
  document.addEventListener("keydown", function (e) {
    if (box && !box.hidden) {
      if (e.key === "Escape") { e.preventDefault(); closeBox(); return; }
      if (e.key === "Tab") {  // the focus stays in the dialog: its two buttons
        var f = $$("button", box), i = f.indexOf(document.activeElement);
        e.preventDefault();
        f[(i + (e.shiftKey ? f.length - 1 : 1)) % f.length].focus();
      }
      return;
    }
    var t = e.target;
    if ((e.key === "Enter" || e.key === " ") && t instanceof Element && t.matches("figure.fig img")) {
      e.preventDefault(); openBox(t);
    }
  });

  // --- contents: the section and the model being read are marked ----------------------------
  var links = null, marked = { section: null, subject: null, pin: null };
  function keepVisible(a) {
    var nav = a.closest("nav");
    if (!nav || nav.scrollHeight <= nav.clientHeight) { return; }
    var r = a.getBoundingClientRect(), n = nav.getBoundingClientRect();
    if (r.top < n.top) { nav.scrollTop -= n.top - r.top + 12; }
    else if (r.bottom > n.bottom) { nav.scrollTop += r.bottom - n.bottom + 12; }
  }
  function mark(kind, id) {
    var a = id ? links[id] || null : null;
    if (a === marked[kind]) { return; }
    if (marked[kind]) { marked[kind].classList.remove("active"); }
    if (a) { a.classList.add("active"); keepVisible(a); }
    marked[kind] = a;
  }
  function visible(el) { return el.checkVisibility ? el.checkVisibility() : el.getClientRects().length > 0; }
  // The reading position: the last section (and model entry in it) whose top has passed a line a
  // quarter down the window; at the end of the page, where short sections never reach that line,
  // the section a contents link just went to, or else the last one whose top is in the window.
  function update() {
    pending = false;
    if (!links) {
      links = {};
      $$("nav.toc a[href^='#']").forEach(function (a) { links[a.getAttribute("href").slice(1)] = a; });
    }
    var line = window.innerHeight * 0.25, sec = null, sub = null;
    var sections = $$("main section.section").filter(visible);
    for (var i = 0; i < sections.length && sections[i].getBoundingClientRect().top <= line; i++) { sec = sections[i]; }
    var atEnd = window.scrollY + window.innerHeight >= document.documentElement.scrollHeight - 4;
    if (atEnd && window.scrollY > 0) {
      var pinned = marked.pin && document.getElementById(marked.pin);
      var pinSec = pinned && pinned.closest("section.section");
      if (pinSec && pinSec.getBoundingClientRect().top < window.innerHeight) { sec = pinSec; }
      else {
        for (var k = sections.length - 1; k >= 0; k--) {
          var top = sections[k].getBoundingClientRect().top;
          if (top < window.innerHeight * 0.9 && top >= 0 && sections[k] !== sec) { sec = sections[k]; break; }
          if (top < 0) { break; }
        }
      }
    }
    if (sec) {
      var arts = $$("article.subject", sec).filter(visible);
      for (var j = 0; j < arts.length && arts[j].getBoundingClientRect().top <= line; j++) { sub = arts[j]; }
      if (!sub && atEnd && arts.length) { sub = arts[0]; }
    }
    mark("section", sec && sec.id);
    mark("subject", sub && sub.id);
    runNear();
  }
  var pending = false;
  function schedule() { if (!pending) { pending = true; window.requestAnimationFrame(update); } }
  window.addEventListener("scroll", schedule, { passive: true });
  document.addEventListener("toggle", schedule, true);  // a section opened: its blocks may be in view now
  window.addEventListener("wheel", function () { marked.pin = null; }, { passive: true });
  window.addEventListener("keydown", function (e) { if (/Arrow|Page|Home|End| /.test(e.key)) { marked.pin = null; } });

  // --- shared scripts of the Html blocks, run where they stood when their block nears the window --
  function run(ph) {
    var code = document.getElementById(ph.getAttribute("data-asset"));
    if (!code || !ph.parentNode) { return; }
    var s = document.createElement("script");
    s.textContent = code.textContent;
    ph.parentNode.replaceChild(s, ph);  // runs now; document.currentScript is s, in the block
  }
  // Checked on every scroll frame (not an IntersectionObserver: a fast scroll past a block, or a
  // long script holding up frames, would skip it): every waiting block above the bottom of the
  // window plus a margin runs, those the reader jumped over included.
  var started = false;
  function runNear() {
    if (!started) { return; }
    var limit = window.innerHeight + 800;
    $$("script[type='text/x-tl-run']").forEach(function (ph) {
      var el = ph.parentElement;
      if (el && visible(el) && el.getBoundingClientRect().top < limit) { run(ph); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    $$("figure.fig img").forEach(function (img) {
      img.tabIndex = 0;  // figures open from the keyboard too (Enter or Space)
      img.setAttribute("role", "button");
      img.setAttribute("aria-haspopup", "dialog");
    });
    var shown = root.getAttribute("data-show");
    if (shown) { showModel(shown); }
    if (location.hash) {
      var el = document.getElementById(location.hash.slice(1));
      if (el) { reveal(el); el.scrollIntoView(); }
    }
    started = true;
    update();
  });
  // Printing: every drawing pane (the graph views pan and zoom inside a window-sized SVG) gets a
  // viewBox around its whole content, so the page prints the whole graph; restored afterwards.
  var printed = [];
  window.addEventListener("beforeprint", function () {
    $$(".tl-pane svg").forEach(function (svg) {
      if (!svg.getBBox) { return; }
      var bb = svg.getBBox();
      if (!bb.width || !bb.height) { return; }
      printed.push([svg, svg.getAttribute("viewBox"), svg.getAttribute("height")]);
      var g = svg.querySelector("g.viewport, :scope > g[transform]");
      if (g) { printed.push([g, g.getAttribute("transform")]); g.removeAttribute("transform"); bb = svg.getBBox(); }
      svg.setAttribute("viewBox", [bb.x - 4, bb.y - 4, bb.width + 8, bb.height + 8].join(" "));
      svg.removeAttribute("height");
    });
  });
  window.addEventListener("afterprint", function () {
    printed.forEach(function (p) {
      if (p.length === 2) { p[0].setAttribute("transform", p[1]); return; }
      if (p[1] === null) { p[0].removeAttribute("viewBox"); } else { p[0].setAttribute("viewBox", p[1]); }
      if (p[2] !== null) { p[0].setAttribute("height", p[2]); }
    });
    printed = [];
  });
})();
