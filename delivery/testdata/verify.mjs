// Checks webhook deliveries signed by the Go tests the way a JavaScript
// receiver checks them. The argument is a JSON file holding an array of cases
// {name, secret, raw, headers, body}, where body is base64 and raw marks a
// secret without the whsec_ prefix. The script prints one JSON line per case:
// {name, header, body}, with "ok" or the failure for each check.
import { readFileSync } from "node:fs";
import { createHmac } from "node:crypto";
import { Webhook } from "standardwebhooks";

// keyOf returns the HMAC key of a secret: the base64 after whsec_, or the
// UTF-8 bytes of a raw secret.
function keyOf(c) {
  if (c.raw) {
    return Buffer.from(c.secret, "utf8");
  }
  return Buffer.from(c.secret.slice("whsec_".length), "base64");
}

// checkHeaders verifies the Standard Webhooks headers with the standardwebhooks
// package. A raw secret needs {format: "raw"}, and a Uint8Array so that the
// package does not read the string one UTF-16 code unit per byte.
function checkHeaders(c) {
  const webhook = c.raw
    ? new Webhook(Buffer.from(c.secret, "utf8"), { format: "raw" })
    : new Webhook(c.secret);
  try {
    webhook.verify(Buffer.from(c.body, "base64"), c.headers);
    return "ok";
  } catch (err) {
    return `standardwebhooks rejected the headers: ${err.message}`;
  }
}

// checkBody checks the body's signature member against JSON.stringify of the
// parsed body without that member.
function checkBody(c) {
  const { signature, ...rest } = JSON.parse(Buffer.from(c.body, "base64").toString("utf8"));
  const text = JSON.stringify(rest);
  const want = "sha256=" + createHmac("sha256", keyOf(c)).update(text).digest("hex");
  if (signature === want) {
    return "ok";
  }
  return `signature member ${signature}, expected ${want} for JSON.stringify(rest) = ${text}`;
}

const cases = JSON.parse(readFileSync(process.argv[2], "utf8"));
for (const c of cases) {
  console.log(JSON.stringify({ name: c.name, header: checkHeaders(c), body: checkBody(c) }));
}
