// A webhook receiver that verifies every request with the official
// Standard Webhooks library (standardwebhooks on npm), as a merchant
// would. Every secret in SECRETS (comma-separated) must verify the
// request (during a rotation's overlap both the old and the new one do).
// Answers 204 when valid, 400 otherwise; GET /results lists what it saw.
// Usage: PORT=… SECRETS=whsec_… node receiver.js
const http = require("http");
const { Webhook } = require("standardwebhooks");

const hooks = process.env.SECRETS.split(",").map((s) => new Webhook(s));
const results = [];

http
  .createServer((req, res) => {
    if (req.method === "GET" && req.url === "/results") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(results));
      return;
    }
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      let ok = true;
      let error = "";
      let type = "";
      for (const wh of hooks) {
        try {
          type = wh.verify(body, req.headers).type;
        } catch (e) {
          ok = false;
          error = String(e.message || e);
        }
      }
      results.push({ id: req.headers["webhook-id"] || "", ok, error, type });
      res.writeHead(ok ? 204 : 400);
      res.end();
    });
  })
  .listen(Number(process.env.PORT), "127.0.0.1", () => console.log("listening"));
