// Polls the whole-log verification's progress while it runs.
"use strict";
const box = document.getElementById("verify-progress");
async function poll() {
  const state = await (await fetch("/verify/status", { cache: "no-store" })).json();
  const bar = document.getElementById("verify-bar");
  bar.max = state.size || 1;
  bar.value = state.phase === "done" ? bar.max : state.fetched;
  document.getElementById("verify-state").textContent =
    state.phase + (state.size ? `: ${state.fetched} of ${state.size} entries fetched` : "");
  const result = document.getElementById("verify-result");
  result.textContent = state.result;
  result.className = state.ok === true ? "ok" : state.ok === false ? "bad" : "";
  box.dataset.phase = state.phase;
  document.getElementById("verify-start").disabled = state.phase === "fetching" || state.phase === "replaying";
  if (state.phase === "fetching" || state.phase === "replaying") setTimeout(poll, 500);
}
if (box) poll();
