import Hummingbird
import NIOCore

/// `GET /` on the master: one self-contained page (no external assets) that polls
/// `/health` and `/messages` every second, so a student can watch a secondary fall
/// behind and catch up, and append with a chosen `w`.
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
        </style>
        </head>
        <body>
        <h1>replog</h1>
        <p class="sub">A master and its secondaries, refreshed every second. <span id="updated" class="muted"></span></p>
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

        <h2>Latest messages</h2>
        <table>
          <thead><tr><th>seq</th><th>message</th></tr></thead>
          <tbody id="messages"></tbody>
        </table>

        <script>
        const text = (value) => document.createTextNode(value == null ? "" : String(value));
        // A node started with --client-token wants it on appends (and maybe reads); kept for this tab only.
        const tokenField = document.getElementById("token");
        tokenField.value = sessionStorage.getItem("replog-token") || "";
        tokenField.addEventListener("change", () => sessionStorage.setItem("replog-token", tokenField.value));
        const auth = () => tokenField.value ? { "Authorization": "Bearer " + tokenField.value } : {};
        function row(cells) {
          const tr = document.createElement("tr");
          for (const cell of cells) {
            const td = document.createElement("td");
            td.append(cell instanceof Node ? cell : text(cell));
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
        async function refresh() {
          try {
            const health = await (await fetch("/health")).json();
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
              + " nodes available, " + health.quorum.required + " needed.";
            const nodes = document.getElementById("nodes");
            const role = health.epoch ? "master, epoch " + health.epoch : "master";
            const rows = [row([location.origin, role, badge("healthy"), health.seq, 0, "—"])];
            for (const s of health.secondaries) {
              const name = document.createElement("div");
              name.append(text(s.url));
              if (s.problem) { const p = document.createElement("div"); p.className = "problem"; p.append(text(s.problem)); name.append(p); }
              // With failover: the epoch each member last answered in (an older one: it has not heard of this master yet).
              const memberRole = s.epoch == null ? "secondary" : "secondary, epoch " + s.epoch;
              rows.push(row([name, memberRole, badge(s.status), s.ackedSeq, s.lag,
                s.lastContact ? new Date(s.lastContact).toLocaleTimeString() : "never"]));
            }
            nodes.replaceChildren(...rows);
            const from = Math.max(1, health.seq - 19);
            const reply = await fetch("/messages?from=" + from + "&limit=20", { headers: auth() });
            if (reply.status === 401) {
              // Started with --client-token-reads: say so, rather than that the master is unreachable.
              document.getElementById("messages").replaceChildren(row(["—", "reading the log needs a client token: enter it in the form above"]));
            } else {
              const page = await reply.json();
              document.getElementById("messages").replaceChildren(...page.messages.reverse().map(m => row([m.seq, m.message])));
            }
            document.getElementById("updated").textContent = "Updated " + new Date().toLocaleTimeString() + ".";
          } catch (error) {
            document.getElementById("quorum").textContent = "Cannot reach the master: " + error;
          }
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
        refresh();
        setInterval(refresh, 1000);
        </script>
        </body>
        </html>
        """#
}
