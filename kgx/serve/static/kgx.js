// The query page: posts the query to /sparql and draws the answer as a table.
// Entity pages: a model fact, opened, fetches its evidence from /fact/{digest}.
// Everything from an answer goes into the page as text (textContent), never as markup.
"use strict";

function decoded(text) {
  try { return decodeURIComponent(text); } catch (e) { return text; }  // a lone % stays
}

function entityPath(iri, resource) {
  if (!resource || !iri.startsWith(resource) || iri.length === resource.length) return null;
  const local = iri.slice(resource.length);
  return "/entity/" + local.split("/").map(function (part) {
    return encodeURIComponent(decoded(part));
  }).join("/");
}

// An IRI as a prefixed name ("kgx:capital") where a predeclared prefix covers it.
function shortIri(iri, prefixes) {
  let best = null;
  Object.keys(prefixes || {}).forEach(function (name) {
    const ns = prefixes[name];
    if (iri.startsWith(ns) && iri.length > ns.length && (!best || ns.length > prefixes[best].length)) {
      best = name;
    }
  });
  return best === null ? "<" + iri + ">" : best + ":" + iri.slice(prefixes[best].length);
}

function cell(term, resource, prefixes) {
  const td = document.createElement("td");
  if (!term) return td;
  if (term.type === "uri") {
    const path = entityPath(term.value, resource);
    if (path) {
      const a = document.createElement("a");
      a.href = path;
      a.textContent = decoded(term.value.slice(resource.length)).replace(/_/g, " ");
      a.title = term.value;
      td.appendChild(a);
    } else {
      const span = document.createElement("span");
      span.className = "iri";
      span.textContent = shortIri(term.value, prefixes);
      span.title = term.value;
      td.appendChild(span);
    }
  } else if (term.type === "bnode") {
    td.textContent = "_:" + term.value;
  } else {
    td.textContent = term.value;
    const tag = term["xml:lang"] ? "@" + term["xml:lang"] : "";
    if (tag) {
      const span = document.createElement("span");
      span.className = "tag";
      span.textContent = tag;
      td.appendChild(span);
    }
  }
  return td;
}

function drawSelect(data, resource, prefixes, results) {
  const table = document.createElement("table");
  table.className = "results";
  const head = table.createTHead().insertRow();
  data.head.vars.forEach(function (v) {
    const th = document.createElement("th");
    th.textContent = v;
    head.appendChild(th);
  });
  const body = table.createTBody();
  data.results.bindings.forEach(function (row) {
    const tr = body.insertRow();
    data.head.vars.forEach(function (v) { tr.appendChild(cell(row[v], resource, prefixes)); });
  });
  results.appendChild(table);
  return data.results.bindings.length;
}

async function run(form) {
  const status = document.getElementById("status");
  const results = document.getElementById("results");
  const resource = form.dataset.resource;
  let prefixes = {};
  try { prefixes = JSON.parse(form.dataset.prefixes || "{}"); } catch (e) { prefixes = {}; }
  const query = form.elements.query.value;
  results.textContent = "";
  status.className = "note";
  status.textContent = "Running…";
  const started = performance.now();
  let response;
  try {
    response = await fetch("/sparql", {
      method: "POST",
      headers: {"Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/sparql-results+json, text/turtle;q=0.9"},
      body: new URLSearchParams({query: query}),
    });
  } catch (e) {
    status.className = "error";
    status.textContent = "The server did not answer: " + e;
    return;
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(2);
  const text = await response.text();
  if (!response.ok) {
    status.className = "error";
    status.textContent = response.status + " " + response.statusText + "\n" + text;
    return;
  }
  const truncated = response.headers.get("X-KGX-Truncated") === "true";
  const type = response.headers.get("Content-Type") || "";
  let summary;
  if (type.startsWith("application/sparql-results+json")) {
    const data = JSON.parse(text);
    if ("boolean" in data) {
      const p = document.createElement("p");
      p.className = "boolean";
      p.textContent = String(data.boolean);
      results.appendChild(p);
      summary = "ASK";
    } else {
      const n = drawSelect(data, resource, prefixes, results);
      summary = n + " row" + (n === 1 ? "" : "s");
    }
  } else {
    const pre = document.createElement("pre");
    pre.className = "rdf";
    pre.textContent = text;
    results.appendChild(pre);
    summary = "triples";
  }
  status.className = "note";
  status.textContent = summary + " in " + seconds + " s" +
    (truncated ? " (cut at the endpoint's row or size cap)" : "");
}

function link(href, text, external) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  if (external) { a.className = "external"; a.rel = "noopener noreferrer"; }
  return a;
}

function drawEvidence(data, slot) {
  const list = document.createElement("ol");
  list.className = "evidence";
  data.evidence.forEach(function (ev) {
    const li = document.createElement("li");
    const p = document.createElement("p");
    p.className = "sentence";
    let pos = 0;
    ev.marks.forEach(function (m) {
      p.appendChild(document.createTextNode(ev.sentence.slice(pos, m[0])));
      const mark = document.createElement("mark");
      mark.className = m[2];
      mark.textContent = ev.sentence.slice(m[0], m[1]);
      p.appendChild(mark);
      pos = m[1];
    });
    p.appendChild(document.createTextNode(ev.sentence.slice(pos)));
    const source = document.createElement("p");
    source.className = "source";
    const parts = [];
    if (ev.page_path) parts.push(link(ev.page_path, ev.page, false));
    else if (ev.page_id !== null) parts.push(document.createTextNode("page id " + ev.page_id));
    if (ev.revision_url) parts.push(link(ev.revision_url, "revision " + ev.revision, true));
    if (ev.confidence !== null) {
      parts.push(document.createTextNode("sentence confidence " + ev.confidence.toFixed(2)));
    }
    parts.forEach(function (part, i) {
      if (i) source.appendChild(document.createTextNode(" · "));
      source.appendChild(part);
    });
    li.appendChild(p);
    li.appendChild(source);
    list.appendChild(li);
  });
  slot.appendChild(list);
}

function watchEvidence(details) {
  details.addEventListener("toggle", async function () {
    if (!details.open || details.dataset.loaded) return;
    details.dataset.loaded = "yes";
    const slot = details.querySelector(".evidence-slot");
    try {
      const response = await fetch(details.dataset.evidence, {headers: {"Accept": "application/json"}});
      if (!response.ok) throw new Error(response.status + " " + response.statusText);
      drawEvidence(await response.json(), slot);
    } catch (e) {
      const p = document.createElement("p");
      p.className = "error";
      p.textContent = "The evidence could not be loaded: " + e.message;
      slot.appendChild(p);
    }
  });
}

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("details[data-evidence]").forEach(watchEvidence);
  const form = document.getElementById("sparql");
  if (!form) return;
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const url = new URL(window.location.href);
    url.searchParams.set("query", form.elements.query.value);
    window.history.replaceState(null, "", url);
    run(form);
  });
  if (form.dataset.run === "yes") run(form);
});
