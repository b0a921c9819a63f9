// Checks an audit entry's inclusion proof in the browser, independently of the console's own check:
// the RFC 9162 inclusion proof leads from the entry to the checkpoint's root, and the checkpoint (a C2SP
// signed note) carries a valid Ed25519 signature by the log key the officer pinned.
"use strict";

const enc = new TextEncoder();
const b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const hex = (a) => Array.from(a, (b) => b.toString(16).padStart(2, "0")).join("");
const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
};
const sha256 = async (bytes) => new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

// RFC 9162 section 2.1.3.2.
async function rootFromInclusion(index, size, leaf, path) {
  if (index >= size) throw new Error("index beyond the tree");
  let fn = index, sn = size - 1, r = leaf;
  for (const p of path) {
    if (sn === 0) throw new Error("proof longer than the tree is deep");
    if ((fn & 1) === 1 || fn === sn) {
      r = await sha256(concat(Uint8Array.of(1), p, r));
      if ((fn & 1) === 0) { while ((fn & 1) === 0 && fn !== 0) { fn >>= 1; sn >>= 1; } }
    } else {
      r = await sha256(concat(Uint8Array.of(1), r, p));
    }
    fn >>= 1; sn >>= 1;
  }
  if (sn !== 0) throw new Error("proof shorter than the tree is deep");
  return r;
}

// c2sp.org/signed-note with an Ed25519 verifier key name+keyid+base64(0x01||key).
async function openNote(note, vkey) {
  const [name, keyIdHex, keyB64] = [vkey.split("+")[0], vkey.split("+")[1], vkey.split("+").slice(2).join("+")];
  const blob = b64(keyB64);
  if (blob[0] !== 1 || blob.length !== 33) throw new Error("the log key is not an Ed25519 verifier key");
  const split = note.lastIndexOf("\n\n");
  if (split < 0) throw new Error("the checkpoint is not a signed note");
  const body = note.slice(0, split + 1);
  const key = await crypto.subtle.importKey("raw", blob.slice(1), { name: "Ed25519" }, false, ["verify"]);
  let verified = false;
  for (const line of note.slice(split + 2).split("\n")) {
    const m = line.match(/^\u2014 (\S+) (\S+)$/);
    if (!m || m[1] !== name) continue;
    const sig = b64(m[2]);
    if (hex(sig.slice(0, 4)) !== keyIdHex.toLowerCase()) continue;
    if (!(await crypto.subtle.verify({ name: "Ed25519" }, key, sig.slice(4), enc.encode(body)))) {
      throw new Error("the checkpoint's signature by the log key does not verify");
    }
    verified = true;
  }
  if (!verified) throw new Error("the checkpoint carries no signature by your pinned log key");
  return body;
}

async function check(el) {
  const bundle = JSON.parse(el.dataset.bundle);
  const body = await openNote(bundle.checkpoint, bundle.log_key);
  const [, sizeLine, rootLine] = body.split("\n");
  const size = Number(sizeLine), root = b64(rootLine);
  const leaf = await sha256(concat(Uint8Array.of(0), b64(bundle.entry)));
  const computed = await rootFromInclusion(bundle.index, size, leaf, bundle.proof.map(b64));
  if (!equal(computed, root)) throw new Error("the proof does not lead to the signed root");
  return `Checked in this page: entry ${bundle.index} is in the signed tree of ${size} entries, root ${hex(root)}.`;
}

const el = document.getElementById("page-check");
if (el) {
  check(el).then(
    (text) => { el.textContent = text; el.className = "ok"; el.dataset.verified = "true"; },
    (err) => { el.textContent = `The check in this page FAILED: ${err.message}`; el.className = "bad"; el.dataset.verified = "false"; },
  );
}
