/* The review page's script. Rules it keeps:
 * - document content only ever reaches the DOM through textContent / text nodes, never as HTML;
 * - a document's text block is parsed and drawn only when that document is opened, so a
 *   job of thousands of documents opens as fast as one of ten;
 * - verdicts live in localStorage under one key per job and leave the page only as a file
 *   the reviewer downloads (the page makes no request). */
(function () {
  "use strict";

  var DATA = JSON.parse(document.getElementById("review-data").textContent);
  var VALUES = DATA.values, DOCS = DATA.documents, VARS = DATA.variables;
  var STORE_KEY = "extractflow.review." + DATA.job.id;
  var $ = function (id) { return document.getElementById(id); };

  // ------------------------------------------------------------------ helpers

  function el(tag, props) {
    var node = document.createElement(tag);
    if (props) {
      Object.keys(props).forEach(function (key) {
        var v = props[key];
        if (v === null || v === undefined || v === false) return;
        if (key === "class") node.className = v;
        else if (key === "text") node.textContent = v;
        else if (key === "style") Object.keys(v).forEach(function (p) { node.style.setProperty(p, v[p]); });
        else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), v);
        else node.setAttribute(key, v === true ? "" : String(v));
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function confOf(v) { return v.confidence === null ? 0 : v.confidence; }
  function colour(conf) {
    if (conf === null || conf === undefined) return "#9aa3ad";
    return "hsl(" + Math.round(Math.max(0, Math.min(1, conf)) * 120) + ", 65%, 42%)";
  }
  function fmtConf(conf) { return conf === null ? "–" : conf.toFixed(2); }
  var noticeTimer = null;
  function notice(text, isError) {
    var box = $("notice");
    box.textContent = text;
    box.className = "notice" + (isError ? " error" : "");
    box.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(function () { box.hidden = true; }, isError ? 8000 : 4000);
  }

  // ------------------------------------------------------------------ verdicts (localStorage)

  var storage = null;
  try { storage = window.localStorage; storage.getItem(STORE_KEY); } catch (e) { storage = null; }
  var verdicts = {};
  try {
    var stored = storage && JSON.parse(storage.getItem(STORE_KEY) || "null");
    if (stored && typeof stored.verdicts === "object" && stored.verdicts) verdicts = stored.verdicts;
  } catch (e) { verdicts = {}; }
  var byId = {};
  VALUES.forEach(function (v, i) { byId[v.id] = i; });
  Object.keys(verdicts).forEach(function (id) { if (!(id in byId)) delete verdicts[id]; });

  function save() {
    if (!storage) { notice("This browser keeps no local storage for files: export your verdicts before closing the page.", true); return; }
    try { storage.setItem(STORE_KEY, JSON.stringify({ version: 1, job_id: DATA.job.id, verdicts: verdicts })); }
    catch (e) { notice("Could not keep the verdict in this browser (" + e.message + "): export now.", true); }
  }
  function reviewed(i) { return !!(verdicts[VALUES[i].id] || VALUES[i].saved); }
  function setVerdict(i, change) {
    var id = VALUES[i].id;
    if (change === null) delete verdicts[id];
    else {
      var cur = verdicts[id] || { is_correct: null, corrected: "", comment: "" };
      Object.keys(change).forEach(function (k) { cur[k] = change[k]; });
      cur.at = new Date().toISOString();
      verdicts[id] = cur;
    }
    save();
    updateVerdictBar();
    refreshDocRow(VALUES[i].doc);
  }
  function updateVerdictBar() {
    var n = Object.keys(verdicts).length;
    $("verdict-count").textContent = n ? n + " verdict" + (n === 1 ? "" : "s") + " in this browser" : "no verdicts yet";
    $("export-json").disabled = $("export-csv").disabled = $("forget").disabled = !n;
  }

  // ------------------------------------------------------------------ filters

  var F = DATA.filters || {};
  var state = {
    variable: F.variable || "", status: F.status || "",
    below: typeof F.below === "number" ? F.below : null,
    sort: F.sort === "confidence" ? "confidence" : "document",
    unreviewed: false, query: "", doc: null, selected: null, showAll: false
  };
  var valuesOfDoc = DOCS.map(function () { return []; });
  VALUES.forEach(function (v, i) { valuesOfDoc[v.doc].push(i); });

  function filtering() { return !!(state.variable || state.status || state.below !== null || state.unreviewed); }
  function lowLimit() { return state.below !== null ? state.below : DATA.low_confidence; }
  function matches(i) {
    var v = VALUES[i];
    if (state.variable && VARS[v.var].name !== state.variable) return false;
    if (state.status && v.status !== state.status) return false;
    if (state.below !== null && !(confOf(v) < state.below)) return false;
    if (state.unreviewed && reviewed(i)) return false;
    return true;
  }
  function byConfidence(a, b) { return confOf(VALUES[a]) - confOf(VALUES[b]) || a - b; }
  function shownValues(d) {
    var list = valuesOfDoc[d].filter(matches);
    if (state.sort === "confidence") list.sort(byConfidence);
    return list;
  }
  var hitCount = 0;
  function visibleDocs() {
    var q = state.query.toLowerCase(), filtered = filtering();
    var docs = [];
    var minConf = {};
    hitCount = 0;
    for (var d = 0; d < DOCS.length; d++) {
      if (q && DOCS[d].name.toLowerCase().indexOf(q) < 0) continue;
      var own = valuesOfDoc[d], low = 2, hits = 0;
      for (var k = 0; k < own.length; k++) {
        if (!matches(own[k])) continue;
        hits++;
        low = Math.min(low, confOf(VALUES[own[k]]));
      }
      if (filtered && !hits) continue;
      docs.push(d);
      hitCount += hits;
      minConf[d] = low;
    }
    if (state.sort === "confidence") docs.sort(function (a, b) { return minConf[a] - minConf[b] || a - b; });
    return docs;
  }

  // ------------------------------------------------------------------ document list

  var docRows = {};
  function docCounts(d) {
    var c = { ok: 0, not_found: 0, failed: 0, low: 0, done: 0 }, limit = lowLimit();
    valuesOfDoc[d].forEach(function (i) {
      var v = VALUES[i];
      c[v.status] = (c[v.status] || 0) + 1;
      if (v.status === "ok" && confOf(v) < limit) c.low++;
      if (reviewed(i)) c.done++;
    });
    return c;
  }
  function countsNode(d) {
    var c = docCounts(d), box = el("span", { class: "counts" }), n = valuesOfDoc[d].length;
    if (!n) box.appendChild(el("span", { class: "count", text: DOCS[d].parse_status === "ok" ? "no values" : "parse " + DOCS[d].parse_status }));
    if (c.ok) box.appendChild(el("span", { class: "count ok", title: "ok", text: c.ok + " ok" }));
    if (c.not_found) box.appendChild(el("span", { class: "count nf", title: "not found", text: c.not_found + " not found" }));
    if (c.failed) box.appendChild(el("span", { class: "count failed", title: "failed", text: c.failed + " failed" }));
    if (c.low) box.appendChild(el("span", { class: "count low", title: "confidence below " + lowLimit(), text: c.low + " low" }));
    if (n) box.appendChild(el("span", { class: "count done", title: "reviewed", text: c.done + "/" + n + " reviewed" }));
    return box;
  }
  function refreshDocRow(d) {
    var row = docRows[d];
    if (row) row.replaceChild(countsNode(d), row.lastChild);
  }
  var order = [];
  // Rows are built once and re-used: a filter only re-orders them, and their counts are
  // redrawn only when the low-confidence limit they show has changed.
  var rowLimit = {};
  function docRow(d) {
    var li = docRows[d];
    if (!li) {
      li = el("li", { "data-doc": d, title: DOCS[d].name },
        el("span", { class: "name", text: DOCS[d].name }), countsNode(d));
      docRows[d] = li;
      rowLimit[d] = lowLimit();
    } else if (rowLimit[d] !== lowLimit()) {
      refreshDocRow(d);
      rowLimit[d] = lowLimit();
    }
    li.classList.toggle("current", d === state.doc);
    return li;
  }
  // The list shows the first LIST_STEP documents and grows by as many when its end scrolls
  // into view: laying out thousands of rows at once would cost seconds on every filter change.
  var LIST_STEP = 200, listLimit = LIST_STEP, moreObserver = null;
  function moreRow() {
    var rest = order.length - listLimit;
    var button = el("button", { type: "button", class: "quiet more",
      text: "show " + Math.min(rest, LIST_STEP) + " more of " + rest + " documents",
      onclick: function () { growList(); } });
    var li = el("li", { class: "more-docs" }, button);
    if (window.IntersectionObserver) {
      if (moreObserver) moreObserver.disconnect();
      moreObserver = new IntersectionObserver(function (entries) {
        if (entries.some(function (e) { return e.isIntersecting; })) growList();
      }, { root: $("doc-list").parentNode });
      moreObserver.observe(li);
    }
    return li;
  }
  function growList(upTo) {
    var list = $("doc-list"), from = listLimit;
    listLimit = Math.max(listLimit + LIST_STEP, upTo === undefined ? 0 : upTo + 1);
    if (list.lastChild && list.lastChild.classList.contains("more-docs")) list.lastChild.remove();
    var frag = document.createDocumentFragment();
    order.slice(from, listLimit).forEach(function (d) { frag.appendChild(docRow(d)); });
    if (order.length > listLimit) frag.appendChild(moreRow());
    list.appendChild(frag);
  }
  function renderDocList() {
    order = visibleDocs();
    listLimit = LIST_STEP;
    var frag = document.createDocumentFragment();
    order.slice(0, listLimit).forEach(function (d) { frag.appendChild(docRow(d)); });
    if (order.length > listLimit) frag.appendChild(moreRow());
    $("doc-list").replaceChildren(frag);
    $("match-count").textContent = order.length + " of " + DOCS.length + " documents · " + hitCount + " values" + (filtering() ? " match" : "");
    if (state.doc === null || order.indexOf(state.doc) < 0) {
      if (order.length) openDoc(order[0]); else renderNothing();
    } else renderValues();
  }
  $("doc-list").addEventListener("click", function (ev) {
    var li = ev.target.closest("li[data-doc]");
    if (li) openDoc(Number(li.getAttribute("data-doc")));
  });

  // ------------------------------------------------------------------ text

  var spanNodes = {};
  function renderText(d) {
    var doc = DOCS[d], body = $("doc-text"), head = $("text-head");
    spanNodes = {};
    var pieces = [];
    try { pieces = JSON.parse($("doc-" + d).textContent); } catch (e) { pieces = []; }
    var frag = document.createDocumentFragment();
    if (pieces.some(function (p) { return typeof p === "number"; })) frag.appendChild(el("span", { class: "page-break", text: "page 1" }));
    pieces.forEach(function (p) {
      if (typeof p === "number") { frag.appendChild(el("span", { class: "page-break", "data-page": p, text: "page " + p })); return; }
      if (!p[1]) { frag.appendChild(document.createTextNode(p[0])); return; }
      var keys = p[1], first = VALUES[keys[0]];
      var mark = el("mark", { class: keys.length > 1 ? "ev overlap" : "ev", "data-v": keys.join(" "),
        title: keys.map(function (k) { return VARS[VALUES[k].var].name; }).join(", "),
        style: { "--c": colour(first.confidence) }, text: p[0] });
      keys.forEach(function (k) { (spanNodes[k] = spanNodes[k] || []).push(mark); });
      frag.appendChild(mark);
    });
    body.replaceChildren(frag);
    body.scrollTop = 0;
    var bits = [doc.name, doc.pages + " page" + (doc.pages === 1 ? "" : "s"), doc.chars.toLocaleString() + " characters"];
    head.replaceChildren(el("span", { text: bits.join(" · ") }));
    if (doc.parse_status !== "ok") head.appendChild(el("span", { class: "warn", text: " · parse " + doc.parse_status + (doc.parse_error ? ": " + doc.parse_error : "") }));
    if (!doc.chars) body.appendChild(el("p", { class: "empty", text: "This document has no text." }));
  }

  function focusValue(i, scroll) {
    state.selected = i;
    Array.prototype.forEach.call(document.querySelectorAll(".value.selected"), function (n) { n.classList.remove("selected"); });
    Array.prototype.forEach.call(document.querySelectorAll("mark.active"), function (n) { n.classList.remove("active"); });
    var card = document.querySelector('.value[data-i="' + i + '"]');
    if (card) card.classList.add("selected");
    var marks = spanNodes[i];
    if (!marks || !marks.length) {
      var v = VALUES[i];
      if (v.status === "ok") notice(v.grounded === false ? "Ungrounded: the evidence quote was not found in the document text, so there is no span to show." :
        "No span to show: the stored offsets do not fit this document's text.");
      return;
    }
    marks.forEach(function (m) { m.classList.add("active"); m.classList.remove("flash"); });
    void marks[0].offsetWidth; // restart the animation when the same value is clicked again
    marks.forEach(function (m) { m.classList.add("flash"); });
    var smooth = !window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    marks[0].scrollIntoView({ block: "center", behavior: smooth ? "smooth" : "auto" });
    if (scroll && card) card.scrollIntoView({ block: "nearest" });
  }
  $("doc-text").addEventListener("click", function (ev) {
    var mark = ev.target.closest("mark[data-v]");
    if (mark) focusValue(Number(mark.getAttribute("data-v").split(" ")[0]), true);
  });

  // ------------------------------------------------------------------ values

  function verdictControls(i) {
    var v = VALUES[i], variable = VARS[v.var], mine = verdicts[v.id], saved = v.saved;
    var box = el("div", { class: "verdict" });
    var yes = el("button", { type: "button", class: "yes" + (mine && mine.is_correct === true ? " on" : ""),
      disabled: v.status === "failed", title: v.status === "failed" ? "a failed cell has no answer to confirm" : "the value is right", text: "✓ Correct" });
    var no = el("button", { type: "button", class: "no" + (mine && mine.is_correct === false ? " on" : ""), title: "the value is wrong", text: "✗ Wrong" });
    box.appendChild(yes); box.appendChild(no);
    if (mine) box.appendChild(el("button", { type: "button", class: "quiet clear", text: "undo" }));
    if (saved) box.appendChild(el("span", { class: "saved", text: "recorded: " + (saved.is_correct ? "correct" : "wrong" + (saved.corrected ? " → " + saved.corrected : " → not stated")) + " (" + saved.source + ")" }));
    var fix = null;
    if (mine && (mine.is_correct === true || mine.is_correct === false)) {
      fix = el("div", { class: "fix" });
      if (mine.is_correct === false) {
        var input;
        var choices = variable.type === "BOOLEAN" ? ["true", "false"] :
          variable.type === "CATEGORY" && !variable.multi_select ? variable.categories.concat(variable.allow_other ? ["other"] : []) : null;
        if (choices) {
          input = el("select", { class: "corrected" }, el("option", { value: "", text: "— not stated in the document —" }));
          choices.forEach(function (c) { input.appendChild(el("option", { value: c, text: c })); });
        } else {
          var expected = { NUMBER: "a number" + (variable.unit ? " in " + variable.unit : ""), DATE: "YYYY, YYYY-MM or YYYY-MM-DD",
            CATEGORY: "categories separated by ;", TEXT: "the right text" }[variable.type] || "";
          input = el("input", { class: "corrected", type: "text", placeholder: expected + " (blank: not stated)" });
        }
        input.value = mine.corrected || "";
        input.addEventListener("change", function () { setVerdict(i, { corrected: input.value }); });
        fix.appendChild(el("label", null, "corrected value", input));
        if (v.value === null && v.status !== "failed") {
          // "wrong" with no value would say "not stated" again: the import refuses that
          var hint = el("p", { class: "hint", text: "Nothing was extracted: give the value the document states." });
          hint.hidden = !!mine.corrected;
          input.addEventListener("input", function () { hint.hidden = !!input.value; });
          fix.appendChild(hint);
        }
      }
      var comment = el("textarea", { class: "comment", placeholder: mine.is_correct ? "optional: anything the prompt should know" : "why it is wrong, or what the prompt should know" });
      comment.value = mine.comment || "";
      comment.addEventListener("change", function () { setVerdict(i, { comment: comment.value }); });
      fix.appendChild(el("label", null, "comment", comment));
    }
    box.addEventListener("click", function (ev) {
      var target = ev.target.closest("button");
      ev.stopPropagation();
      if (!target) return;
      if (target === yes) setVerdict(i, { is_correct: true, corrected: "" });  // the comment stays
      else if (target === no) setVerdict(i, { is_correct: false });
      else if (target.classList.contains("clear")) setVerdict(i, null);
      redrawCard(i);
    });
    var wrap = el("div", null, box);
    if (fix) { fix.addEventListener("click", function (ev) { ev.stopPropagation(); }); wrap.appendChild(fix); }
    return wrap;
  }

  function card(i, dimmed) {
    var v = VALUES[i], variable = VARS[v.var];
    var line1 = el("div", { class: "line1" },
      el("span", { class: "var", text: variable.name }),
      el("span", { class: "tag", text: variable.type }),
      el("span", { class: "tag s-" + v.status, text: v.status.replace("_", " ") }));
    if (v.status === "ok" && !v.drawn) line1.appendChild(el("span", { class: "tag ungrounded",
      title: v.grounded === false ? "the quote was not found in the text" : "the stored offsets do not fit the text",
      text: v.grounded === false ? "ungrounded" : "no span" }));
    if (v.support === "unsupported") line1.appendChild(el("span", { class: "tag unsupported",
      title: v.support_reason || "the quote does not state this value", text: "unsupported" }));
    line1.appendChild(el("span", { class: "conf", title: "confidence" }, fmtConf(v.confidence),
      el("span", { class: "bar" }, el("i", { style: { width: Math.round(confOf(v) * 100) + "%" } }))));
    var meta = ["prompt v" + (v.prompt_version === null ? "?" : v.prompt_version), "model " + (v.model || "?")];
    if (v.page !== null) meta.push("page " + v.page);
    var node = el("div", { class: "value" + (dimmed ? " dimmed" : "") + (state.selected === i ? " selected" : ""), "data-i": i,
      "data-id": v.id, style: { "--c": colour(v.confidence) } },
      line1,
      el("div", { class: "shown" + (v.status === "ok" ? "" : " absent"), text: v.shown }),
      el("div", { class: "meta", text: meta.join(" · ") }));
    if (v.quote && !v.drawn) node.appendChild(el("blockquote", { text: v.quote }));
    node.appendChild(verdictControls(i));
    node.addEventListener("click", function () { focusValue(i, false); });
    return node;
  }
  function redrawCard(i) {
    var old = document.querySelector('.value[data-i="' + i + '"]');
    if (old) old.replaceWith(card(i, old.classList.contains("dimmed")));
  }

  function renderValues() {
    var d = state.doc, pane = $("values");
    var shown = shownValues(d);
    var all = valuesOfDoc[d];
    var frag = document.createDocumentFragment();
    frag.appendChild(el("h2", { text: DOCS[d].name }));
    frag.appendChild(el("p", { class: "doc-meta", text: all.length ? shown.length + " of " + all.length + " values shown" : "no values extracted from this document" }));
    shown.forEach(function (i) { frag.appendChild(card(i, false)); });
    var hidden = all.filter(function (i) { return shown.indexOf(i) < 0; });
    if (hidden.length) {
      if (state.showAll) hidden.forEach(function (i) { frag.appendChild(card(i, true)); });
      frag.appendChild(el("button", { type: "button", class: "quiet more",
        text: state.showAll ? "hide the " + hidden.length + " values the filters leave out" : "show " + hidden.length + " more values of this document",
        onclick: function () { state.showAll = !state.showAll; renderValues(); } }));
    }
    pane.replaceChildren(frag);
  }
  function renderNothing() {
    state.doc = null;
    var why = VALUES.length ? "No value matches these filters." : (DOCS.length ? "This job has no extractions yet." : "This job has no documents and no extractions yet.");
    $("values").replaceChildren(el("p", { class: "empty", text: why }));
    $("doc-text").replaceChildren();
    $("text-head").replaceChildren();
  }
  function openDoc(d) {
    if (docRows[state.doc]) docRows[state.doc].classList.remove("current");
    state.doc = d; state.selected = null; state.showAll = false;
    if (docRows[d]) { docRows[d].classList.add("current"); }
    renderText(d);
    renderValues();
  }

  // ------------------------------------------------------------------ export

  function exportRows() {
    return Object.keys(verdicts).map(function (id) {
      var i = byId[id], v = VALUES[i], mine = verdicts[id];
      return { extraction_id: id, job_id: DATA.job.id, document: DOCS[v.doc].name, variable: VARS[v.var].name,
        extracted_value: v.value, is_correct: mine.is_correct,
        corrected_value: mine.is_correct || !mine.corrected ? null : mine.corrected,
        comment: mine.comment || "", recorded_at: mine.at || null };
    }).filter(function (r) { return r.is_correct === true || r.is_correct === false; });
  }
  function download(name, type, text) {
    var url = URL.createObjectURL(new Blob([text], { type: type }));
    var a = el("a", { href: url, download: name });
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
  }
  function fileName(ext) { return "review-verdicts-" + DATA.job.id.slice(0, 8) + "." + ext; }
  function csvCell(value) {
    var text = value === null || value === undefined ? "" : typeof value === "string" ? value : JSON.stringify(value);
    if (/^[=+\-@\t\r]/.test(text)) text = "'" + text; // a spreadsheet would run it as a formula
    return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }
  $("export-json").addEventListener("click", function () {
    var rows = exportRows();
    download(fileName("json"), "application/json", JSON.stringify({ format: DATA.verdict_format, version: 1,
      job_id: DATA.job.id, project: DATA.job.project, exported_at: new Date().toISOString(), verdicts: rows }, null, 2) + "\n");
    notice(rows.length + " verdicts exported: run  extractflow review import " + fileName("json"));
  });
  $("export-csv").addEventListener("click", function () {
    var rows = exportRows();
    var lines = [["extraction_id", "job_id", "document", "variable", "extracted value", "correct", "corrected value", "comment"].join(",")];
    rows.forEach(function (r) {
      lines.push([r.extraction_id, r.job_id, r.document, r.variable, r.extracted_value, r.is_correct ? "yes" : "no",
        r.corrected_value, r.comment].map(csvCell).join(","));
    });
    download(fileName("csv"), "text/csv", "\ufeff" + lines.join("\r\n") + "\r\n");
    notice(rows.length + " verdicts exported: run  extractflow review import " + fileName("csv"));
  });
  var forgetArmed = false;
  $("forget").addEventListener("click", function () {
    if (!forgetArmed) { forgetArmed = true; $("forget").textContent = "Click again to forget all"; setTimeout(function () { forgetArmed = false; $("forget").textContent = "Forget verdicts"; }, 4000); return; }
    forgetArmed = false; $("forget").textContent = "Forget verdicts";
    verdicts = {}; save(); updateVerdictBar();
    Object.keys(docRows).forEach(function (d) { refreshDocRow(Number(d)); });
    renderDocList();
  });

  // ------------------------------------------------------------------ wiring

  var varSelect = $("f-variable");
  VARS.forEach(function (v) { varSelect.appendChild(el("option", { value: v.name, text: v.name + (v.label && v.label !== v.name ? " — " + v.label : "") })); });
  varSelect.value = state.variable; $("f-status").value = state.status; $("f-sort").value = state.sort;
  if (state.below !== null) $("f-below").value = String(state.below);
  function readFilters() {
    state.variable = varSelect.value; state.status = $("f-status").value; state.sort = $("f-sort").value;
    state.unreviewed = $("f-unreviewed").checked;
    var raw = $("f-below").value.trim(), num = Number(raw);
    state.below = raw === "" || isNaN(num) ? null : num;
    state.showAll = false;
    renderDocList();
  }
  $("filters").addEventListener("change", readFilters);
  $("f-below").addEventListener("input", readFilters);
  $("filters").addEventListener("submit", function (ev) { ev.preventDefault(); });
  var searchTimer = null;
  $("doc-search").addEventListener("input", function () {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(function () { state.query = $("doc-search").value.trim(); renderDocList(); }, 120);
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.target.closest("input, textarea, select") || ev.altKey || ev.ctrlKey || ev.metaKey) return;
    var at = order.indexOf(state.doc), next = null;
    if ((ev.key === "j" || ev.key === "n") && at + 1 < order.length) next = at + 1;
    if ((ev.key === "k" || ev.key === "p") && at > 0) next = at - 1;
    if (next === null) return;
    if (next >= listLimit) growList(next);
    openDoc(order[next]);
    docRows[state.doc].scrollIntoView({ block: "nearest" });
  });

  updateVerdictBar();
  renderDocList();
  document.documentElement.setAttribute("data-ready", "true");
  window.reviewReadyAt = performance.now();
})();
