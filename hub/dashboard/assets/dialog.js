// The confirmation every action asks for: the modal <dialog id="confirm">
// of index.html, which says in words what is about to happen.

import { focusKey } from "./dom.js";

// wireConfirmDialog connects the dialog's buttons; app.js calls it once.
export function wireConfirmDialog() {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-ok").addEventListener("click", () => dialog.close("ok"));
  document.getElementById("confirm-cancel").addEventListener("click", () => dialog.close("cancel"));
}

// confirmAction shows text with an OK button named ok and resolves to
// whether the user confirmed; Cancel and Escape refuse. The focus then
// returns to opener, or, when a live re-render replaced it meanwhile, to
// the element with its data-key.
export function confirmAction({ text, ok, opener }) {
  const dialog = document.getElementById("confirm");
  if (dialog.open) return Promise.resolve(false);
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = ok;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      if (opener?.isConnected) opener.focus();
      else if (opener?.dataset.key) focusKey(opener.dataset.key);
      resolve(dialog.returnValue === "ok");
    }, { once: true });
    dialog.showModal();
    document.getElementById("confirm-cancel").focus();
  });
}
