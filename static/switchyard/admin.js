/* Switchyard's admin behaviour, wired by data- attributes: inline handlers (onclick="…") are refused by the
   admin's Content-Security-Policy (script-src 'self'). */
"use strict";
document.addEventListener("submit", function (event) {
  // <button data-confirm="…">: ask before the form goes.
  const button = event.submitter;
  const question = button && button.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
document.addEventListener("change", function (event) {
  // <select data-autosubmit>: choosing is submitting.
  if (event.target.matches("[data-autosubmit]")) {
    event.target.form.submit();
  }
});
document.addEventListener("click", function (event) {
  const target = event.target;
  if (target.matches("[data-select-on-click]")) {
    target.select();
  }
  // <button data-copy="#field" data-copied="#note">: copy the field's value, then show the note.
  const copy = target.closest("[data-copy]");
  if (copy) {
    const field = document.querySelector(copy.dataset.copy);
    navigator.clipboard.writeText(field.value).then(function () {
      const note = document.querySelector(copy.dataset.copied);
      if (note) {
        note.hidden = false;
      }
    });
  }
});
