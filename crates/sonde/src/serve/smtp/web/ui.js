// The mail sink's page: the list (newest first, searchable, refreshed
// when the event stream says a message came), one message with its
// headers, its HTML in a sandboxed frame, its text, source and files.
// Everything a message brings is shown as text or inside the frame.
"use strict";

const $ = (id) => document.getElementById(id);
let picked = null;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function who(p) {
  if (!p || (!p.Name && !p.Address)) return "";
  return p.Name ? p.Name + " <" + p.Address + ">" : p.Address;
}

function whom(list) {
  return (list || []).map(who).join(", ");
}

async function json(url, options) {
  const r = await fetch(url, options);
  if (!r.ok) throw new Error(url + ": " + r.status);
  return r.json();
}

async function refresh() {
  const q = $("search").value.trim();
  const url = q ? "/api/v1/search?query=" + encodeURIComponent(q) : "/api/v1/messages";
  const page = await json(url);
  const list = $("list");
  list.replaceChildren();
  for (const m of page.messages) {
    const li = el("li");
    li.dataset.id = m.ID;
    if (!m.Read) li.classList.add("unread");
    if (m.ID === picked) li.classList.add("picked");
    li.append(el("div", m.Subject || "(no subject)", "subject"), el("div", who(m.From) + " → " + whom(m.To), "from"),
      el("div", m.Snippet, "snippet"), el("div", new Date(m.Created).toLocaleString(), "when"));
    li.addEventListener("click", () => { location.hash = "#" + m.ID; });
    list.append(li);
  }
  if (!page.messages.length) list.append(el("li", q ? "Nothing matches." : "No mail yet.", "empty"));
  list.dataset.count = page.messages.length;
  $("count").textContent = page.messages_count + " of " + page.total + " (" + page.unread + " unread)";
}

function tab(name, on, show) {
  const b = el("button", name);
  b.type = "button";
  b.addEventListener("click", () => {
    for (const other of b.parentNode.children) other.classList.remove("on");
    b.classList.add("on");
    show();
  });
  if (on) b.classList.add("on");
  return b;
}

async function open(id) {
  const pane = $("message");
  let m;
  try { m = await json("/api/v1/message/" + encodeURIComponent(id)); } catch (e) {
    pane.replaceChildren(el("p", "No such message.", "empty"));
    pane.dataset.state = "missing";
    return;
  }
  picked = m.ID;
  const rows = el("table");
  for (const [k, v] of [["From", who(m.From)], ["To", whom(m.To)], ["Cc", whom(m.Cc)], ["Reply-To", whom(m.ReplyTo)], ["Date", m.Date], ["Size", m.Size + " bytes"]]) {
    if (!v) continue;
    const tr = el("tr");
    tr.append(el("th", k), el("td", v));
    rows.append(tr);
  }
  const body = el("div");
  body.style.cssText = "flex:1;display:flex;flex-direction:column;min-height:0";
  const showHtml = () => {
    const frame = el("iframe");
    frame.id = "html";
    // No scripts, no forms, its own opaque origin; the server's policy
    // also stops it loading anything from elsewhere.
    frame.setAttribute("sandbox", "");
    frame.setAttribute("referrerpolicy", "no-referrer");
    frame.src = "/view/" + encodeURIComponent(m.ID) + ".html";
    body.replaceChildren(el("p", "Shown without scripts; remote images and other content are blocked.", "note"), frame);
  };
  const showText = (text) => () => body.replaceChildren(el("pre", text));
  const showUrl = (url) => async () => {
    const r = await fetch(url);
    body.replaceChildren(el("pre", await r.text()));
  };
  const showHeaders = async () => {
    const h = await json("/api/v1/message/" + encodeURIComponent(m.ID) + "/headers");
    body.replaceChildren(el("pre", Object.entries(h).flatMap(([k, vs]) => vs.map((v) => k + ": " + v)).join("\n")));
  };
  const tabs = el("div", undefined, "tabs");
  if (m.HTML) tabs.append(tab("HTML", true, showHtml));
  tabs.append(tab("Text", !m.HTML, showText(m.Text)), tab("Headers", false, showHeaders),
    tab("Source", false, showUrl("/api/v1/message/" + encodeURIComponent(m.ID) + "/raw")));
  const del = el("button", "Delete");
  del.type = "button";
  del.addEventListener("click", async () => {
    await fetch("/api/v1/message/" + encodeURIComponent(m.ID), { method: "DELETE" });
    location.hash = "";
  });
  tabs.append(del);
  const files = el("div");
  files.id = "files";
  if (m.Attachments.length || m.Inline.length) files.append(el("span", "Files: ", "label"));
  for (const a of [...m.Attachments, ...m.Inline]) {
    const link = el("a", (a.FileName || a.ContentType) + " (" + a.Size + " bytes)");
    link.href = "/api/v1/message/" + encodeURIComponent(m.ID) + "/part/" + encodeURIComponent(a.PartID);
    link.setAttribute("download", a.FileName || "part-" + a.PartID);
    files.append(link);
  }
  pane.replaceChildren(el("h2", m.Subject || "(no subject)"), rows, files, tabs, body);
  (m.HTML ? showHtml : showText(m.Text))();
  pane.dataset.state = "shown";
  pane.dataset.id = m.ID;
  refresh();
}

function route() {
  const id = decodeURIComponent(location.hash.slice(1));
  if (id) {
    open(id);
  } else {
    picked = null;
    $("message").replaceChildren(el("p", "No message open.", "empty"));
    $("message").dataset.state = "none";
    refresh();
  }
}

let typing;
$("search").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(refresh, 200); });
$("delete-all").addEventListener("click", async () => {
  if (!confirm("Delete every message?")) return;
  await fetch("/api/v1/messages", { method: "DELETE" });
  location.hash = "";
  refresh();
});
window.addEventListener("hashchange", route);
// `?live=0` leaves the stream closed: a headless browser's virtual
// clock waits for every fetch to end, and this one never does.
if (new URLSearchParams(location.search).get("live") !== "0") {
  new EventSource("/sonde/v1/events").addEventListener("new", refresh);
}
route();
