"""The one page the server shows: plain HTML and JavaScript, nothing fetched from elsewhere."""

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>alexnet-cifar</title>
<style>
body{font-family:sans-serif;max-width:1100px;margin:1.5em auto;color:#222}
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:3px 8px}tr.run{cursor:pointer}
tr.run:hover{background:#eef}.result{display:inline-block;margin:8px;vertical-align:top}
.result img{width:128px;height:128px;image-rendering:pixelated}#error{color:#b00}
</style></head><body>
<h1>alexnet-cifar</h1>
<h2>Runs</h2>
<table id="runs"><tr><th>run</th><th>recipe</th><th>status</th><th>epochs</th><th>last acc</th><th>best acc</th></tr></table>
<h3 id="curve-title"></h3>
<svg id="curve" width="640" height="200" style="border:1px solid #ccc;display:none"></svg>
<h2>Try it</h2>
<form id="try"><select id="run" name="run"></select>
<input id="files" type="file" name="files" accept="image/*" multiple required>
<button type="submit">Classify</button></form>
<p id="error"></p><div id="results"></div>
<script>
const token = new URLSearchParams(location.search).get("token");
const headers = token ? {Authorization: "Bearer " + token} : {};
let watched = null;
async function api(path, options = {}) {
  const reply = await fetch(path, {...options, headers});
  const body = await reply.json();
  if (!reply.ok) throw new Error(body.detail || reply.statusText);
  return body;
}
function cell(row, text) { const td = row.insertCell(); td.textContent = text; }
async function loadRuns() {
  const runs = await api("/api/runs");
  const table = document.getElementById("runs"), select = document.getElementById("run");
  while (table.rows.length > 1) table.deleteRow(1);
  const chosen = select.value; select.innerHTML = "";
  for (const r of runs) {
    const row = table.insertRow(); row.className = "run"; row.onclick = () => { watched = r.id; drawCurve(); };
    for (const v of [r.id, r.recipe, r.status, r.epochs_done + "/" + r.epochs,
                     r.last_acc === null ? "-" : r.last_acc.toFixed(4), r.best_acc === null ? "-" : r.best_acc.toFixed(4)]) cell(row, v);
    select.add(new Option(r.id, r.id));
  }
  if (chosen) select.value = chosen;
}
async function drawCurve() {
  if (!watched) return;
  const {rows} = await api("/api/runs/" + encodeURIComponent(watched) + "/metrics");
  const svg = document.getElementById("curve"); svg.style.display = "block";
  document.getElementById("curve-title").textContent = watched + ": accuracy per epoch, 0 (bottom) to 1 (top): train in blue, Valid in orange";
  const w = 640, h = 200, n = Math.max(rows.length - 1, 1);
  const line = (key, colour) => '<polyline fill="none" stroke="' + colour + '" stroke-width="2" points="' +
    rows.map((r, i) => (20 + i * (w - 40) / n) + "," + (h - 20 - r[key] * (h - 40))).join(" ") + '"/>';
  svg.innerHTML = line("train_acc", "#1f77b4") + line("valid_acc", "#ff7f0e");
}
document.getElementById("try").onsubmit = async (event) => {
  event.preventDefault();
  const form = new FormData(); form.append("run", document.getElementById("run").value);
  for (const f of document.getElementById("files").files) form.append("files", f);
  document.getElementById("error").textContent = "";
  const out = document.getElementById("results"); out.innerHTML = "";
  try {
    const {results} = await api("/api/predict", {method: "POST", body: form});
    for (const r of results) {
      const div = document.createElement("div"); div.className = "result";
      const img = document.createElement("img"); img.src = "data:image/png;base64," + r.saliency_png; div.append(img);
      const list = document.createElement("ol"); list.className = "top5";
      for (const t of r.top5) { const li = document.createElement("li"); li.textContent = t.class + " " + t.probability.toFixed(3); list.append(li); }
      const name = document.createElement("div"); name.textContent = r.file; div.append(name, list); out.append(div);
    }
  } catch (e) { document.getElementById("error").textContent = e.message; }
};
loadRuns().catch(e => document.getElementById("error").textContent = e.message);
setInterval(() => { loadRuns().catch(() => {}); drawCurve().catch(() => {}); }, 2000);
</script></body></html>
"""
