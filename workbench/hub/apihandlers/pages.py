"""The service's own page (HTML, for a browser logged in to the hub)::

    GET    /services/workbench/                 the caller's sessions, dashboards, shares and runs

It calls the JSON API of the other modules from the browser, as the caller.
"""

from __future__ import annotations

import html

from tornado import web

from workbench.hub.apihandlers.base import PageHandler


class IndexHandler(PageHandler):
    """A small page: the caller's sessions with their dashboards and shares, and what others
    share with them. Its one script (with the page's nonce) calls the JSON API with the hub's
    XSRF token and puts every value in the page as text, never as markup."""

    @web.authenticated
    async def get(self) -> None:
        prefix = self.application.settings["service_prefix"]
        self.page_policy("; connect-src 'self'")
        page = (
            _PAGE.replace("{{prefix}}", html.escape(prefix))
            .replace("{{xsrf}}", html.escape(self.xsrf_token.decode()))
            .replace("{{user}}", html.escape(self.tenant))
            .replace("{{nonce}}", self.nonce)
        )
        self.finish(page)


default_handlers = [
    ("/", IndexHandler),
]


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Workbench: sessions and dashboards</title>
<style>body{font-family:sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.3em .6em}#msg{color:#a00}</style></head>
<body data-prefix="{{prefix}}" data-xsrf="{{xsrf}}">
<h1>Workbench of {{user}}</h1>
<p><a href="/hub/home">hub home</a> · <a href="/user/{{user}}/lab">JupyterLab</a></p>
<p id="msg"></p>
<h2>My trading sessions</h2>
<table id="sessions"><tr><th>id</th><th>symbol</th><th>status</th><th>dashboard</th><th>shared with</th></tr></table>
<h2>Runs</h2>
<table id="runs"><tr><th>run</th><th>live notebook</th><th>scheduled for</th><th>status</th><th>error</th></tr></table>
<h2>Shared with me</h2>
<ul id="shared"></ul>
<script nonce="{{nonce}}">
// every value from the API goes into the page as text (textContent), never as markup
const PREFIX = document.body.dataset.prefix, P = PREFIX + "api/", X = document.body.dataset.xsrf;
async function api(method, path, body) {
  const r = await fetch(P + path, {method, headers: {"X-XSRFToken": X, "Content-Type": "application/json"},
                                   body: body === undefined ? undefined : JSON.stringify(body)});
  const data = await r.json();
  if (!r.ok) { document.getElementById("msg").textContent = data.error || r.statusText; throw data; }
  return data;
}
function el(tag, props, ...children) {
  const node = Object.assign(document.createElement(tag), props || {});
  for (const child of children) node.append(child);
  return node;
}
function button(label, cls, action) {
  const b = el("button", {className: cls, textContent: label});
  b.addEventListener("click", action);
  return b;
}
function row(table, cells) {
  const tr = table.insertRow(); tr.className = "row";
  for (const cell of cells) { const td = tr.insertCell(); td.append(...[].concat(cell)); }
  return tr;
}
async function load() {
  const sessions = await api("GET", "sessions"), table = document.getElementById("sessions");
  table.querySelectorAll("tr.row").forEach(r => r.remove());
  for (const s of sessions) {
    const id = Number(s.id), users = await api("GET", "dashboards/" + id + "/shares").catch(() => []);
    const input = el("input", {id: "share-" + id, placeholder: "user name", size: 10});
    const shares = users.flatMap(u => [String(u) + " ", button("revoke", "revoke", async () => {
      await api("DELETE", "dashboards/" + id + "/shares/" + encodeURIComponent(u)); load(); }), " "]);
    row(table, [String(id), String(s.symbol ?? ""), String(s.status ?? ""),
                button("Open dashboard", "open", async () => {
                  window.location = (await api("POST", "dashboards/" + id)).url; }),
                [...shares, input, button("Share read-only", "share", async () => {
                  const user = input.value.trim();
                  if (user) { await api("POST", "dashboards/" + id + "/shares", {user}); load(); } })]]);
  }
  const runs = await api("GET", "runs?limit=20"), rt = document.getElementById("runs");
  rt.querySelectorAll("tr.row").forEach(r => r.remove());
  for (const r of runs) {
    const tr = row(rt, [String(r.id), String(r.live_notebook_id), String(r.scheduled_for ?? ""),
                        String(r.status ?? ""), String(r.error ?? "")]);
    tr.cells[3].className = "status";
  }
  const shared = await api("GET", "shared"), list = document.getElementById("shared");
  list.replaceChildren(...shared.filter(s => String(s.url).startsWith(PREFIX)).map(s =>
    el("li", {}, el("a", {href: s.url, className: "shared", textContent: s.owner + ": session " + s.session}))));
}
load(); setInterval(load, 5000);
</script></body></html>
"""
