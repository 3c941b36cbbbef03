import Hummingbird
import NIOCore

/// `GET /` on the master: one self-contained page (no external assets). It follows the
/// log through `GET /messages/stream` and asks `/health` twice a second, so a student can
/// watch each message reach the master, then fill in on each secondary as it is
/// replicated (the course's "inconsistent, then consistent", made visible), see a secondary
/// fall behind and catch up in the last minute's charts, and append with a chosen `w`.
enum StatusPage {
    static func response(clusterSize: Int) -> Response {
        let options = (1...clusterSize).map { "<option value=\"\($0)\">\($0)</option>" }.joined()
        let html = page.replacingOccurrences(of: "{{W_OPTIONS}}", with: options)
        return Response(
            status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
    }

    private static let page = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>replog status</title>
        <style>
          body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; color: #1d2330; }
          h1 { font-size: 1.4rem; margin-bottom: .2rem; }
          .sub { color: #5b6475; margin-top: 0; }
          table { border-collapse: collapse; width: 100%; margin: .5rem 0 1.5rem; }
          th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #e3e6ec; }
          th { font-weight: 600; color: #5b6475; font-size: .85rem; text-transform: uppercase; letter-spacing: .03em; }
          .status { display: inline-block; padding: .05rem .55rem; border-radius: 1rem; font-size: .85rem; font-weight: 600; }
          .healthy { background: #dcf5e3; color: #17642f; }
          .suspected { background: #fff1c9; color: #7a5600; }
          .unhealthy { background: #fde0e0; color: #9b1c1c; }
          .banner { padding: .6rem .9rem; border-radius: .4rem; margin: 1rem 0; font-weight: 600; }
          .writable { background: #dcf5e3; color: #17642f; }
          .readonly { background: #fde0e0; color: #9b1c1c; }
          .lag { font-variant-numeric: tabular-nums; }
          form { display: flex; gap: .5rem; flex-wrap: wrap; align-items: center; margin: .5rem 0 1.5rem; }
          input[type=text] { flex: 1; min-width: 14rem; padding: .4rem; }
          button { padding: .4rem 1rem; }
          #result { font-family: ui-monospace, monospace; font-size: .85rem; color: #5b6475; }
          .problem { color: #9b1c1c; font-size: .85rem; }
          .muted { color: #5b6475; }
          td.cell { text-align: center; width: 4.5rem; }
          .held { color: #17642f; }
          .missing { color: #c4c9d4; }
          .charts { display: flex; gap: 2rem; flex-wrap: wrap; }
          figure { margin: 0; }
          figcaption { color: #5b6475; font-size: .85rem; }
          svg { background: #f6f7f9; border-radius: .3rem; }
          .legend span { margin-right: .8rem; font-size: .85rem; }
        </style>
        </head>
        <body>
        <h1>replog</h1>
        <p class="sub">A master and its secondaries, live. <span id="updated" class="muted"></span></p>
        <div id="quorum" class="banner">connecting…</div>

        <h2>Nodes</h2>
        <table>
          <thead><tr><th>node</th><th>role</th><th>status</th><th>holds up to seq</th><th>lag</th><th>last contact</th></tr></thead>
          <tbody id="nodes"></tbody>
        </table>

        <h2>Append</h2>
        <form id="append">
          <input type="text" id="message" placeholder="message" required>
          <label>w <select id="w"><option value="">all</option>{{W_OPTIONS}}</select></label>
          <input type="password" id="token" placeholder="client token (if the node needs one)">
          <button type="submit">Append</button>
        </form>
        <div id="result"></div>

        <h2>Latest messages, and who holds them</h2>
        <p class="sub">A message is on the master first (● holds it, ○ not yet), then fills in on each secondary as it is replicated.</p>
        <table>
          <thead id="holders"></thead>
          <tbody id="messages"></tbody>
        </table>

        <h2>The last minute</h2>
        <div class="charts">
          <figure><figcaption>appends per second (<span id="rate-now">0</span> now)</figcaption><svg id="rate" width="320" height="80"></svg></figure>
          <figure><figcaption>each secondary's lag, in messages</figcaption><svg id="lag" width="320" height="80"></svg><div id="lag-legend" class="legend"></div></figure>
        </div>

        <script>
        const text = (value) => document.createTextNode(value == null ? "" : String(value));
        const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms));
        // A node started with --client-token wants it on appends (and maybe reads); kept for this tab only.
        const tokenField = document.getElementById("token");
        tokenField.value = sessionStorage.getItem("replog-token") || "";
        tokenField.addEventListener("change", () => sessionStorage.setItem("replog-token", tokenField.value));
        const auth = () => tokenField.value ? { "Authorization": "Bearer " + tokenField.value } : {};
        function row(cells) {
          const tr = document.createElement("tr");
          for (const cell of cells) {
            const td = cell instanceof HTMLTableCellElement ? cell : document.createElement("td");
            if (td !== cell) td.append(cell instanceof Node ? cell : text(cell));
            tr.append(td);
          }
          return tr;
        }
        function badge(status) {
          const span = document.createElement("span");
          span.className = "status " + status;
          span.textContent = status;
          return span;
        }

        let health = null;     // the latest /health of the master
        let latest = [];       // the latest 20 messages from the stream, oldest first
        let lastSeq = 0;       // the last seq the stream delivered
        let readsNeedToken = false;
        // The last minute, one slot per second: appends seen on the stream, each secondary's lag.
        const seconds = 60;
        const rate = new Array(seconds).fill(0);
        const lags = {};
        let second = Math.floor(Date.now() / 1000);
        function moveToNow() {
          const now = Math.floor(Date.now() / 1000);
          for (; second < now; second++) {
            rate.push(0); rate.shift();
            for (const url in lags) { lags[url].push(lags[url][seconds - 1]); lags[url].shift(); }
          }
        }

        // The nodes and what each holds: the master holds what it lists, a secondary what it acknowledged.
        function holders() {
          if (!health) return [];
          return [{ url: location.origin, name: "master", seq: health.seq }]
            .concat(health.secondaries.map(s => ({ url: s.url, name: s.url.replace(/^https?:\/\//, ""), seq: s.ackedSeq })));
        }

        function renderMessages() {
          const nodes = holders();
          const head = row(["seq", "message"].concat(nodes.map(n => n.name)).map(name => {
            const th = document.createElement("th"); th.textContent = name; return th;
          }));
          document.getElementById("holders").replaceChildren(head);
          if (readsNeedToken) {
            // Started with --client-token-reads: say so, rather than that the master is unreachable.
            document.getElementById("messages").replaceChildren(row(["—", "reading the log needs a client token: enter it in the form above"]));
            return;
          }
          // The page follows everything the master holds (read=local) and marks what is not
          // committed yet: a failover may still take it back, and default readers do not see it.
          const committedThrough = !health || health.commitSeq == null ? Infinity : health.commitSeq;
          document.getElementById("messages").replaceChildren(...latest.slice().reverse().map(m => row([
            m.seq <= committedThrough ? String(m.seq) : m.seq + " (not committed yet)", m.message].concat(nodes.map(n => {
            const td = document.createElement("td");
            const held = n.seq >= m.seq;
            td.className = "cell " + (held ? "held" : "missing");
            td.title = n.url + (held ? " holds seq " : " does not hold yet seq ") + m.seq;
            td.textContent = held ? "●" : "○";
            return td;
          })))));
        }

        const colors = ["#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2"];
        function chart(svg, series) {
          const width = svg.width.baseVal.value, height = svg.height.baseVal.value;
          const top = Math.max(1, ...series.flatMap(s => s.values));
          svg.replaceChildren(...series.map((s, index) => {
            const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
            line.setAttribute("fill", "none");
            line.setAttribute("stroke", colors[index % colors.length]);
            line.setAttribute("stroke-width", "2");
            line.setAttribute("points", s.values.map((v, i) => (i * width / (seconds - 1)).toFixed(1) + "," + (height - 4 - v * (height - 8) / top).toFixed(1)).join(" "));
            return line;
          }));
        }
        function renderCharts() {
          moveToNow();
          document.getElementById("rate-now").textContent = rate[seconds - 2];
          chart(document.getElementById("rate"), [{ values: rate }]);
          const urls = Object.keys(lags);
          chart(document.getElementById("lag"), urls.map(url => ({ values: lags[url] })));
          document.getElementById("lag-legend").replaceChildren(...urls.map((url, index) => {
            const span = document.createElement("span"); span.style.color = colors[index % colors.length]; span.textContent = "— " + url; return span;
          }));
        }

        async function refresh() {
          try {
            health = await (await fetch("/health")).json();
            const quorum = document.getElementById("quorum");
            if (health.role !== "master") {
              // Failover moved the master: follow it (or say that an election is under way).
              if (health.master) { location.replace(health.master + "/"); return; }
              quorum.className = "banner readonly";
              quorum.textContent = "This node is not the master and knows none yet: an election is under way.";
              return;
            }
            quorum.className = "banner " + (health.readOnly ? "readonly" : "writable");
            quorum.textContent = (health.storageFailure ? "Read-only: " + health.storageFailure + " "
                : health.readOnly ? "Read-only: no quorum. " : "Writable. ")
              + health.quorum.available + " of " + (health.secondaries.length + 1)
              + " nodes available, " + health.quorum.required + " needed."
              + (health.commitSeq != null ? " Committed through seq " + health.commitSeq + " (what readers see by default)." : "")
              + (health.firstSeq > 1 ? " The log is kept from seq " + health.firstSeq + " on (retention)." : "");
            const role = health.epoch ? "master, epoch " + health.epoch : "master";
            const rows = [row([location.origin, role, badge("healthy"), health.seq, 0, "—"])];
            moveToNow();
            for (const s of health.secondaries) {
              const name = document.createElement("div");
              name.append(text(s.url));
              if (s.problem) { const p = document.createElement("div"); p.className = "problem"; p.append(text(s.problem)); name.append(p); }
              // With failover: the epoch each member last answered in (an older one: it has not heard of this master yet).
              const memberRole = s.epoch == null ? "secondary" : "secondary, epoch " + s.epoch;
              rows.push(row([name, memberRole, badge(s.status), s.ackedSeq, s.lag,
                s.lastContact ? new Date(s.lastContact).toLocaleTimeString() : "never"]));
              if (!lags[s.url]) lags[s.url] = new Array(seconds).fill(s.lag);
              lags[s.url][seconds - 1] = s.lag;
            }
            document.getElementById("nodes").replaceChildren(...rows);
            renderMessages();
            renderCharts();
            document.getElementById("updated").textContent = "Updated " + new Date().toLocaleTimeString() + ".";
          } catch (error) {
            document.getElementById("quorum").textContent = "Cannot reach the master: " + error;
          }
        }

        // Follows the log from the stream (server-sent events, read with fetch so that a
        // client token can go along), and reconnects after the last seq it saw.
        async function follow() {
          for (;;) {
            try {
              const from = lastSeq > 0 ? lastSeq + 1 : Math.max((health && health.firstSeq) || 1, (health ? health.seq : 0) - 19);
              const reply = await fetch("/messages/stream?read=local&from=" + from, { headers: auth() });
              readsNeedToken = reply.status === 401;
              if (reply.status === 410) lastSeq = 0;  // retention dropped what came next: start again from the latest
              if (!reply.ok) { renderMessages(); await sleep(2000); continue; }
              const reader = reply.body.getReader();
              const decoder = new TextDecoder();
              let buffer = "";
              for (;;) {
                const { value, done } = await reader.read();
                if (done) break;
                buffer += decoder.decode(value, { stream: true });
                for (let end; (end = buffer.indexOf("\n\n")) >= 0; buffer = buffer.slice(end + 2)) {
                  const data = buffer.slice(0, end).split("\n").filter(line => line.startsWith("data:")).map(line => line.slice(5)).join("\n");
                  if (data) received(JSON.parse(data));
                }
              }
            } catch (error) {}
            await sleep(1000);
          }
        }
        function received(message) {
          if (message.seq <= lastSeq) return;
          lastSeq = message.seq;
          latest.push(message);
          if (latest.length > 20) latest.shift();
          moveToNow();
          rate[seconds - 1] += 1;
          renderMessages();
        }

        document.getElementById("append").addEventListener("submit", async (event) => {
          event.preventDefault();
          const body = { message: document.getElementById("message").value };
          const w = document.getElementById("w").value;
          if (w) body.w = Number(w);
          const started = performance.now();
          const reply = await fetch("/messages", { method: "POST", headers: { "Content-Type": "application/json", ...auth() }, body: JSON.stringify(body) });
          document.getElementById("result").textContent =
            reply.status + " after " + Math.round(performance.now() - started) + " ms: " + await reply.text();
          refresh();
        });
        tokenField.addEventListener("change", () => { readsNeedToken = false; });
        refresh().then(follow);
        setInterval(refresh, 500);
        </script>
        </body>
        </html>
        """#
}
